"""The web inbox's records in Redis: sessions, one-time sign-in links, reviewers' passwords.

Like token records (:mod:`hitl.queue.tokens`), a record alone proves nothing: a session cookie
and a sign-in link carry the service keyring's signature, and a password record is signed too
(:mod:`hitl.handlers.sessions` checks all three). The records make expiry, sign-out and one-time
use possible. Every write commits together with its audit entry::

    web = WebRecords(store)
    web.put_session(record, AuditEvent("session_created", None, "bob", {...}))
    web.session("s-3f9a0c1b2d4e")              # SessionRecord | None (gone once expired)
    web.take_link("l-1c2d3e4f5a6b")            # the link's subject, once; None afterwards
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from pydantic import BaseModel, ConfigDict

from hitl.errors import StoreUnavailable
from hitl.queue.audit import AuditEvent
from hitl.queue.store import Store

__all__ = ["PasswordRecord", "SessionRecord", "WebRecords"]

T = TypeVar("T")


class SessionRecord(BaseModel):
    """One signed-in browser: who, since when, until when, and its CSRF token."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sid: str
    sub: str
    csrf: str
    via: str
    """How the reviewer signed in: ``password`` or ``link``."""
    iat: float
    exp: float


class PasswordRecord(BaseModel):
    """A reviewer's argon2 hash, signed by the service keyring (``kid``, ``signature``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    user: str
    hash: str
    set_at: float
    set_by: str = ""
    kid: str = ""
    signature: str = ""


class WebRecords:
    """Reads and writes the inbox's records through a :class:`Store` (its keys, its chain)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- sessions ------------------------------------------------------------------------------

    def session(self, sid: str) -> SessionRecord | None:
        raw = _read(lambda: self.store.redis.get(self.store.keys.web("session", sid)))
        return SessionRecord.model_validate_json(raw) if raw else None

    def put_session(self, record: SessionRecord, event: AuditEvent) -> None:
        """Store the session (it expires with its record) and audit it in one transaction."""
        key = self.store.keys.web("session", record.sid)

        def put(pipe: Any) -> None:
            pipe.set(key, record.model_dump_json())
            if math.isfinite(record.exp):
                pipe.expireat(key, math.ceil(record.exp))

        self.store.append_events([event], also=put)

    def end_session(self, sid: str, event: AuditEvent) -> None:
        """Delete the session (signing out) and audit it."""
        key = self.store.keys.web("session", sid)
        self.store.append_events([event], also=lambda pipe: pipe.delete(key))

    # -- one-time links ------------------------------------------------------------------------

    def put_link(self, lid: str, sub: str, exp: float, event: AuditEvent) -> None:
        key = self.store.keys.web("link", lid)

        def put(pipe: Any) -> None:
            pipe.set(key, sub)
            pipe.expireat(key, math.ceil(exp))

        self.store.append_events([event], also=put)

    def take_link(self, lid: str) -> str | None:
        """The link's subject, removing it (GETDEL: of two racing uses, one gets it)."""
        value = _read(lambda: self.store.redis.getdel(self.store.keys.web("link", lid)))
        return str(value) if value else None

    # -- passwords and failures ----------------------------------------------------------------

    def password(self, user: str) -> PasswordRecord | None:
        raw = _read(lambda: self.store.redis.get(self.store.keys.web("password", user)))
        return PasswordRecord.model_validate_json(raw) if raw else None

    def put_password(self, record: PasswordRecord, event: AuditEvent) -> None:
        key = self.store.keys.web("password", record.user)
        self.store.append_events([event], also=lambda pipe: pipe.set(key, record.model_dump_json()))

    def failed(self, name: str, window_s: int) -> int:
        """Count one failed sign-in for ``name``; returns the failures within ``window_s``."""
        key = self.store.keys.web("failures", name)

        def count() -> int:
            pipe = self.store.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, window_s, nx=True)
            return int(pipe.execute()[0])

        return _read(count)

    def failures(self, name: str) -> int:
        raw = _read(lambda: self.store.redis.get(self.store.keys.web("failures", name)))
        return int(raw) if raw else 0

    def refused(self, event: AuditEvent) -> None:
        """Audit a refused sign-in, session, or form."""
        self.store.append_events([event])


def _read(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unreachable ({exc}); retry later") from exc
