"""The open authority (no reviewer directory): anyone but the requester, distinct people."""

from __future__ import annotations

from hitl.handlers import OpenAuthority, review_everything
from hitl.models import ApprovalRequest, Reviewer, Risk, Verdict, VerdictKind, Vote

AUTH = OpenAuthority()
TWO = Verdict(kind=VerdictKind.REVIEW, approvals=2)


def _vote(user: str, approve: bool = True) -> Vote:
    return Vote(reviewer=Reviewer(user_id=user), approve=approve)


def test_review_everything_asks_one_human() -> None:
    """Without a policy every request is reviewed, at the agent's risk or medium."""
    plain = review_everything(ApprovalRequest(action="x"))
    hinted = review_everything(ApprovalRequest(action="x", risk="critical"))
    assert (VerdictKind.REVIEW, Risk.MEDIUM, 1, "open") == (
        plain.kind,
        plain.risk,
        plain.approvals,
        plain.rule,
    )
    assert Risk.CRITICAL == hinted.risk


def test_requester_may_not_vote() -> None:
    """The requester is refused, whatever the case of their id."""
    check = AUTH.check_vote(TWO, [], "ALICE", "alice")
    assert (False, "ALICE made this request and cannot approve it") == (check.ok, check.reason)
    assert not AUTH.can_decide(TWO, "Alice", "alice")
    assert AUTH.can_decide(TWO, "bob", "alice")
    assert AUTH.can_decide(TWO, "bob", None)


def test_one_vote_per_person() -> None:
    """A second vote by the same person is refused."""
    assert not AUTH.check_vote(TWO, [_vote("bob")], "Bob", None).ok
    assert AUTH.check_vote(TWO, [_vote("bob")], "carol", None).ok


def test_quorum_counts_distinct_approvers() -> None:
    """Quorum needs ``approvals`` different people saying yes."""
    assert not AUTH.quorum_met(TWO, [_vote("bob")])
    assert not AUTH.quorum_met(TWO, [_vote("bob"), _vote("BOB")])
    assert not AUTH.quorum_met(TWO, [_vote("bob"), _vote("carol", approve=False)])
    assert AUTH.quorum_met(TWO, [_vote("bob"), _vote("carol")])


def test_custom_classifier() -> None:
    """OpenAuthority evaluates with the classifier it is given."""
    auth = OpenAuthority(lambda req: Verdict(kind=VerdictKind.AUTO_APPROVE, rule=req.action))
    assert "ping" == auth.evaluate(ApprovalRequest(action="ping")).rule
