"""OpenAI Agents SDK: tools with ``needs_approval`` resolved by hitl's reviewers.

Make a risky tool with :func:`hitl_tool` (a ``FunctionTool`` with ``needs_approval=True``).
When the run stops at its approval, :func:`resolve` asks hitl for each interruption and answers
the run state the SDK's own way: ``state.approve(item)``, or ``state.reject(item,
rejection_message=...)`` with the reviewer's reason as the message the model sees. When the
approved tool then runs, it reads its decision from hitl, verifies it (public key, request id,
digest) and calls the function with the params a reviewer approved -- modified ones included::

    refund = hitl_tool(refund_order, summary="Refund an order")
    agent = Agent(name="support", tools=[refund], model=...)
    result = await Runner.run(agent, "refund order A-1")
    while result.interruptions:
        state = result.to_state()
        await resolve(state, client)            # blocks until reviewers decide
        result = await Runner.run(agent, state)

Surviving a restart while a human thinks: ``saved = state.to_string()`` and
``await submit_interruptions(state, client)``; later, in a new process,
``state = await RunState.from_string(agent, saved)`` and carry on with :func:`resolve`. The
request ids come from the agent id and the model's tool-call id, so asking again is the same
request. While a person has paused the agent, ``resolve`` raises :class:`AgentHalted` and a
hitl tool refuses to run.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents import FunctionTool, RunState, ToolApprovalItem
from agents.function_schema import function_schema
from agents.tool_context import ToolContext

from hitl.client import AsyncClient, build_request
from hitl.config import Settings
from hitl.errors import HitlError, InvalidRequest
from hitl.integrations._common import refusal_text, request_id_for
from hitl.models import ApprovalRequest, Decision
from hitl.signing import request_digest

__all__ = ["HitlFunctionTool", "hitl_tool", "resolve", "submit_interruptions"]


@dataclass
class HitlFunctionTool(FunctionTool):
    """A FunctionTool whose approvals hitl decides; ``hitl_fields`` go on each request."""

    hitl_fields: dict[str, Any] = field(default_factory=dict)
    hitl_settings: Settings | None = None


def _request(tool: HitlFunctionTool, call_id: str, arguments: str) -> ApprovalRequest:
    try:
        params = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"the model's arguments for {tool.name} are not JSON: {exc}") from None
    agent_id = str(tool.hitl_fields.get("agent_id") or "")
    rid = request_id_for("openai-agents", agent_id, call_id)
    return build_request(tool.name, params, id=rid, **tool.hitl_fields)


def _client(settings: Settings | None, agent_id: str | None) -> AsyncClient:
    return AsyncClient(settings=settings, agent_id=agent_id)


def hitl_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    settings: Settings | None = None,
    **fields: Any,
) -> HitlFunctionTool:
    """A ``needs_approval`` tool for ``fn``; ``fields`` are ApprovalRequest fields (``summary``,
    ``risk``, ``agent_id``...). ``settings`` default to the environment (``HITL_REDIS_URL``,
    ``HITL_PUBLIC_KEY``)."""
    schema = function_schema(fn, name_override=name)
    tool: HitlFunctionTool

    async def invoke(ctx: ToolContext[Any], arguments: str) -> Any:
        request = _request(tool, ctx.tool_call_id, arguments)
        assert request.id is not None
        async with _client(settings, request.agent_id) as client:
            try:
                await client.check_controls()
                record = await client.status(request.id)
                if record is None or record.decision is None:
                    return f"not run: no hitl decision for request {request.id}"
                decision = client.verify(
                    record.decision, request_id=request.id, digest=request_digest(request)
                )
            except HitlError as exc:
                return f"not run: {exc}"
        if not decision.approved:
            return f"not run: {refusal_text(decision)}"
        result = fn(**decision.params)
        return await result if inspect.isawaitable(result) else result

    tool = HitlFunctionTool(
        name=schema.name,
        description=schema.description or "",
        params_json_schema=schema.params_json_schema,
        on_invoke_tool=invoke,
        needs_approval=True,
        hitl_fields=fields,
        hitl_settings=settings,
    )
    return tool


def _hitl_tool_of(item: ToolApprovalItem) -> HitlFunctionTool:
    for tool in item.agent.tools:
        if isinstance(tool, HitlFunctionTool) and tool.name == item.tool_name:
            return tool
    raise InvalidRequest(f"tool {item.tool_name!r} is not a hitl_tool: hitl cannot decide it")


def _pending(state: RunState[Any, Any]) -> list[tuple[ToolApprovalItem, ApprovalRequest]]:
    out = []
    for item in state.get_interruptions():
        tool = _hitl_tool_of(item)
        out.append((item, _request(tool, item.call_id or "", item.arguments or "{}")))
    return out


async def submit_interruptions(state: RunState[Any, Any], client: AsyncClient) -> list[str]:
    """Submit the requests of the run's pending approvals (idempotent); their ids."""
    return [await client.submit_request(request) for _, request in _pending(state)]


async def resolve(
    state: RunState[Any, Any],
    client: AsyncClient,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - passed on to AsyncClient.wait
) -> list[Decision]:
    """Ask hitl about every pending approval of ``state``, wait, and approve or reject each in
    the state (the reviewer's reason is the rejection message the model sees)."""
    await client.check_controls()
    decisions = []
    for item, request in _pending(state):
        assert request.id is not None
        await client.submit_request(request)
        decision = await client.wait(request.id, timeout, digest=request_digest(request))
        if decision.approved:
            state.approve(item)
        else:
            state.reject(item, rejection_message=refusal_text(decision))
        decisions.append(decision)
    return decisions
