"""Staleness: a decision carries its age, and an agent can refuse to act on an old approval.

After a long wait the world may have changed (the article: "revalidate the plan before resuming;
if stale, re-plan"). ``Client.wait(..., max_age=...)`` raises ``StaleApproval`` for an approval
of a request older than ``max_age`` seconds, so the agent re-validates instead of acting.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from hitl.client import Client
from hitl.config import Settings
from hitl.errors import HitlError, StaleApproval
from hitl.handlers import Decider, OpenAuthority
from hitl.models import ApprovalRequest, RequestRecord, Reviewer, Verdict, VerdictKind
from hitl.queue.audit import AuditEvent
from hitl.queue.scheduler import ManualClock
from hitl.queue.store import Change, Store

BOB = Reviewer(user_id="bob", channel="slack")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(time.time() - 7200)  # the request was made two hours ago


@pytest.fixture
def store(r: redis.Redis, settings: Settings, clock: ManualClock) -> Store:
    return Store(r, signer=settings.signing_keys(), clock=clock)


def _put(store: Store, rid: str) -> None:
    req = ApprovalRequest(id=rid, action="resize_cluster", params={"nodes": 12}, requested_by="al")
    record = RequestRecord(
        request=req,
        verdict=Verdict(kind=VerdictKind.REVIEW),
        created_at=store.clock(),
        params=req.params,
    )
    store.update(rid, lambda _c: Change(record=record, events=[AuditEvent("submitted", rid, "a")]))


def test_decision_carries_its_age(store: Store, clock: ManualClock, settings: Settings) -> None:
    """requested_at and decided_at travel (signed) with the decision; age_s is their gap."""
    _put(store, "r1")
    clock.advance(90 * 60)
    Decider(store, OpenAuthority()).approve("r1", BOB)
    with Client(settings=settings) as client:
        decision = client.wait("r1", timeout=5)
    assert 5400.0 == decision.age_s
    assert time.time() - decision.requested_at >= 7200


def test_wait_reports_a_stale_approval(
    store: Store, clock: ManualClock, settings: Settings
) -> None:
    """An approval older than max_age raises StaleApproval; a fresh enough one is returned."""
    _put(store, "old")
    _put(store, "no")
    clock.advance(60)
    decider = Decider(store, OpenAuthority())
    decider.approve("old", BOB)
    decider.reject("no", BOB, "not now")
    wait: Any
    with Client(settings=settings) as client:
        wait = client.wait
        with pytest.raises(StaleApproval) as info:
            wait("old", timeout=5, max_age=3600)
        assert isinstance(info.value, HitlError)
        assert info.value.decision.approved and info.value.age_s >= 7200
        assert "re-validate" in str(info.value)
        assert wait("old", timeout=5, max_age=3 * 3600).approved
        assert not wait("no", timeout=5, max_age=1).approved, "a rejection is never stale"
