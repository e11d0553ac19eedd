"""Read-only use cases: what is pending (for whom), one request, the decided history.

The figures of ``hitl stats`` are computed in :mod:`hitl.handlers.metrics`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from hitl.models import Outcome, RequestRecord, Reviewer, Verdict
from hitl.queue.store import Store

from .authority import Authority, OpenAuthority

__all__ = [
    "Page",
    "answerers",
    "destination_names",
    "history",
    "pending",
    "recent_decided",
    "show",
]


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


def destination_names(verdict: Verdict) -> set[str]:
    """The names a filter may give the verdict's destination: ``channel:#ops`` and ``#ops``."""
    where = verdict.destination
    if where is None or not where.target:
        return set()
    return {f"{where.kind}:{where.target}", where.target}


def history(
    store: Store, *, search: str = "", offset: int = 0, limit: int = 20, last: int = 5000
) -> Page:
    """Decided requests, newest decision first, over the last ``last`` decisions; ``search``
    keeps those whose id, action, summary, agent, reviewers, outcome or reason contain it."""
    records = recent_decided(store, last)
    needle = search.strip().lower()
    if needle:
        records = [r for r in records if needle in _haystack(r)]
    return Page(records[offset : offset + limit], offset, len(records))


def recent_decided(store: Store, last: int) -> list[RequestRecord]:
    """The records of the last ``last`` decisions (``hitl:decisions``), newest first."""
    entries: list[tuple[str, dict[str, str]]] = store.redis.xrevrange(  # type: ignore[assignment]  # redis-py types stream replies loosely
        store.keys.decisions, count=max(1, last)
    )
    ids = list(dict.fromkeys(json.loads(f["decision"])["request_id"] for _i, f in entries))
    out: list[RequestRecord] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        raws = store.redis.mget([store.keys.req(i) for i in chunk])
        out.extend(RequestRecord.model_validate_json(r) for r in raws if r)
    return out


NOT_REVIEWERS = {"operator", "agent", "scheduler"}
"""Channels whose names on a decision are not a reviewer's answer (override, cancel, timeout)."""


def answerers(record: RequestRecord) -> list[Reviewer]:
    """The reviewers whose answer decided ``record``: its approvers (the votes) when approved,
    who rejected it when rejected; no operator, agent or scheduler; none while undecided."""
    decision = record.decision
    if decision is None or decision.outcome not in (Outcome.APPROVED, Outcome.REJECTED):
        return []
    people = (
        [v.reviewer for v in record.votes if v.approve]
        if decision.approved
        else list(decision.reviewers)
    )
    return [who for who in people if who.channel not in NOT_REVIEWERS]


def _haystack(record: RequestRecord) -> str:
    request, decision = record.request, record.decision
    parts = [record.id, request.action, request.title, request.agent_id or "", record.state.value]
    if decision is not None:
        parts.append(decision.reason)
        parts += [f"{r.user_id} {r.display_name}" for r in decision.reviewers]
    return " ".join(parts).lower()


def show(store: Store, request_id: str) -> RequestRecord:
    """One request with its state, votes, decision and cards (:class:`NotFound` if unknown)."""
    return store.get(request_id)
