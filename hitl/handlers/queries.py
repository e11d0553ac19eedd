"""Read-only use cases: what is pending (for whom), one request, and figures for ``stats``."""

from __future__ import annotations

from dataclasses import dataclass

from hitl.models import RequestRecord
from hitl.queue.store import Store

from .authority import Authority, OpenAuthority

__all__ = ["Page", "pending", "show"]


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
) -> Page:
    """Pending requests, soonest deadline first; with ``reviewer_id``, only what they may decide."""
    if reviewer_id is None:
        return Page(store.pending(offset, limit), offset, store.pending_count())
    auth = authority or OpenAuthority()
    mine = [
        r
        for r in store.pending(0, 0)
        if auth.can_decide(r.verdict, reviewer_id, r.request.requested_by)
        and all(v.reviewer.user_id != reviewer_id for v in r.votes)
    ]
    return Page(mine[offset : offset + limit], offset, len(mine))


def show(store: Store, request_id: str) -> RequestRecord:
    """One request with its state, votes, decision and cards (:class:`NotFound` if unknown)."""
    return store.get(request_id)
