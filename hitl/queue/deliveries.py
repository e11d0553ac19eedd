"""What was sent about a request outside chat (email, SMS, PagerDuty, Jira), and how it went.

One hash per request (``<prefix>deliveries:<id>``), one :class:`Delivery` per field, keyed by
what it was for and to whom (``esc2:sms:oncall:managers:bob``). Claiming a key with ``HSETNX``
before sending makes a notification go out once even when two replicas see the same trigger;
later writes replace the field as the status moves (``queued`` -> ``sent`` -> ``delivered``)::

    deliveries = Deliveries(store)
    if deliveries.claim(delivery):          # False: someone already sends this one
        ...
        deliveries.put(delivery.moved("sent", ref="SM123"))
    deliveries.list("r-42")                 # oldest first, for `hitl show`
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

import redis
from pydantic import BaseModel, ConfigDict, Field

from hitl.errors import StoreUnavailable
from hitl.queue.store import Store

__all__ = ["Delivery", "Deliveries", "DeliveryStatus"]

T = TypeVar("T")
KEEP_S = 90 * 86400
"""A request's deliveries are kept this long after their last change."""

DeliveryStatus = Literal[
    "queued", "sent", "delivered", "failed", "undelivered", "linked", "resolved", "skipped"
]


class Delivery(BaseModel):
    """One notification: what was sent (``what``), to whom, when, and its delivery status."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str
    request_id: str
    kind: str
    """``email``, ``sms``, ``pagerduty`` or ``jira``."""
    target: str
    """The policy's target, ``sms:oncall:managers``."""
    to: str
    """Who or what: a reviewer id, a PagerDuty service, a Jira project."""
    address: str = ""
    """Where: the email address, the phone number, the issue key."""
    what: str
    """``review``, ``escalation level 2``, ``fallback for sms:...``, ``decision``."""
    status: DeliveryStatus = "queued"
    attempts: int = 0
    created_at: float
    updated_at: float
    ref: str = ""
    """The provider's id: Twilio message SID, PagerDuty dedup key, Jira issue key."""
    error: str = ""
    history: list[str] = Field(default_factory=list)
    """``<status> at <epoch>`` for every status it had, oldest first."""

    def moved(self, status: DeliveryStatus, at: float, **changes: object) -> Delivery:
        history = [*self.history, f"{status} at {at:.3f}"][-20:]
        update = {"status": status, "updated_at": at, "history": history, **changes}
        return self.model_copy(update=update)


class Deliveries:
    """Reads and writes deliveries through a :class:`Store` (its Redis and its key prefix)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys

    def claim(self, delivery: Delivery) -> bool:
        """Record a new delivery; False when one with its key exists (someone sends it)."""
        key = self.keys.deliveries(delivery.request_id)

        def write() -> bool:
            pipe = self.store.redis.pipeline(transaction=True)
            pipe.hsetnx(key, delivery.key, delivery.model_dump_json())
            pipe.expire(key, KEEP_S)
            return bool(pipe.execute()[0])

        return _call(write)

    def put(self, delivery: Delivery) -> None:
        """Replace a delivery (its status moved); index its provider id when it has one."""
        key = self.keys.deliveries(delivery.request_id)

        def write() -> None:
            pipe = self.store.redis.pipeline(transaction=True)
            pipe.hset(key, delivery.key, delivery.model_dump_json())
            pipe.expire(key, KEEP_S)
            if delivery.ref:
                where = f"{delivery.request_id} {delivery.key}"
                pipe.set(self.keys.delivery_ref(delivery.ref), where, ex=KEEP_S)
            pipe.execute()

        _call(write)

    def get(self, request_id: str, key: str) -> Delivery | None:
        raw = _call(lambda: self.store.redis.hget(self.keys.deliveries(request_id), key))
        return Delivery.model_validate_json(raw) if raw else None

    def by_ref(self, ref: str) -> Delivery | None:
        """The delivery a provider's id names (None: unknown)."""
        raw = _call(lambda: self.store.redis.get(self.keys.delivery_ref(ref)))
        if not raw:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        request_id, _, key = text.partition(" ")
        return self.get(request_id, key)

    def count(self, request_id: str) -> int:
        return int(_call(lambda: self.store.redis.hlen(self.keys.deliveries(request_id))))

    def list(self, request_id: str) -> list[Delivery]:
        """Every delivery about ``request_id``, oldest first."""
        raw = _call(lambda: self.store.redis.hvals(self.keys.deliveries(request_id)))
        found = [Delivery.model_validate_json(r) for r in raw]
        return sorted(found, key=lambda d: (d.created_at, d.key))


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unreachable ({exc}); retry later") from exc
