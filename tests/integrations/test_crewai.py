"""CrewAI: a hitl tool in a crew with a scripted LLM, decided through hitl's API. Heavy: runs
with `make test-heavy` (its own virtualenv)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("crewai", reason="heavy extra, not in `make test`: run `make test-heavy`")

from examples.crewai_refund import build_crew  # noqa: E402
from hitl.client import Client  # noqa: E402
from tests.reviewers import Reviewers  # noqa: E402
from tests.scenarios.helpers import run_in_thread  # noqa: E402

# CrewAI's kickoff trips its own deprecations (function_calling_llm and others); not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.parametrize(
    ("how", "ran", "said"),
    [
        ("approve", [{"order": "A-1", "amount": 120.0}], "refunded 120.0 on A-1"),
        ("modify", [{"order": "A-1", "amount": 50.0}], "refunded 50.0 on A-1"),
        ("reject", [], "not run: rejected by Bob Brown: no refunds today"),
    ],
)
def test_crew_tool_runs_only_as_decided(
    agent_vars: None, reviewers: Reviewers, how: str, ran: list[Any], said: str
) -> None:
    """Approved: ran as asked; modified: with the reviewer's params; rejected: did not run, and
    the agent read the reviewer's reason."""
    calls: list[dict[str, Any]] = []

    def refund(order: str, amount: float) -> str:
        """Refund an order."""
        calls.append({"order": order, "amount": amount})
        return f"refunded {amount} on {order}"

    with (
        Client(agent_id="crew-agent") as client,
        run_in_thread(lambda: build_crew(client, refund).kickoff(), timeout=60) as done,
    ):
        rid = reviewers.next_pending("refund")
        if how == "approve":
            reviewers.approve(rid)
        elif how == "modify":
            reviewers.modify(rid, {"order": "A-1", "amount": 50.0})
        else:
            reviewers.reject(rid, "no refunds today")
    assert done.error is None, done.error
    assert ran == calls
    assert said in str(done.value)
