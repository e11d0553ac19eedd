"""hitl over the Model Context Protocol: approval as MCP tools, and a guard for MCP tool servers.

``hitl mcp`` serves three tools to any MCP client (an agent, an IDE), over stdio or streamable
HTTP:

- ``request_approval(action, params, summary, reasoning, risk, wait_s)``: ask; the decision if
  a human answers within ``wait_s`` seconds, else ``{"status": "pending", "request_id": ...}``.
- ``get_decision(request_id, wait_s)``: the decision on one of this server's requests, or
  still pending.
- ``list_feedback(action, limit)``: what reviewers decided on this agent's earlier ``action``
  requests (rejection reasons, modifications before -> after, approvals), to learn from.

The server is an agent: it runs with the agent's Redis credential and the service's public key
(``HITL_REDIS_URL``, ``HITL_PUBLIC_KEY``), and the agent id is fixed when it starts
(``--agent-id``), never taken from a tool call. Nothing a tool call says can approve anything.

``hitl mcp guard --risky a,b -- CMD ARGS`` launches another MCP server (stdio) and serves its
tools unchanged, except that a call to a risky tool becomes an approval request first: the tool
runs with the params a human approved (maybe modified), or does not run and the caller gets the
reviewer's reason as an error result. While a person has paused the agent (``hitl pause``), no
tool runs at all, and ``request_approval`` refuses::

    server = guard_server(StdioServerParameters(command="my-db-mcp"), {"drop_table"}, client)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import mcp_types as types
from mcp import Client as McpClient
from mcp import StdioServerParameters
from mcp.server.lowlevel import Server
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server

from hitl.client import AsyncClient
from hitl.errors import ApprovalTimeout, HitlError, InvalidRequest, NotFound
from hitl.integrations._common import refusal_text
from hitl.models import Decision, FeedbackEntry

__all__ = ["MAX_WAIT_S", "build_server", "decision_json", "guard_server", "run_guard"]

MAX_WAIT_S = 300.0
"""The longest one tool call blocks for a decision; a caller polls ``get_decision`` beyond it."""
GUARDED = " (asks a human through hitl before it runs)"


def decision_json(decision: Decision) -> dict[str, Any]:
    """What a tool call answers for a verified decision (the signature was checked)."""
    return {
        "request_id": decision.request_id,
        "status": decision.outcome.value,
        "approved": decision.approved,
        "params": decision.params,
        "modified": decision.modified,
        "original_params": decision.original_params,
        "reason": decision.reason,
        "reviewers": [r.display_name or r.user_id for r in decision.reviewers],
        "decided_at": decision.decided_at,
        "verified": True,
    }


def feedback_json(entry: FeedbackEntry) -> dict[str, Any]:
    return entry.model_dump(mode="json") | {"modified": entry.modified}


@contextmanager
def _tool_errors() -> Iterator[None]:
    """hitl's errors reach the caller with their message (bad input, no such request, Redis
    down); anything else is a crash, which the SDK reports without its text."""
    try:
        yield
    except HitlError as exc:
        raise ToolError(str(exc)) from exc


def _bounded_wait(wait_s: float) -> float:
    if not 0 <= wait_s <= MAX_WAIT_S:
        raise InvalidRequest(
            f"wait_s must be between 0 and {MAX_WAIT_S:g} seconds (poll get_decision for longer)",
            [("wait_s", "out of range")],
        )
    return wait_s


async def _wait(client: AsyncClient, request_id: str, wait_s: float) -> dict[str, Any]:
    try:
        return decision_json(await client.wait(request_id, timeout=wait_s))
    except ApprovalTimeout:
        return {"request_id": request_id, "status": "pending"}


def build_server(client: AsyncClient) -> MCPServer:
    """The ``hitl`` MCP server for the agent ``client.agent_id`` (required)."""
    if not client.agent_id:
        raise InvalidRequest("the MCP server needs an agent id (--agent-id or HITL_AGENT_ID)")
    agent_id = client.agent_id
    server: MCPServer = MCPServer(
        "hitl",
        instructions=(
            "Ask a human before a risky action: call request_approval and act only if the "
            "answer is approved, with the params it returns. Read list_feedback first to avoid "
            "proposing what reviewers rejected before."
        ),
    )

    @server.tool()
    async def request_approval(
        action: str,
        params: dict[str, Any],
        summary: str = "",
        reasoning: str = "",
        risk: str | None = None,
        wait_s: float = 0.0,
    ) -> dict[str, Any]:
        """Ask a human to approve ``action`` with ``params``. Answers the decision if it comes
        within ``wait_s`` seconds (at most 300), else ``status: pending`` and the request id
        to pass to get_decision. Act only on ``approved: true``, with the returned params."""
        with _tool_errors():
            wait = _bounded_wait(wait_s)
            await client.check_controls()
            request_id = await client.submit(
                action, params, summary=summary or None, reasoning=reasoning or None, risk=risk
            )
            return await _wait(client, request_id, wait)

    @server.tool()
    async def get_decision(request_id: str, wait_s: float = 0.0) -> dict[str, Any]:
        """The decision on a request made with request_approval, waiting up to ``wait_s``
        seconds (at most 300); ``status: pending`` while nobody has decided."""
        with _tool_errors():
            wait = _bounded_wait(wait_s)
            record = await client.status(request_id)
            if record is None or record.request.agent_id != agent_id:
                raise NotFound(f"no request {request_id!r} of agent {agent_id!r}")
            return await _wait(client, request_id, wait)

    @server.tool()
    async def list_feedback(action: str, limit: int = 20) -> list[dict[str, Any]]:
        """What reviewers decided on this agent's earlier ``action`` requests, newest first:
        rejection reasons, modified params (original_params -> params) and approvals."""
        with _tool_errors():
            entries = await client.feedback(action=action, limit=max(1, min(limit, 200)))
            return [feedback_json(e) for e in entries]

    return server


def _error_result(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def guard_server(
    upstream: StdioServerParameters | str,
    risky: set[str],
    client: AsyncClient,
    *,
    timeout: float | None = None,
) -> Server[McpClient]:
    """An MCP server that forwards to ``upstream`` and asks hitl before each ``risky`` tool.

    ``timeout`` bounds each approval (it also becomes the request's ``timeout_s``, so the
    service denies it by default when nobody answers); ``None`` waits for the policy's own.
    """

    @asynccontextmanager
    async def connected(_: Server[McpClient]) -> AsyncIterator[McpClient]:
        async with McpClient(upstream) as downstream:
            yield downstream

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> Any:
        downstream: McpClient = ctx.lifespan_context
        listed = await downstream.list_tools(cursor=params.cursor if params else None)
        tools = [
            t.model_copy(update={"description": (t.description or "") + GUARDED})
            if t.name in risky
            else t
            for t in listed.tools
        ]
        return listed.model_copy(update={"tools": tools})

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> Any:
        downstream: McpClient = ctx.lifespan_context
        arguments = dict(params.arguments or {})
        try:
            await client.check_controls()
        except HitlError as exc:  # paused, or a control that does not verify: nothing runs
            return _error_result(f"not run: {exc}")
        if params.name in risky:
            try:
                decision = await client.request_approval(
                    params.name,
                    arguments,
                    timeout=timeout,
                    summary=f"MCP tool {params.name}",
                    context={"mcp_arguments": json.dumps(arguments)[:2000]},
                )
            except HitlError as exc:
                return _error_result(f"not run: could not get an approval: {exc}")
            if not decision.approved:
                return _error_result(f"not run: {refusal_text(decision)}")
            arguments = decision.params
        return await downstream.call_tool(params.name, arguments)

    return Server(
        "hitl-guard",
        instructions="Tools of another MCP server; the risky ones ask a human through hitl first.",
        lifespan=connected,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def run_guard(server: Server[Any]) -> None:
    """Serve ``server`` (a :func:`guard_server`) over stdio."""
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
