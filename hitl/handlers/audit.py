"""Read-only facts about the audit log for the API: its chains' heads and the newest checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from hitl.errors import StoreUnavailable
from hitl.queue.audit import ChainHead, heads_root
from hitl.queue.store import Store

__all__ = ["ChainStatus", "chain_status"]


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
