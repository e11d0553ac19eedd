"""`hitl mcp` and `hitl mcp guard`, driven by the mcp package's own client (stdio and HTTP)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP extra is not installed: pip install 'hitl-bot[mcp]'")

from mcp import Client as McpClient  # noqa: E402 - after the skip: the extra may be absent
from mcp import StdioServerParameters  # noqa: E402

from hitl.models import State  # noqa: E402
from hitl.queue.store import Store  # noqa: E402
from tests.api_server import ApiServer  # noqa: E402
from tests.redis_server import free_port  # noqa: E402
from tests.reviewers import Reviewers  # noqa: E402

HITL = [sys.executable, "-m", "hitl"]
TOOLS_SERVER = Path(__file__).parents[2] / "examples" / "mcp_db_tools.py"


def structured(result: Any) -> Any:
    assert not result.is_error, result.content
    return result.structured_content


def stdio(env: dict[str, str], *args: str) -> StdioServerParameters:
    return StdioServerParameters(command=HITL[0], args=[*HITL[1:], *args], env=env)


async def ask_approve_modify_reject(client: McpClient, reviewers: Reviewers) -> None:
    """The three outcomes through request_approval / get_decision / list_feedback."""
    names = {t.name for t in (await client.list_tools()).tools}
    assert {"request_approval", "get_decision", "list_feedback"} <= names

    asked = structured(
        await client.call_tool("request_approval", {"action": "send_email", "params": {"n": 1}})
    )
    assert "pending" == asked["status"]
    rid = asked["request_id"]
    await asyncio.to_thread(reviewers.approve, await asyncio.to_thread(reviewers.next_pending))
    got = structured(await client.call_tool("get_decision", {"request_id": rid, "wait_s": 20}))
    assert (rid, "approved", True, {"n": 1}, True) == (
        got["request_id"],
        got["status"],
        got["approved"],
        got["params"],
        got["verified"],
    )

    waiting = asyncio.create_task(
        client.call_tool(
            "request_approval", {"action": "send_email", "params": {"n": 2}, "wait_s": 30}
        )
    )
    second = await asyncio.to_thread(reviewers.next_pending)
    await asyncio.to_thread(reviewers.modify, second, {"n": 3})
    modified = structured(await waiting)
    assert ("approved", {"n": 3}, {"n": 2}) == (
        modified["status"],
        modified["params"],
        modified["original_params"],
    )

    third = structured(
        await client.call_tool("request_approval", {"action": "send_email", "params": {"n": 9}})
    )
    await asyncio.to_thread(reviewers.reject, third["request_id"], "nine is too many")
    rejected = structured(
        await client.call_tool("get_decision", {"request_id": third["request_id"], "wait_s": 20})
    )
    assert (False, "nine is too many") == (rejected["approved"], rejected["reason"])

    feedback = structured(await client.call_tool("list_feedback", {"action": "send_email"}))
    rows = feedback["result"] if isinstance(feedback, dict) else feedback
    assert [("rejected", "nine is too many"), ("approved", "adjusted"), ("approved", "fine")] == [
        (f["outcome"], f["reason"]) for f in rows
    ]
    assert {"n": 2} == rows[1]["original_params"]


async def test_stdio_server_asks_and_reports_each_outcome(
    agent_env: dict[str, str], reviewers: Reviewers
) -> None:
    """Over stdio: approved, modified and rejected requests, then the agent's feedback."""
    async with McpClient(stdio(agent_env, "mcp", "--agent-id", "ide-agent")) as client:
        await ask_approve_modify_reject(client, reviewers)


@pytest.fixture
def http_server(agent_env: dict[str, str]) -> Iterator[str]:
    """`hitl mcp --transport http` in a subprocess; its /mcp URL once it listens."""
    port = free_port()
    proc = subprocess.Popen(
        [*HITL, "mcp", "--agent-id", "ide-agent", "--transport", "http", "--port", str(port)],
        env=agent_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                why = proc.stderr.read().decode() if proc.stderr else "no output"
                raise RuntimeError(why) from None
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/mcp"
    proc.terminate()
    proc.wait(10)
    if proc.stderr is not None:
        proc.stderr.close()


async def test_http_server_asks_and_reports_each_outcome(
    http_server: str, reviewers: Reviewers
) -> None:
    """Over streamable HTTP: the same three outcomes and the feedback."""
    async with McpClient(http_server) as client:
        await ask_approve_modify_reject(client, reviewers)


async def test_bad_tool_input_is_an_error_result_and_queues_nothing(
    agent_env: dict[str, str], store: Store
) -> None:
    """An invalid action, an out-of-range wait, someone else's request id: clear errors."""
    async with McpClient(stdio(agent_env, "mcp", "--agent-id", "ide-agent")) as client:
        bad = await client.call_tool("request_approval", {"action": "not a tool", "params": {}})
        assert bad.is_error and "action" in bad.content[0].text  # type: ignore[union-attr]
        long = await client.call_tool(
            "request_approval", {"action": "x", "params": {}, "wait_s": 10_000}
        )
        assert long.is_error and "wait_s" in long.content[0].text  # type: ignore[union-attr]
        other = await client.call_tool("get_decision", {"request_id": "someone-elses"})
        assert other.is_error and "no request" in other.content[0].text  # type: ignore[union-attr]
    assert 0 == store.redis.xlen(store.keys.requests)


def test_mcp_needs_an_agent_id(agent_env: dict[str, str]) -> None:
    """Without --agent-id (or HITL_AGENT_ID) the server refuses to start, saying what to pass."""
    done = subprocess.run([*HITL, "mcp"], env=agent_env, capture_output=True, text=True)
    assert 2 == done.returncode
    assert "--agent-id" in done.stderr


# -- the guard ---------------------------------------------------------------------------------


def guarded(agent_env: dict[str, str], marker: Path) -> StdioServerParameters:
    return stdio(
        agent_env,
        "mcp",
        "guard",
        "--agent-id",
        "db-agent",
        "--risky",
        "drop_table",
        "--",
        sys.executable,
        str(TOOLS_SERVER),
        str(marker),
    )


async def test_guard_runs_risky_tools_only_as_approved(
    agent_env: dict[str, str], reviewers: Reviewers, tmp_path: Path, store: Store
) -> None:
    """A risky tool runs with approved / modified params, or not at all; others pass through."""
    ran = tmp_path / "ran.txt"
    async with McpClient(guarded(agent_env, ran)) as client:
        tools = {t.name: t.description for t in (await client.list_tools()).tools}
        assert "asks a human" in (tools["drop_table"] or "")
        assert "asks a human" not in (tools["count_rows"] or "")

        free = await client.call_tool("count_rows", {"table": "users"})
        assert not free.is_error
        assert 0 == store.pending_count()

        decided: list[str] = []

        async def call(table: str, decide: Any) -> Any:
            task = asyncio.create_task(client.call_tool("drop_table", {"table": table}))
            rid = await asyncio.to_thread(reviewers.next_pending, "drop_table")
            decided.append(rid)
            await asyncio.to_thread(decide, rid)
            return await task

        approved = await call("tmp_1", reviewers.approve)
        modified = await call("tmp_2", lambda rid: reviewers.modify(rid, {"table": "tmp_3"}))
        rejected = await call("users", lambda rid: reviewers.reject(rid, "never drop users"))
    assert (False, False, True) == (approved.is_error, modified.is_error, rejected.is_error)
    assert "not run: rejected by Bob Brown: never drop users" == rejected.content[0].text  # type: ignore[union-attr]
    assert ["count_rows users", "drop_table tmp_1", "drop_table tmp_3"] == (
        ran.read_text().splitlines()
    )
    states = [store.get(rid).state for rid in decided]
    assert [State.APPROVED, State.APPROVED, State.REJECTED] == states
    assert ("db-agent", {"table": "users"}) == (
        store.get(decided[2]).request.agent_id,
        store.get(decided[2]).request.params,
    )


async def test_a_paused_agent_runs_no_tool(
    agent_env: dict[str, str], api: ApiServer, tmp_path: Path, store: Store
) -> None:
    """After `pause db-agent` (API), the guard runs no tool and request_approval refuses."""
    status, _, _ = api.call("POST", "/agents/db-agent/pause", api.token("bob"), {"reason": "audit"})
    assert 200 == status
    ran = tmp_path / "ran.txt"
    async with McpClient(guarded(agent_env, ran)) as client:
        refused = await client.call_tool("count_rows", {"table": "users"})
    assert refused.is_error
    assert "agent db-agent was paused by Bob Brown: audit" in refused.content[0].text  # type: ignore[union-attr]
    assert not ran.exists()
    async with McpClient(stdio(agent_env, "mcp", "--agent-id", "db-agent")) as client:
        asked = await client.call_tool("request_approval", {"action": "x", "params": {}})
    assert asked.is_error and "paused" in asked.content[0].text  # type: ignore[union-attr]
    assert 0 == store.redis.xlen(store.keys.requests)
