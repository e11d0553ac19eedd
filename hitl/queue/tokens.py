"""The records of personal API tokens in Redis: ``<prefix>token:<tid>`` and the ``tokens`` index.

A record says that a token id was issued and whether it was revoked; it never holds the token.
A record alone proves nothing (anyone who can write Redis can plant one): the token itself must
carry the service keyring's signature (:mod:`hitl.handlers.tokens`). The record is what makes
revocation possible. Writes commit together with their audit entries::

    records = TokenRecords(store)
    records.create(record, AuditEvent("token_created", None, "ops", {"tid": record.tid}))
    records.get("t-3f9a0c1b2d4e")          # TokenRecord | None
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import redis
from pydantic import BaseModel, ConfigDict

from hitl.errors import StoreUnavailable
from hitl.queue.audit import AuditEvent
from hitl.queue.store import Store

__all__ = ["TokenRecord", "TokenRecords"]

Role = Literal["reviewer", "operator"]
T = TypeVar("T")

KEEP_AFTER_EXPIRY_S = 24 * 3600
"""A record outlives its token's expiry by a day (so ``tokens list`` shows it as expired)."""


class TokenRecord(BaseModel):
    """What the service keeps per issued token."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    tid: str
    sub: str
    role: Role
    label: str = ""
    iat: float
    exp: float
    created_by: str = ""
    revoked_at: float | None = None
    revoked_by: str | None = None


class TokenRecords:
    """Reads and writes token records through a :class:`Store` (its keys, its audit chain)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def get(self, tid: str) -> TokenRecord | None:
        raw = _read(lambda: self.store.redis.get(self.store.keys.token(tid)))
        return TokenRecord.model_validate_json(raw) if raw else None

    def create(self, record: TokenRecord, event: AuditEvent) -> None:
        """Store the record and audit its creation in one transaction."""
        self.store.append_events([event], also=lambda pipe: self._put(pipe, record))

    def revoke(self, record: TokenRecord, event: AuditEvent) -> None:
        """Store the record (now marked revoked) and audit the revocation in one transaction."""
        self.store.append_events([event], also=lambda pipe: self._put(pipe, record))

    def refused(self, event: AuditEvent) -> None:
        """Audit a refused use of a token."""
        self.store.append_events([event])

    def all(self) -> list[TokenRecord]:
        """Every record still kept, oldest first (ids whose record expired are dropped)."""
        keys = self.store.keys

        def read() -> list[Any]:
            tids = sorted(str(t) for t in self.store.redis.smembers(keys.tokens))
            raws = self.store.redis.mget([keys.token(t) for t in tids]) if tids else []
            gone = [t for t, raw in zip(tids, raws, strict=True) if raw is None]
            if gone:
                self.store.redis.srem(keys.tokens, *gone)
            return [raw for raw in raws if raw is not None]

        records = [TokenRecord.model_validate_json(raw) for raw in _read(read)]
        return sorted(records, key=lambda r: (r.iat, r.tid))

    def _put(self, pipe: Any, record: TokenRecord) -> None:
        keys = self.store.keys
        pipe.set(keys.token(record.tid), record.model_dump_json())
        if math.isfinite(record.exp):
            pipe.expireat(keys.token(record.tid), int(record.exp + KEEP_AFTER_EXPIRY_S))
        pipe.sadd(keys.tokens, record.tid)


def _read(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unreachable ({exc}); retry later") from exc
