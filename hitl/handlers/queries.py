"""Read-only use cases: what is pending (for whom), one request, and figures for ``stats``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hitl.models import Outcome, RequestRecord, State, VerdictKind
from hitl.queue.store import Store

from .authority import Authority, OpenAuthority

__all__ = ["Page", "pending", "show", "stats"]


@dataclass(frozen=True)
class Page:
    """One page of pending requests. ``total`` counts every pending request, not just this page."""

    records: list[RequestRecord]
    offset: int
    total: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + len(self.records)
        return end if end < self.total else None


def pending(
    store: Store,
    *,
    reviewer_id: str | None = None,
    authority: Authority | None = None,
    offset: int = 0,
    limit: int = 20,
    where: Callable[[RequestRecord], bool] | None = None,
) -> Page:
    """Pending requests, soonest deadline first; with ``reviewer_id``, only what they may decide;
    with ``where``, only the records it accepts (filters by risk, action, agent)."""
    if reviewer_id is None and where is None:
        return Page(store.pending(offset, limit), offset, store.pending_count())
    auth = authority or OpenAuthority()
    mine = [
        r
        for r in store.pending(0, 0)
        if (where is None or where(r))
        and (
            reviewer_id is None
            or (
                auth.can_decide(r.verdict, reviewer_id, r.request.requested_by)
                and all(v.reviewer.user_id != reviewer_id for v in r.votes)
            )
        )
    ]
    return Page(mine[offset : offset + limit], offset, len(mine))


def show(store: Store, request_id: str) -> RequestRecord:
    """One request with its state, votes, decision and cards (:class:`NotFound` if unknown)."""
    return store.get(request_id)


def stats(store: Store, last: int = 1000) -> dict[str, Any]:
    """The article's HITL metrics over the last ``last`` decisions plus what is pending now.

    approval rate (approved / decided by people), escalation rate (share of requests that needed
    a human rather than the policy alone), review latency (request -> first seen, -> decision,
    p50/p95) and the pending queue by risk.
    """
    from .timeouts import latency_stats, review_latency

    entries: list[tuple[str, dict[str, str]]] = store.redis.xrevrange(  # type: ignore[assignment]  # redis-py types stream replies loosely
        store.keys.decisions, count=max(1, last)
    )
    ids = list(dict.fromkeys(json.loads(f["decision"])["request_id"] for _i, f in entries))
    records = _records(store, ids)
    pending_records = store.pending(0, 0)
    human = [r for r in records if r.verdict.kind is VerdictKind.REVIEW]
    decided_by_people = [
        r for r in human if r.decision is not None and r.decision.outcome in _HUMAN_OUTCOMES
    ]
    approved = [r for r in decided_by_people if r.decision and r.decision.approved]
    by_risk: dict[str, int] = {}
    for r in pending_records:
        by_risk[r.verdict.risk.value] = by_risk.get(r.verdict.risk.value, 0) + 1
    latency = latency_stats([review_latency(store, r) for r in human])
    return {
        "decisions": len(records),
        "auto": len(records) - len(human),
        "needed_a_human": len(human),
        "escalation_rate": round(len(human) / len(records), 4) if records else None,
        "approval_rate": round(len(approved) / len(decided_by_people), 4)
        if decided_by_people
        else None,
        "expired": sum(1 for r in human if r.state is State.EXPIRED),
        "pending": len(pending_records),
        "pending_by_risk": by_risk,
        "latency": latency,
    }


_HUMAN_OUTCOMES = {Outcome.APPROVED, Outcome.REJECTED}


def _records(store: Store, ids: list[str]) -> list[RequestRecord]:
    out: list[RequestRecord] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        raws = store.redis.mget([store.keys.req(i) for i in chunk])
        out.extend(RequestRecord.model_validate_json(r) for r in raws if r)
    return out
