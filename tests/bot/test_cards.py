"""The channel-neutral card view: status lines, diffs and values worded once for every channel."""

from __future__ import annotations

from hitl.bot.cards import ParamChange, card_view, format_value, param_changes
from hitl.models import Outcome, Reviewer, Risk, Verdict, VerdictKind, Vote
from tests.bot.test_blocks import BOB, decided, record


def test_waiting_status_names_roles() -> None:
    """A fresh request says how many approvals from whom."""
    rec = record(verdict=Verdict(kind=VerdictKind.REVIEW, risk=Risk.HIGH, approvals=2,
                                 roles=["manager"]))  # fmt: skip
    assert "⏳ Waiting for 2 approvals from different people from manager" == card_view(rec).status


def test_progress_status() -> None:
    """Under a two-person rule the status counts and names the approvers."""
    alice = Reviewer(user_id="alice")
    rec = record(
        verdict=Verdict(kind=VerdictKind.REVIEW, approvals=2), votes=[Vote(reviewer=alice)]
    )
    view = card_view(rec)
    assert "⏳ 1 of 2 approvals (alice)" == view.status
    assert view.open and ["alice"] == view.approvers


def test_user_request_is_taken_from_context() -> None:
    """The user's original request is shown apart from the rest of the context."""
    view = card_view(record(context={"original_request": "cancel my plan", "plan": "pro"}))
    assert "cancel my plan" == view.user_request
    assert {"plan": "pro"} == view.context


def test_param_changes() -> None:
    """Changed, added and removed params, in order."""
    before = {"a": 1, "b": 2, "c": 3}
    after = {"a": 1, "b": 5, "d": 4}
    assert [ParamChange("b", 2, 5), ParamChange("d", None, 4), ParamChange("c", 3, None)] == (
        param_changes(before, after)
    )


def test_decided_view() -> None:
    """A decided view carries outcome, who, when and the final params' diff."""
    done = decided(record(), Outcome.APPROVED, reviewers=[BOB],
                   params={"order_id": "A-1002", "amount": 100.0})  # fmt: skip
    view = card_view(done)
    assert not view.open
    assert ["Bob Brown"] == view.decided_by
    assert [ParamChange("amount", 250.0, 100.0)] == view.changes


def test_format_value() -> None:
    """Strings stay bare; everything else is compact JSON."""
    assert "x" == format_value("x")
    assert '{"a": [1, 2]}' == format_value({"a": [1, 2]})
    assert "true" == format_value(True)
