"""Escalation, the timeout outcome, reminders and review latency, as store transitions."""

from __future__ import annotations

import math
from typing import Any, Literal

import pytest
import redis

from hitl.errors import AlreadyDecided
from hitl.handlers import Decider, OpenAuthority
from hitl.handlers.timeouts import (
    Action,
    due_level,
    escalate,
    expire,
    expires_at,
    latency_stats,
    mark_seen,
    notices,
    remind,
    review_latency,
)
from hitl.models import (
    ApprovalRequest,
    Destination,
    EscalationStep,
    Outcome,
    RequestRecord,
    Reviewer,
    Risk,
    State,
    Verdict,
    VerdictKind,
)
from hitl.queue.audit import AuditEvent, verify_entries
from hitl.queue.scheduler import ManualClock, chain
from hitl.queue.store import Change, Store
from hitl.signing import verify_decision
from tests.chains import CHAIN, MANAGERS, SECONDARY, T0
from tests.scenarios.helpers import audit_entries, audit_kinds

BOB = Reviewer(user_id="bob", display_name="Bob", channel="slack")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(r: redis.Redis, settings: Any, clock: ManualClock) -> Store:
    """A store whose clock the test moves."""
    return Store(r, signer=settings.signing_keys(), clock=clock)


def _put(
    store: Store,
    rid: str = "r1",
    *,
    escalation: list[EscalationStep] | None = None,
    risk: Risk = Risk.MEDIUM,
    timeout_outcome: Literal["rejected", "approved"] = "rejected",
    **request: Any,
) -> RequestRecord:
    request.setdefault("action", "stop_instance")
    request.setdefault("requested_by", "alice")
    req = ApprovalRequest(id=rid, summary=f"Stop {rid}", **request)
    verdict = Verdict(
        kind=VerdictKind.REVIEW,
        risk=risk,
        destination=Destination(kind="oncall", target="primary"),
        escalation=CHAIN if escalation is None else escalation,
        timeout_outcome=timeout_outcome,
        policy_version="pv1",
    )
    record = RequestRecord(
        request=req, verdict=verdict, created_at=store.clock(), params=req.params
    )
    steps = chain(record)
    record = record.model_copy(update={"deadline": steps[0].due_at if steps else None})
    event = AuditEvent("submitted", rid, "agent", {}, "pv1")
    store.update(rid, lambda _cur: Change(record=record, events=[event]))
    return record


def test_chain_is_absolute_from_creation(store: Store) -> None:
    """Each level is due at created_at + after_s, and the last one times out."""
    record = _put(store)
    assert [(s.level, s.due_at, s.timeout) for s in chain(record)] == [
        (1, T0 + 600, False),
        (2, T0 + 1200, False),
        (3, T0 + 3600, True),
    ]
    assert T0 + 3600 == expires_at(record)


def test_request_timeout_cuts_the_chain(store: Store) -> None:
    """A request's own timeout_s ends the chain sooner (and expires a request with no chain)."""
    cut = _put(store, "cut", timeout_s=900)
    assert [(s.after_s, s.timeout) for s in chain(cut)] == [(600, False), (900, True)]
    bare = _put(store, "bare", escalation=[], timeout_s=30)
    assert [(30, True)] == [(s.after_s, s.timeout) for s in chain(bare)]
    assert [] == chain(_put(store, "forever", escalation=[]))


def test_escalation_walks_levels_and_moves_the_deadline(store: Store, clock: ManualClock) -> None:
    """At each deadline the level goes up, the deadline moves on and the audit names the target."""
    _put(store)
    clock.advance(600)
    first = escalate(store, "r1", 1)
    assert Action.ESCALATED == first.action
    record = store.get("r1")
    assert (1, T0 + 1200) == (record.escalation_level, record.deadline)
    assert T0 + 1200 == store.redis.zscore(store.keys.pending, "r1")
    clock.advance(600)
    assert Action.ESCALATED == escalate(store, "r1", 2).action
    entries = [e for e in audit_entries(store.redis) if e["kind"] == "escalated"]
    assert [SECONDARY.model_dump(), MANAGERS.model_dump()] == [
        e["details"]["target"] for e in entries
    ]
    assert [1, 2] == [e["details"]["level"] for e in entries]
    assert "scheduler" == entries[0]["actor"]
    assert 0.0 == entries[0]["details"]["late_s"]


def test_escalation_is_idempotent_and_never_early(store: Store, clock: ManualClock) -> None:
    """A job that runs twice, or before its time, changes nothing."""
    _put(store)
    assert Action.NOT_DUE == escalate(store, "r1", 1).action
    clock.advance(600)
    assert Action.ESCALATED == escalate(store, "r1", 1).action
    head = store.head()
    assert Action.NOOP == escalate(store, "r1", 1).action
    assert Action.NOT_DUE == escalate(store, "r1", 2).action
    assert head == store.head()
    assert Action.NOOP == escalate(store, "nope", 1).action
    assert Action.NOOP == escalate(store, "r1", 9).action


def test_overdue_levels_are_skipped_to_the_latest(store: Store, clock: ManualClock) -> None:
    """After an outage, the level-1 job goes straight to the level that is due now."""
    _put(store)
    clock.advance(1300)
    result = escalate(store, "r1", 1)
    assert (Action.ESCALATED, 2) == (result.action, store.get("r1").escalation_level)
    entry = [e for e in audit_entries(store.redis) if e["kind"] == "escalated"][-1]
    assert [1] == entry["details"]["skipped"]
    assert Action.NOOP == escalate(store, "r1", 2).action


def test_end_of_chain_denies_by_default(store: Store, clock: ManualClock) -> None:
    """The timeout step decides `expired`: audited, delivered to the agent, signed."""
    _put(store)
    clock.advance(3600)
    result = escalate(store, "r1", 3)
    assert Action.EXPIRED == result.action
    record = store.get("r1")
    assert State.EXPIRED == record.state
    assert record.decision is not None and Outcome.EXPIRED == record.decision.outcome
    assert 3600.0 == record.decision.age_s
    delivered = store.redis.lrange(store.keys.decision("r1"), 0, -1)
    assert 1 == len(delivered)
    verify_decision(record.decision, store.signer.public())
    assert ["submitted", "expired"] == audit_kinds(store.redis, "r1")
    assert 0 == store.redis.zcard(store.keys.pending)
    report = verify_entries(audit_entries(store.redis), store.head())
    assert report.ok, report.problem


def test_late_answer_is_refused_and_recorded_as_late(store: Store, clock: ManualClock) -> None:
    """A click after the timeout gets AlreadyDecided and a `refused` audit entry with late."""
    _put(store)
    clock.advance(3600)
    expire(store, "r1")
    decider = Decider(store, OpenAuthority())
    with pytest.raises(AlreadyDecided, match="already expired by policy"):
        decider.approve("r1", BOB)
    refused = audit_entries(store.redis)[-1]
    assert ("refused", True, "bob") == (
        refused["kind"],
        refused["details"]["late"],
        refused["actor"],
    )
    assert State.EXPIRED == store.get("r1").state


@pytest.mark.parametrize(
    ("risk", "outcome"),
    [
        (Risk.LOW, Outcome.AUTO_APPROVED),
        (Risk.MEDIUM, Outcome.AUTO_APPROVED),
        (Risk.HIGH, Outcome.EXPIRED),
        (Risk.CRITICAL, Outcome.EXPIRED),
    ],
)
def test_silence_approves_only_low_and_medium(
    store: Store, clock: ManualClock, risk: Risk, outcome: Outcome
) -> None:
    """timeout_outcome=approved approves by silence; a high/critical request never ends approved."""
    _put(store, risk=risk, timeout_outcome="approved")
    clock.advance(3600)
    escalate(store, "r1", 3)
    decision = store.get("r1").decision
    assert decision is not None and outcome == decision.outcome


def test_answer_stops_the_chain(store: Store, clock: ManualClock) -> None:
    """Once a human decides, no later level acts."""
    _put(store)
    clock.advance(1200)
    escalate(store, "r1", 2)
    Decider(store, OpenAuthority()).approve("r1", BOB)
    head = store.head()
    clock.advance(3600)
    assert Action.NOOP == escalate(store, "r1", 3).action
    assert head == store.head()
    assert State.APPROVED == store.get("r1").state


def test_expire_without_expiry_is_a_noop(store: Store, clock: ManualClock) -> None:
    """A request with no chain and no timeout_s never expires; one with timeout_s does."""
    _put(store, "forever", escalation=[])
    _put(store, "short", escalation=[], timeout_s=30)
    clock.advance(10_000)
    assert Action.NOOP == expire(store, "forever").action
    assert Action.EXPIRED == expire(store, "short").action


def test_notices_follow_the_record(store: Store, clock: ManualClock) -> None:
    """Escalated -> the level's target; expired -> the requester; with stable dedupe keys."""
    _put(store)
    clock.advance(600)
    (esc,) = notices(escalate(store, "r1", 1))
    assert ("escalated", "esc:r1:1", SECONDARY, 1) == (esc.kind, esc.key, esc.target, esc.level)
    assert "level 1 of 3" in esc.text and "oncall:managers" in esc.text
    # a retried job that finds the work done re-derives the same notice (the sink dedupes it)
    assert [esc] == notices(escalate(store, "r1", 1))
    clock.advance(3000)
    (gone,) = notices(escalate(store, "r1", 3))
    assert ("expired", "timeout:r1") == (gone.kind, gone.key)
    assert Destination(kind="user", target="alice") == gone.target
    assert "denied by default" in gone.text


def test_due_level(store: Store) -> None:
    """due_level counts the deadlines passed."""
    record = _put(store)
    assert [0, 1, 1, 2, 3] == [due_level(record, T0 + dt) for dt in (0, 600, 1198, 1200, math.inf)]


def test_reminders_go_to_whoever_is_on_the_hook(store: Store, clock: ManualClock) -> None:
    """Before level 1 the destination is reminded; before level 2 the level-1 target."""
    _put(store)
    clock.advance(480)
    first = remind(store, "r1", 1)
    assert first is not None
    assert (Destination(kind="oncall", target="primary"), "remind:r1:1") == (
        first.target,
        first.key,
    )
    assert "in 2m it goes to oncall:secondary" in first.text
    clock.advance(120)
    escalate(store, "r1", 1)
    assert remind(store, "r1", 1) is None
    clock.advance(480)
    second = remind(store, "r1", 2)
    assert second is not None and SECONDARY == second.target
    clock.advance(120)
    escalate(store, "r1", 2)
    clock.advance(2300)
    last = remind(store, "r1", 3)
    assert last is not None and "denied by default" in last.text


def test_review_latency(store: Store, clock: ManualClock) -> None:
    """Requested, first seen (the first mark_seen or vote), decided."""
    _put(store)
    clock.advance(30)
    assert mark_seen(store, "r1")
    clock.advance(30)
    assert not mark_seen(store, "r1")
    clock.advance(60)
    Decider(store, OpenAuthority()).approve("r1", BOB)
    latency = review_latency(store, store.get("r1"))
    assert (30.0, 120.0) == (latency.to_first_seen, latency.to_decision)
    _put(store, "r2")
    clock.advance(10)
    pending = review_latency(store, store.get("r2"))
    assert (None, None) == (pending.to_first_seen, pending.to_decision)
    stats = latency_stats([latency, pending])
    assert {"requests": 2, "decided": 1, "escalated": 0} == {
        k: stats[k] for k in ("requests", "decided", "escalated")
    }
    assert (30.0, 120.0) == (stats["first_seen_p50_s"], stats["decision_p95_s"])
