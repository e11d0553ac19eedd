"""Read-only use cases: the pending list (for whom) and one request."""

from __future__ import annotations

import pytest

from hitl.errors import NotFound
from hitl.handlers import Decider, Page, pending, show
from hitl.models import Reviewer, Risk, Verdict, VerdictKind
from hitl.queue.store import Store
from tests.handlers.conftest import MakeRequest


def test_pending_pages_soonest_first(make_request: MakeRequest, store: Store) -> None:
    """Pages follow the deadline order; ``total`` counts them all; next_offset points on."""
    ids = [make_request(id=f"r-{i}", timeout_s=100 - i) for i in range(5)]
    first = pending(store, limit=2)
    assert ([ids[4], ids[3]], 5, 2) == (
        [r.id for r in first.records],
        first.total,
        first.next_offset,
    )
    last = pending(store, offset=4, limit=2)
    assert ([ids[0]], None) == ([r.id for r in last.records], last.next_offset)


def test_pending_for_a_reviewer_hides_what_they_cannot_decide(
    make_request: MakeRequest, decider: Decider, store: Store
) -> None:
    """A reviewer does not see their own requests nor those they already voted on."""
    two = Verdict(kind=VerdictKind.REVIEW, approvals=2)
    mine = make_request(id="mine", requested_by="bob")
    voted = make_request(id="voted", verdict=two)
    open_ = make_request(id="open")
    decider.approve(voted, Reviewer(user_id="bob"))
    page = pending(store, reviewer_id="bob")
    assert (["open"], 1) == ([r.id for r in page.records], page.total)
    everyone = pending(store)
    assert {mine, voted, open_} == {r.id for r in everyone.records}


def test_pending_for_a_reviewer_follows_policy_roles(
    make_request: MakeRequest, store: Store
) -> None:
    """With the shipped policy, a standard reviewer does not see manager-only requests."""
    from hitl.policies import default_policy

    high = Verdict(kind=VerdictKind.REVIEW, risk=Risk.HIGH, roles=["manager"])
    make_request(id="high", verdict=high)
    make_request(id="anyone")
    policy = default_policy()
    assert ["anyone"] == [
        r.id for r in pending(store, reviewer_id="alice", authority=policy).records
    ]
    assert ["anyone", "high"] == sorted(
        r.id for r in pending(store, reviewer_id="bob", authority=policy).records
    )


def test_page_next_offset() -> None:
    """No next page when the page reaches the total."""
    assert (None, None) == (Page([], 0, 0).next_offset, Page([], 10, 3).next_offset)


def test_show_returns_the_record(make_request: MakeRequest, store: Store) -> None:
    """show() is the full record; an unknown id is NotFound."""
    rid = make_request(summary="Refund A-1")
    assert "Refund A-1" == show(store, rid).request.summary
    with pytest.raises(NotFound):
        show(store, "nope")
