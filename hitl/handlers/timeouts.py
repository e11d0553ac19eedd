"""Deadlines: escalation along the policy's chain, the timeout outcome, reminders, review latency.

The scheduler's jobs call these; each is one atomic store transaction that re-reads the request
and does nothing if it is already decided (or already at that level), so a job may run twice, late
or out of order::

    result = escalate(store, "r-42", level=2)      # at the deadline of level 2
    for notice in notices(result):
        sink.send(notice)                          # deduplicated by key: told once

At each level's deadline the request's ``escalation_level`` moves to that level, its ``deadline``
moves to the next step and an ``escalated`` audit entry names the new target. At the chain's
timeout step the policy's timeout outcome applies: **deny by default** (outcome ``expired``);
``timeout_outcome: approved`` approves by silence only a low or medium risk request, never a high
or critical one. A human answer after that is refused by :class:`~hitl.handlers.Decider` like any
answer to a decided request, and audited as ``refused`` with ``late: true``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hitl.models import Decision, Destination, Outcome, RequestRecord, Risk, State
from hitl.policies import format_duration
from hitl.queue.audit import AuditEvent
from hitl.queue.scheduler import TOLERANCE_S, Notification, Step, chain, dest_key
from hitl.queue.store import Change, Store

__all__ = [
    "ACTOR",
    "Action",
    "Escalation",
    "ReviewLatency",
    "due_level",
    "escalate",
    "expire",
    "expires_at",
    "latency_stats",
    "mark_seen",
    "notices",
    "percentile",
    "remind",
    "reminder",
    "review_latency",
    "seen_at",
]

ACTOR = "scheduler"
SEEN_TTL_S = 90 * 24 * 3600


class Action(enum.StrEnum):
    """What one :func:`escalate` call did."""

    ESCALATED = "escalated"
    EXPIRED = "expired"
    APPROVED = "approved"
    """Approved by silence (``timeout_outcome: approved``, low/medium risk only)."""
    NOT_DUE = "not_due"
    """The level's deadline has not come yet (the job ran early): nothing changed."""
    NOOP = "noop"
    """Already decided, already at (or past) that level, unknown id or level: nothing changed."""


@dataclass(frozen=True)
class Escalation:
    """The result of :func:`escalate`: the record as it is now, and what changed."""

    action: Action
    level: int
    """The level asked for."""
    record: RequestRecord | None
    step: Step | None = None
    """The step that was applied (or, for NOT_DUE, the one that is not due yet)."""
    decision: Decision | None = None

    @property
    def changed(self) -> bool:
        return self.action in (Action.ESCALATED, Action.EXPIRED, Action.APPROVED)


# -- escalation --------------------------------------------------------------------------------


def escalate(store: Store, request_id: str, level: int, now: float | None = None) -> Escalation:
    """Apply level ``level`` of the request's chain, if it is due and not applied yet.

    When later levels are due as well (the workers were down), the request goes straight to the
    latest due level: one notification to the person who is on the hook now, or the timeout.
    """
    now = store.clock() if now is None else now
    outcome: dict[str, Escalation] = {}

    def fn(current: RequestRecord | None) -> Change:
        outcome["r"] = Escalation(Action.NOOP, level, current)
        if current is None or current.state is not State.PENDING:
            return Change()
        steps = chain(current)
        if not 1 <= level <= len(steps) or current.escalation_level >= level:
            return Change()
        if steps[level - 1].due_at > now + TOLERANCE_S:
            outcome["r"] = Escalation(Action.NOT_DUE, level, current, steps[level - 1])
            return Change()
        reached = max(s.level for s in steps if s.due_at <= now + TOLERANCE_S)
        step = steps[reached - 1]
        if step.timeout:
            change = _time_out(store, current, step, now)
            assert change.record is not None and change.decision is not None
            action = Action.APPROVED if change.decision.approved else Action.EXPIRED
            outcome["r"] = Escalation(action, level, change.record, step, change.decision)
            return change
        following = steps[reached] if reached < len(steps) else None
        new = current.model_copy(
            update={
                "escalation_level": reached,
                "deadline": following.due_at if following is not None else None,
            }
        )
        details: dict[str, Any] = {
            "level": reached,
            "of": len(steps),
            "target": step.target.model_dump() if step.target is not None else None,
            "after_s": step.after_s,
            "due_at": step.due_at,
            "late_s": round(max(0.0, now - step.due_at), 6),
            "next_deadline": new.deadline,
        }
        if reached > level:
            details["skipped"] = list(range(level, reached))
        event = AuditEvent("escalated", current.id, ACTOR, details, current.verdict.policy_version)
        outcome["r"] = Escalation(Action.ESCALATED, level, new, step)
        return Change(record=new, events=[event])

    store.update(request_id, fn)
    return outcome["r"]


def expire(store: Store, request_id: str, now: float | None = None) -> Escalation:
    """Apply the timeout outcome if the request is past its expiry (the chain's timeout step).

    NOOP for a request without an expiry; NOT_DUE before it.
    """
    record = store.find(request_id)
    steps = chain(record) if record is not None else []
    last = steps[-1] if steps and steps[-1].timeout else None
    if last is None:
        return Escalation(Action.NOOP, 0, record)
    return escalate(store, request_id, last.level, now)


def expires_at(record: RequestRecord) -> float | None:
    """When the timeout outcome applies (None: never)."""
    steps = chain(record)
    return steps[-1].due_at if steps and steps[-1].timeout else None


def overdue_timeout(record: RequestRecord, now: float) -> Step | None:
    """The chain's timeout step if it is already due at ``now`` (None otherwise)."""
    steps = chain(record)
    last = steps[-1] if steps and steps[-1].timeout else None
    return last if last is not None and last.due_at <= now else None


def time_out(store: Store, record: RequestRecord, step: Step, now: float) -> Change:
    """The Change that applies the timeout outcome (deny by default) to ``record``."""
    return _time_out(store, record, step, now)


def due_level(record: RequestRecord, now: float) -> int:
    """The latest level whose deadline has passed at ``now`` (0: none)."""
    return max((s.level for s in chain(record) if s.due_at <= now + TOLERANCE_S), default=0)


def _time_out(store: Store, record: RequestRecord, step: Step, now: float) -> Change:
    verdict = record.verdict
    silent_ok = _silence_approves(record)
    outcome = Outcome.AUTO_APPROVED if silent_ok else Outcome.EXPIRED
    waited = _duration(step.after_s)
    if silent_ok:
        reason = f"no decision within {waited}; the policy approves this {verdict.risk} request"
    else:
        reason = f"no decision within {waited}; denied by default (the agent must not proceed)"
    decision = store.make_decision(record, outcome, reason=reason, now=now)
    final = record.model_copy(
        update={"state": outcome.state, "decision": decision, "escalation_level": step.level}
    )
    details = {
        "reason": reason,
        "params": decision.params,
        "modified": decision.modified,
        "reviewers": [],
        "channel": ACTOR,
        "level": step.level,
        "timeout_outcome": verdict.timeout_outcome,
        "due_at": step.due_at,
        "late_s": round(max(0.0, now - step.due_at), 6),
    }
    event = AuditEvent(outcome.value, record.id, ACTOR, details, verdict.policy_version)
    return Change(record=final, events=[event], decision=decision)


# -- what to tell people -----------------------------------------------------------------------


def notices(result: Escalation) -> list[Notification]:
    """What to tell people after :func:`escalate`, derived from the record as it is now.

    Also returned when this call changed nothing but the record is at (or timed out at) the
    level asked for: a job that crashed after its transaction and before its notification is
    retried, and the sink's dedupe key makes sure nobody is told twice.
    """
    record = result.record
    if record is None or result.action is Action.NOT_DUE:
        return []
    steps = chain(record)
    at = record.escalation_level
    if not 1 <= at <= len(steps) or at < result.level:
        return []
    step = steps[at - 1]
    title = record.request.title
    if record.state is State.PENDING and not step.timeout:
        following = steps[at] if at < len(steps) else None
        then = ""
        if following is not None:
            wait = _duration(following.after_s - step.after_s)
            then = f"; in {wait} {_what_next(record, following)}"
        return [
            Notification(
                kind="escalated",
                key=f"esc:{record.id}:{at}",
                request_id=record.id,
                level=at,
                target=step.target,
                text=(
                    f"Escalated to you (level {at} of {len(steps)}): “{title}” has waited "
                    f"{_duration(step.after_s)} without a decision ({record.verdict.risk} risk). "
                    f"Please approve or reject it{then}."
                ),
                at=step.due_at,
            )
        ]
    decision = record.decision
    if step.timeout and decision is not None and not decision.reviewers:  # the timeout outcome
        requester = record.request.requested_by
        return [
            Notification(
                kind="expired",
                key=f"timeout:{record.id}",
                request_id=record.id,
                level=at,
                target=Destination(kind="user", target=requester) if requester else None,
                text=f"“{title}” {decision.outcome.value}: {decision.reason}.",
                at=decision.decided_at,
            )
        ]
    return []


def remind(
    store: Store, request_id: str, level: int, now: float | None = None
) -> Notification | None:
    """A reminder before level ``level``'s deadline, for whoever is being waited on; None when the
    request is decided, already escalated past it, or the deadline has passed."""
    now = store.clock() if now is None else now
    record = store.find(request_id)
    return reminder(record, level, now) if record is not None else None


def reminder(record: RequestRecord, level: int, now: float) -> Notification | None:
    """:func:`remind` for a record already read (the sweep reads many at once)."""
    if record.state is not State.PENDING:
        return None
    steps = chain(record)
    if not 1 <= level <= len(steps) or record.escalation_level != level - 1:
        return None
    step = steps[level - 1]
    if now >= step.due_at:
        return None
    audience = record.verdict.destination if level == 1 else steps[level - 2].target
    return Notification(
        kind="reminder",
        key=f"remind:{record.id}:{level}",
        request_id=record.id,
        level=record.escalation_level,
        target=audience,
        text=(
            f"Reminder: “{record.request.title}” is waiting for a decision "
            f"({record.verdict.risk} risk); in {_duration(step.due_at - now)} "
            f"{_what_next(record, step)}."
        ),
        at=now,
    )


def _what_next(record: RequestRecord, step: Step) -> str:
    if not step.timeout:
        return f"it goes to {dest_key(step.target)}"
    return "it is approved by policy" if _silence_approves(record) else "it is denied by default"


def _silence_approves(record: RequestRecord) -> bool:
    v = record.verdict
    return v.timeout_outcome == "approved" and v.risk.rank <= Risk.MEDIUM.rank


def _duration(seconds: float) -> str:
    return format_duration(max(0, round(seconds)))


# -- review latency ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewLatency:
    """Requested, first seen by a reviewer, decided: the three times behind review metrics."""

    request_id: str
    requested_at: float
    first_seen_at: float | None
    decided_at: float | None
    escalation_level: int

    @property
    def to_first_seen(self) -> float | None:
        return None if self.first_seen_at is None else self.first_seen_at - self.requested_at

    @property
    def to_decision(self) -> float | None:
        return None if self.decided_at is None else self.decided_at - self.requested_at


def mark_seen(store: Store, request_id: str, now: float | None = None) -> bool:
    """Record the first time a reviewer saw the request (opened the card, the inbox page, the
    modal). Only the first call counts; returns whether this one did."""
    now = store.clock() if now is None else now
    key = store.keys.seen(request_id)
    return bool(store.redis.set(key, f"{now:.6f}", nx=True, ex=SEEN_TTL_S))


def seen_at(store: Store, request_id: str) -> float | None:
    """When a reviewer first had the request in front of them (:func:`mark_seen`), if known."""
    raw = store.redis.get(store.keys.seen(request_id))
    return float(raw) if raw else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank rule; None when empty."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else None


def review_latency(store: Store, record: RequestRecord) -> ReviewLatency:
    """The record's latency figures. "First seen" is the earliest of :func:`mark_seen`, the
    first vote and a human decision (someone who answered has seen it)."""
    seen = seen_at(store, record.id)
    candidates = [seen] if seen is not None else []
    candidates += [v.reviewer.at for v in record.votes if v.reviewer.at]
    decision = record.decision
    if decision is not None:
        humans = [r for r in decision.reviewers if r.channel != "agent"]  # not a cancellation
        candidates += [r.at or decision.decided_at for r in humans]
    decided = decision.decided_at if decision is not None and record.state.terminal else None
    return ReviewLatency(
        request_id=record.id,
        requested_at=record.created_at,
        first_seen_at=min(candidates) if candidates else None,
        decided_at=decided,
        escalation_level=record.escalation_level,
    )


def latency_stats(latencies: Sequence[ReviewLatency]) -> dict[str, float | int | None]:
    """Figures for metrics (``hitl stats``, a dashboard): how many requests, how many decided
    and escalated, and the p50/p95 seconds from request to first seen and to decision."""

    seen = [x.to_first_seen for x in latencies if x.to_first_seen is not None]
    decided = [x.to_decision for x in latencies if x.to_decision is not None]
    return {
        "requests": len(latencies),
        "decided": len(decided),
        "escalated": sum(1 for x in latencies if x.escalation_level > 0),
        "first_seen_p50_s": percentile(seen, 0.5),
        "first_seen_p95_s": percentile(seen, 0.95),
        "decision_p50_s": percentile(decided, 0.5),
        "decision_p95_s": percentile(decided, 0.95),
    }
