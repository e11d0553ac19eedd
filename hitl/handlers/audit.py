"""Read-only facts about the audit chain for the API: its head and the newest checkpoint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from hitl.errors import StoreUnavailable
from hitl.queue.store import Store

__all__ = ["ChainStatus", "chain_status"]


@dataclass(frozen=True)
class ChainStatus:
    seq: int
    hash: str
    checkpoint: dict[str, Any] | None
    """A copy of the newest signed checkpoint (the anchor outside Redis is what counts)."""


def chain_status(store: Store) -> ChainStatus:
    """The chain's head and the copy of its newest checkpoint kept in Redis."""
    head = store.head()
    try:
        raw = store.redis.get(store.keys.audit_checkpoint)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unreachable ({exc}); retry later") from exc
    checkpoint = json.loads(raw) if raw else None
    return ChainStatus(head.seq, head.hash, checkpoint if isinstance(checkpoint, dict) else None)
