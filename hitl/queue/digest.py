"""Digests: many low-urgency requests in one message, and burst folding.

Posting 25 refund cards into one channel buries it; one message with a checkbox list, "Approve
selected", "Approve all 25" and "Reject all" does not. Two ways in:

- a request the policy marks digest-eligible (``verdict.digest``) never gets its own card: it
  waits at most ``digest_wait_s`` for its destination's next digest;
- a burst: when more low/medium requests arrive for one destination than its pace allows
  (``pace`` cards per ``pace_window_s``), the extra ones are folded into a digest posted at the end
  of the window. High and critical requests always get their own card.

::

    digests = Digests(store, StreamSink(store))
    cards = digests.fold(records)           # the records that still get their own card now
    digests.post_due()                      # the periodic job: one digest per due destination

A digest is posted under a per-destination lock (``SET NX PX``) and its requests leave the
destination's queue in the same transaction that records the digest, so two workers running the
digest job at once post it once. The digest (its id and exactly the requests it lists) is kept,
so "Approve all 25" acts on the 25 that were shown: see :func:`hitl.handlers.batch.decide_digest`.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from hitl.errors import NotFound, StoreUnavailable
from hitl.models import Destination, RequestRecord, Risk, State
from hitl.queue.scheduler import Notification, NotificationSink, SchedulerConfig, dest_key
from hitl.queue.store import Store

__all__ = ["Digest", "DigestItem", "Digests"]

T = TypeVar("T")
LOCK_MS = 30_000

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class DigestItem(BaseModel):
    """One line of a digest: enough to decide on, with a link (the id) to the full request."""

    request_id: str
    title: str
    action: str
    risk: Risk
    requested_by: str | None = None
    agent_id: str | None = None
    created_at: float = 0.0
    approvals: int = 1
    """Approvals the request needs: a two-person request is not decided by one "Approve all"."""
    deadline: float | None = None


class Digest(BaseModel):
    """One digest message. The actions are ``approve_selected``, ``approve_all``, ``reject_all``."""

    id: str
    destination: Destination | None = None
    dest: str
    items: list[DigestItem] = Field(default_factory=list)
    created_at: float = 0.0

    @property
    def request_ids(self) -> list[str]:
        return [item.request_id for item in self.items]

    @property
    def text(self) -> str:
        """A plain-text rendering (for the CLI, logs, and channels without checkboxes)."""
        n = len(self.items)
        lines = [f"{n} request{'s' if n != 1 else ''} waiting for review in {self.dest}:"]
        for item in self.items:
            who = f", for {item.requested_by}" if item.requested_by else ""
            two = f", needs {item.approvals} approvals" if item.approvals > 1 else ""
            lines.append(
                f"[ ] {item.title}  ({item.risk}, {item.action}{who}{two})  {item.request_id}"
            )
        lines.append(f"Approve selected | Approve all {n} | Reject all (with a reason)")
        return "\n".join(lines)


class Digests:
    """Folds requests into per-destination queues and posts them as digests."""

    def __init__(
        self,
        store: Store,
        sink: NotificationSink,
        config: SchedulerConfig | None = None,
    ) -> None:
        self.store = store
        self.redis = store.redis
        self.sink = sink
        self.config = config or SchedulerConfig()
        self.keys = store.keys
        self._release = self.redis.register_script(_RELEASE)

    # -- keys ----------------------------------------------------------------------------------

    def _queue(self, dest: str) -> str:
        """zset: request ids waiting for ``dest``'s digest, scored by when they must be posted."""
        return self.keys.digest(f"q:{dest}")

    @property
    def _due(self) -> str:
        """zset: destinations with a waiting digest, scored by the earliest post time."""
        return self.keys.digest("due")

    @property
    def _outbox(self) -> str:
        """zset: digests recorded but not yet handed to the sink (crash between the two)."""
        return self.keys.digest("outbox")

    def _doc(self, digest_id: str) -> str:
        return self.keys.digest(f"doc:{digest_id}")

    def _of(self, request_id: str) -> str:
        return self.keys.digest(f"of:{request_id}")

    def _lock(self, dest: str) -> str:
        return self.keys.digest(f"lock:{dest}")

    def _pace(self, dest: str, window: int) -> str:
        return self.keys.pace(dest, window)

    # -- folding -------------------------------------------------------------------------------

    def fold(
        self, records: Sequence[RequestRecord], now: float | None = None
    ) -> list[RequestRecord]:
        """Queue digest-eligible requests and a burst's extras; return those that get a card now.

        Terminal records (decided by policy at intake) pass through unchanged.
        """
        now = self.store.clock() if now is None else now
        cfg = self.config
        window = math.floor(now / cfg.pace_window_s)
        window_end = (window + 1) * cfg.pace_window_s
        paced: list[RequestRecord] = []
        queued: list[tuple[RequestRecord, float]] = []
        for record in records:
            if record.state is not State.PENDING:
                continue
            urgent = record.verdict.risk.rank >= Risk.HIGH.rank
            if record.verdict.digest and not urgent:
                queued.append((record, record.created_at + cfg.digest_wait_s))
            elif cfg.pace > 0:
                paced.append(record)
        if paced:
            # One INCRBY per destination for the whole batch: the n-th record of a destination
            # in it is card number (count before the batch) + n of the window.
            by_dest: dict[str, list[RequestRecord]] = {}
            for record in paced:
                by_dest.setdefault(dest_key(record.verdict.destination), []).append(record)
            pipe = self.redis.pipeline(transaction=False)
            for dest, group in by_dest.items():
                key = self._pace(dest, window)
                pipe.incrby(key, len(group))
                pipe.expire(key, cfg.pace_window_s * 2)
            replies = self._call(pipe.execute)
            for (_dest, group), total in zip(by_dest.items(), replies[::2], strict=True):
                for number, record in enumerate(group, start=int(total) - len(group) + 1):
                    urgent = record.verdict.risk.rank >= Risk.HIGH.rank
                    if not urgent and number > cfg.pace:
                        queued.append((record, window_end))
        if queued:
            waiting: dict[str, dict[str, float]] = {}
            for record, post_at in queued:
                waiting.setdefault(dest_key(record.verdict.destination), {})[record.id] = post_at
            pipe = self.redis.pipeline(transaction=False)
            for dest, members in waiting.items():
                pipe.zadd(self._queue(dest), members, nx=True)
                pipe.zadd(self._due, {dest: min(members.values())}, lt=True)
            self._call(pipe.execute)
        folded = {record.id for record, _ in queued}
        return [r for r in records if r.id not in folded]

    def waiting(self, dest: str) -> list[str]:
        """Request ids waiting for ``dest``'s next digest."""
        return [str(i) for i in self._call(lambda: self.redis.zrange(self._queue(dest), 0, -1))]

    # -- posting -------------------------------------------------------------------------------

    def post_due(self, now: float | None = None) -> list[Digest]:
        """Post the digest of every destination whose earliest waiting request is due."""
        now = self.store.clock() if now is None else now
        self._flush_outbox()
        dests = self._call(lambda: self.redis.zrangebyscore(self._due, "-inf", now))
        posted = []
        for dest in dests:
            digest = self.post(str(dest), now)
            if digest is not None:
                posted.append(digest)
        return posted

    def post(self, dest: str, now: float | None = None) -> Digest | None:
        """Post ``dest``'s digest now (None: nothing waiting, or another worker is posting it)."""
        now = self.store.clock() if now is None else now
        token = uuid.uuid4().hex
        lock = self._lock(dest)
        if not self._call(lambda: self.redis.set(lock, token, nx=True, px=LOCK_MS)):
            return None
        try:
            digest = self._allocate(dest, now)
            if digest is not None:
                self._send(digest)
            return digest
        finally:
            self._release(keys=[lock], args=[token])

    def get(self, digest_id: str) -> Digest:
        """A posted digest, or :class:`NotFound` (unknown, or older than ``digest_ttl_s``)."""
        raw = self._call(lambda: self.redis.get(self._doc(digest_id)))
        if raw is None:
            raise NotFound(
                f"no digest {digest_id!r} (digests are kept {self.config.digest_ttl_s}s)"
            )
        return Digest.model_validate_json(raw)

    def digest_of(self, request_id: str) -> str | None:
        """The id of the digest that lists ``request_id`` (so its message can be re-rendered)."""
        raw = self._call(lambda: self.redis.get(self._of(request_id)))
        return str(raw) if raw is not None else None

    # -- internals -----------------------------------------------------------------------------

    def _allocate(self, dest: str, now: float) -> Digest | None:
        """Take ``dest``'s waiting requests off its queue and record them as one digest (one
        transaction, retried if a request is folded in meanwhile)."""
        queue = self._queue(dest)
        store = self.store

        def attempt(pipe: Any) -> Digest | None:
            pipe.watch(queue)
            ids = [str(i) for i in pipe.zrange(queue, 0, -1)]
            raws = pipe.mget([store.keys.req(i) for i in ids]) if ids else []
            live: list[RequestRecord] = []
            gone: list[str] = []
            for request_id, raw in zip(ids, raws, strict=True):
                record = RequestRecord.model_validate_json(raw) if raw else None
                if record is None or record.state is not State.PENDING:
                    gone.append(request_id)
                else:
                    live.append(record)
            taken = live[: self.config.digest_max_items]
            pipe.multi()
            if gone:
                pipe.zrem(queue, *gone)
            if len(taken) < len(live):
                pipe.zadd(self._due, {dest: now})  # the rest go out in the next digest
            else:
                pipe.zrem(self._due, dest)
            digest = None
            if taken:
                digest = _digest(dest, taken, now)
                ttl = self.config.digest_ttl_s
                pipe.set(self._doc(digest.id), digest.model_dump_json(), ex=ttl)
                pipe.zrem(queue, *digest.request_ids)
                for request_id in digest.request_ids:
                    pipe.set(self._of(request_id), digest.id, ex=ttl)
                pipe.zadd(self._outbox, {digest.id: now})
            pipe.execute()
            return digest

        return self._transact(attempt)

    def _send(self, digest: Digest) -> None:
        n = len(digest.items)
        self.sink.send(
            Notification(
                kind="digest",
                key=f"digest:{digest.id}",
                digest_id=digest.id,
                target=digest.destination,
                thread=False,
                text=f"{n} request{'s' if n != 1 else ''} to review in one go:\n{digest.text}",
                at=digest.created_at,
                data={"digest": digest.model_dump(mode="json")},
            )
        )
        self._call(lambda: self.redis.zrem(self._outbox, digest.id))

    def _flush_outbox(self) -> None:
        """Hand over digests recorded by a worker that died before its sink call."""
        for digest_id in self._call(lambda: self.redis.zrange(self._outbox, 0, -1)):
            try:
                digest = self.get(str(digest_id))
            except NotFound:  # expired before it could be sent: nothing left to send
                self._call(partial(self.redis.zrem, self._outbox, str(digest_id)))
                continue
            self._send(digest)

    def _transact(self, attempt: Callable[[Any], T]) -> T:
        for _ in range(50):
            try:
                with self.redis.pipeline(transaction=True) as pipe:
                    return self._call(partial(attempt, pipe))
            except WatchError:
                continue
        raise StoreUnavailable("the digest queue kept changing; nothing was posted - retry later")

    @staticmethod
    def _call(fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"Redis is unreachable ({exc}); retry later") from exc


def _digest(dest: str, records: Sequence[RequestRecord], now: float) -> Digest:
    ids = sorted(r.id for r in records)
    digest_id = "dg-" + hashlib.sha256(("\n".join([dest, *ids])).encode()).hexdigest()[:16]
    items = [
        DigestItem(
            request_id=r.id,
            title=r.request.title,
            action=r.request.action,
            risk=r.verdict.risk,
            requested_by=r.request.requested_by,
            agent_id=r.request.agent_id,
            created_at=r.created_at,
            approvals=r.verdict.approvals,
            deadline=r.deadline,
        )
        for r in sorted(records, key=lambda r: (r.created_at, r.id))
    ]
    destination = records[0].verdict.destination
    return Digest(id=digest_id, destination=destination, dest=dest, items=items, created_at=now)
