"""Suggested preferences from feedback: only repeated plain approvals of bounded, low/medium
patterns; accepted by a person into the policy, where the engine applies them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from hitl.cli import main
from hitl.errors import ConfigError, InvalidRequest
from hitl.handlers.learning import accept, effect, suggest
from hitl.models import ApprovalRequest, FeedbackEntry, Outcome, Risk, VerdictKind
from hitl.policies import DEFAULT_PATH, load_policy
from tests.reviewers import Reviewers


def entry(n: int, outcome: Outcome = Outcome.APPROVED, **fields: Any) -> FeedbackEntry:
    data: dict[str, Any] = {
        "request_id": f"r-{n}",
        "agent_id": "pm-bot",
        "action": "update_task_status",
        "outcome": outcome,
        "risk": Risk.MEDIUM,
        "params": {"task": f"T-{n}", "status": "done", "points": n},
        "reviewers": ["Bob Brown"],
        "decided_at": 1_765_000_000.0,
    }
    return FeedbackEntry.model_validate(data | fields)


def test_three_plain_approvals_bound_every_param() -> None:
    """Strings by the values seen, numbers by the largest, the agent by its id."""
    found = suggest([entry(3), entry(2), entry(1)])
    assert found is not None
    assert (
        'agent_id == "pm-bot" && params.points <= 3.0 && params.status == "done" '
        '&& params.task in ["T-1", "T-2", "T-3"]'
    ) == found.when
    assert ("learned-pm-bot-update-task-status", 3, "Bob Brown, 2025-12-06") == (
        found.name,
        found.approvals,
        found.learned_from,
    )


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([entry(3), entry(2)], "only two approvals"),
        ([entry(3), entry(2, Outcome.REJECTED), entry(1), entry(0)], "a rejection breaks the run"),
        ([entry(3), entry(2, original_params={"x": 1}), entry(1)], "so does a modification"),
        ([entry(3), entry(2), entry(1), entry(0, risk=Risk.HIGH)], "high risk, ever"),
        ([entry(3, risk=Risk.CRITICAL), entry(2), entry(1)], "critical"),
        ([entry(3, params={"q": {"a": 1}}), entry(2), entry(1)], "keys differ"),
        ([entry(n, params={"q": {"a": n}}) for n in range(3)], "nested data"),
        ([entry(n, params={"to": f"u{n}@x"}) for n in range(6)], "six distinct strings"),
    ],
)
def test_no_suggestion(entries: list[FeedbackEntry], why: str) -> None:
    """Nothing is suggested for anything but a narrow, repeatedly approved, low/medium pattern."""
    assert suggest(entries) is None, why


def test_accept_keeps_the_policy_loadable_and_refuses_duplicates() -> None:
    """The entry goes under `preferences:`; the same name twice is refused."""
    found = suggest([entry(3), entry(2), entry(1)])
    assert found is not None
    text = accept(DEFAULT_PATH.read_text(), found)
    assert "# Learned preferences" in text  # comments are kept
    with pytest.raises(InvalidRequest, match="already has a preference"):
        accept(text, found)
    broken = found.__class__(**{**found.__dict__, "when": "params.points <="})
    with pytest.raises(ConfigError):
        accept(DEFAULT_PATH.read_text(), broken)


def test_a_mandatory_action_is_reported_as_unaffected() -> None:
    """Under a rule that always needs a human, the suggestion would change nothing: said so."""
    high = entry(1, action="delete_production_data", risk=Risk.MEDIUM)
    found = suggest([high, high, high])
    assert found is not None
    assert "a human would still decide" in (effect(DEFAULT_PATH.read_text(), found) or "")


def test_decisions_through_the_api_become_a_preference_a_person_accepts(
    reviewers: Reviewers,
    env: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three API approvals -> `hitl feedback suggest` -> `accept` -> the policy auto-approves."""
    from hitl.client import Client

    policy = tmp_path / "policy.yaml"
    shutil.copy(DEFAULT_PATH, policy)
    with Client(settings=reviewers.api.service.settings, agent_id="pm-bot") as agent:
        for n in (1, 2, 3):
            agent.submit("update_task_status", {"task": f"T-{n}", "status": "done"})
            reviewers.approve(reviewers.next_pending())
    show = ["feedback", "show", "--agent", "pm-bot", "--action", "update_task_status", "--json"]
    assert 0 == main(show)
    assert ["approved"] * 3 == [e["outcome"] for e in json.loads(capsys.readouterr().out)]
    assert 0 == main(["feedback", "suggest", "--policy", str(policy)])
    shown = capsys.readouterr().out
    assert "learned-pm-bot-update-task-status: 3 approvals in a row" in shown
    assert 0 == main(
        ["feedback", "accept", "learned-pm-bot-update-task-status", "--policy", str(policy)]
    )
    capsys.readouterr()

    changed = load_policy(policy, with_tests=False)
    same = ApprovalRequest(
        action="update_task_status", params={"task": "T-2", "status": "done"}, agent_id="pm-bot"
    )
    assert VerdictKind.AUTO_APPROVE == changed.evaluate(same).kind
    for other in (
        same.model_copy(update={"agent_id": "other-bot"}),
        same.model_copy(update={"params": {"task": "T-9", "status": "done"}}),
        same.model_copy(update={"risk": Risk.HIGH}),
    ):
        assert VerdictKind.REVIEW == changed.evaluate(other).kind
    assert VerdictKind.REVIEW == load_policy(DEFAULT_PATH).evaluate(same).kind
