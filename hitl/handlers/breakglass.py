"""Break-glass: one person approves alone in an emergency; a second must acknowledge in time.

It is loud by design: the approval, the acknowledgement and a missed acknowledgement are each
their own audit entry (``break_glass``, ``break_glass_acknowledged``,
``break_glass_unacknowledged``) with ``alert: true``, so a compliance review finds every use::

    break_glass(decider, "r-42", bob, "prod is down, customers cannot pay")
    acknowledge(decider, "r-42", frank)            # within the policy's ack_within window
    overdue(decider, now)                          # the scheduler: who missed the window
"""

from __future__ import annotations

from typing import Any, Protocol

from hitl.errors import InvalidRequest, NotAuthorized
from hitl.models import BreakGlass, Outcome, RequestRecord, Reviewer
from hitl.queue.audit import AuditEvent
from hitl.queue.store import Change

from .decisions import Decider, Result

__all__ = ["acknowledge", "break_glass", "overdue"]


class _Check(Protocol):
    ok: bool
    reason: str


def _policy_call(decider: Decider, name: str, *args: Any) -> _Check | None:
    fn = getattr(decider.authority, name, None)
    return fn(*args) if fn is not None else None


def break_glass(decider: Decider, request_id: str, reviewer: Reviewer, reason: str) -> Result:
    """Approve alone, now. Needs a reason and the policy's break-glass role; never the requester."""
    if not reason.strip():
        raise InvalidRequest("break-glass needs a reason: it is reviewed by compliance")
    window = getattr(decider.authority, "ack_window_s", None)

    def fn(current: RequestRecord | None) -> Change:
        record = decider._require_open(current, request_id, reviewer, "break_glass")
        if isinstance(record, Change):
            return record
        requester = record.request.requested_by
        same = getattr(decider.authority, "same_person", None)
        if requester and (
            same(requester, reviewer.user_id) if same else requester == reviewer.user_id
        ):
            return decider._refuse(
                record,
                reviewer,
                "break_glass",
                "the requester cannot break glass on their own request",
            )
        check = _policy_call(decider, "break_glass_allowed", reviewer.user_id)
        if check is None or window is None:
            return decider._refuse(
                record, reviewer, "break_glass", "this policy has no break-glass procedure"
            )
        if not check.ok:
            return decider._refuse(record, reviewer, "break_glass", check.reason)
        now = decider.store.clock()
        stamped = reviewer.model_copy(update={"at": now, "role": "break-glass"})
        glass = BreakGlass(by=stamped, reason=reason, ack_deadline=now + window)
        loud = AuditEvent(
            "break_glass",
            record.id,
            reviewer.user_id,
            {"alert": True, "reason": reason, "ack_deadline": glass.ack_deadline},
            record.verdict.policy_version,
        )
        marked = record.model_copy(update={"break_glass": glass})
        return decider._terminal(
            marked,
            Outcome.APPROVED,
            [stamped],
            f"BREAK-GLASS: {reason}",
            actor=stamped,
            events=[loud],
        )

    return decider._result(request_id, fn)


def acknowledge(decider: Decider, request_id: str, reviewer: Reviewer) -> RequestRecord:
    """A second person confirms a break-glass approval (it stays approved either way)."""

    def fn(current: RequestRecord | None) -> Change:
        if current is None or current.break_glass is None:
            event = AuditEvent(
                "refused",
                request_id,
                reviewer.user_id,
                {"attempt": "acknowledge", "reason": "no break-glass approval to acknowledge"},
            )
            return Change(
                events=[event],
                error=NotAuthorized(f"{request_id} has no break-glass approval to acknowledge"),
            )
        glass = current.break_glass
        if glass.acked_by is not None:
            return Change(
                events=[
                    AuditEvent(
                        "refused",
                        request_id,
                        reviewer.user_id,
                        {"attempt": "acknowledge", "reason": "already acknowledged"},
                    )
                ],
                error=NotAuthorized(f"already acknowledged by {_name(glass.acked_by)}"),
            )
        check = _policy_call(decider, "break_glass_ack_allowed", glass.by.user_id, reviewer.user_id)
        if check is None or not check.ok:
            why = check.reason if check is not None else "no break-glass procedure"
            return decider._refuse(current, reviewer, "acknowledge", why)
        now = decider.store.clock()
        late = now > glass.ack_deadline
        acked = glass.model_copy(update={"acked_by": reviewer.model_copy(update={"at": now})})
        event = AuditEvent(
            "break_glass_acknowledged",
            request_id,
            reviewer.user_id,
            {"alert": True, "late": late, "broken_by": glass.by.user_id},
            current.verdict.policy_version,
        )
        return Change(record=current.model_copy(update={"break_glass": acked}), events=[event])

    change = decider.store.update(request_id, fn)
    assert change.record is not None
    return change.record


def _name(reviewer: Reviewer) -> str:
    return reviewer.display_name or reviewer.user_id


def overdue(decider: Decider, request_ids: list[str] | None = None) -> list[str]:
    """Audit (once each) break-glass approvals whose acknowledgement window passed unanswered.

    Without ``request_ids`` it checks every approval in the ``breakglass`` index that is due.
    """
    store = decider.store
    if request_ids is None:
        due = store.redis.zrangebyscore(store.keys.break_glass, "-inf", store.clock())
        request_ids = [str(i) for i in due]
    reported: list[str] = []
    for request_id in request_ids:

        def fn(current: RequestRecord | None) -> Change:
            glass = current.break_glass if current is not None else None
            if current is None or glass is None or glass.acked_by or glass.overdue_reported:
                return Change()
            if decider.store.clock() <= glass.ack_deadline:
                return Change()
            event = AuditEvent(
                "break_glass_unacknowledged",
                current.id,
                "scheduler",
                {"alert": True, "broken_by": glass.by.user_id, "deadline": glass.ack_deadline},
                current.verdict.policy_version,
            )
            flagged = glass.model_copy(update={"overdue_reported": True})
            return Change(
                record=current.model_copy(update={"break_glass": flagged}), events=[event]
            )

        if decider.store.update(request_id, fn).events:
            reported.append(request_id)
    return reported
