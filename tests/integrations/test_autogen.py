"""AutoGen (autogen-agentchat): an AssistantAgent's hitl tool (examples/autogen_refund.py), and
CodeExecutorAgent's approval_func, decided through hitl's API; a replayed model (autogen-ext)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("autogen_agentchat", reason="no extra: pip install 'hitl-bot[autogen]'")
pytest.importorskip("autogen_ext", reason="the tests replay a model with autogen-ext")

from autogen_agentchat.agents import ApprovalRequest  # noqa: E402

from examples.autogen_refund import build_agent  # noqa: E402
from hitl.client import AsyncClient  # noqa: E402
from hitl.integrations.autogen import approval_func  # noqa: E402
from tests.reviewers import Reviewers  # noqa: E402


def decide(reviewers: Reviewers, action: str, how: str, changed: dict[str, Any]) -> None:
    rid = reviewers.next_pending(action)
    if how == "approve":
        reviewers.approve(rid)
    elif how == "modify":
        reviewers.modify(rid, changed)
    else:
        reviewers.reject(rid, "not this one")


@pytest.mark.parametrize(
    ("how", "ran", "said"),
    [
        ("approve", [{"order": "A-1", "amount": 120.0}], "refunded 120.0"),
        ("modify", [{"order": "A-1", "amount": 50.0}], "refunded 50.0"),
        ("reject", [], "not run: rejected by Bob Brown: not this one"),
    ],
)
async def test_assistant_agent_tool_runs_only_as_decided(
    agent_vars: None, reviewers: Reviewers, how: str, ran: list[Any], said: str
) -> None:
    """The tool ran with the approved / modified params, or not; the agent got the answer."""
    calls: list[dict[str, Any]] = []

    def refund(order: str, amount: float) -> str:
        """Refund an order."""
        calls.append({"order": order, "amount": amount})
        return f"refunded {amount}"

    async with AsyncClient(agent_id="ag-agent") as client:
        agent = build_agent(client, refund)
        deciding = asyncio.create_task(
            asyncio.to_thread(decide, reviewers, "refund", how, {"order": "A-1", "amount": 50.0})
        )
        result = await agent.run(task="refund order A-1")
        await deciding
    assert ran == calls
    assert said in str(result.messages[-1].content)


@pytest.mark.parametrize(
    ("how", "approved", "reason"),
    [
        ("approve", True, "fine"),
        ("modify", False, "propose this instead:\nprint('safe')"),
        ("reject", False, "rejected by Bob Brown: not this one"),
    ],
)
async def test_code_executor_approval_func(
    agent_vars: None, reviewers: Reviewers, how: str, approved: bool, reason: str
) -> None:
    """CodeExecutorAgent's approval_func: approved runs; a modification or a rejection does not
    (AutoGen cannot run other code than the model's), and says why."""
    async with AsyncClient(agent_id="ag-agent") as client:
        ask = approval_func(client, timeout=30)
        deciding = asyncio.create_task(
            asyncio.to_thread(decide, reviewers, "execute_code", how, {"code": "print('safe')"})
        )
        answer = await ask(ApprovalRequest(code="import os; os.remove('x')", context=[]))
        await deciding
    assert approved == answer.approved
    assert reason in answer.reason
