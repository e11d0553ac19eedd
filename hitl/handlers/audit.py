"""Read-only facts about the audit log: its chains' heads and the newest checkpoint (for the
API), and one request's own entries (for the inbox's detail page)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from hitl.errors import StoreUnavailable
from hitl.queue.audit import ChainHead, heads_root
from hitl.queue.store import Store

__all__ = ["ChainStatus", "chain_status", "request_trail"]


@dataclass(frozen=True)
class ChainStatus:
    seq: int
    hash: str
    """The root of every chain's head (:func:`~hitl.queue.audit.heads_root`)."""
    checkpoint: dict[str, Any] | None
    """A copy of the newest signed checkpoint (the anchor outside Redis is what counts)."""
    chains: dict[int, ChainHead]


def chain_status(store: Store) -> ChainStatus:
    """The chains' heads, their root and the copy of the newest checkpoint kept in Redis."""
    heads = store.head()
    head = heads_root(heads)
    try:
        raw = store.redis.get(store.keys.audit_checkpoint)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unreachable ({exc}); retry later") from exc
    checkpoint = json.loads(raw) if raw else None
    newest = checkpoint if isinstance(checkpoint, dict) else None
    return ChainStatus(head.seq, head.hash, newest, heads)


def request_trail(store: Store, request_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """The audit entries about ``request_id``, oldest first (at most ``limit``, the newest).

    It reads the request's own chain in order (the stream has no index by request), which is
    fine for the chains of a deployment that archives old entries; an export holds the rest.
    """
    from hitl.queue.checkpoints import read_entries

    try:
        entries = read_entries(store, store.keys.chain_of(request_id))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unreachable ({exc}); retry later") from exc
    mine = [e for _, e in entries if isinstance(e, dict) and e.get("request_id") == request_id]
    return mine[-limit:]
