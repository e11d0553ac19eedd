"""Reading a Redis stream through a consumer group, written once for every reader.

A :class:`GroupReader` is one consumer of one group on one stream. :meth:`~GroupReader.read`
first takes over entries another consumer read but never acknowledged (it died: ``XAUTOCLAIM``
once they have been idle ``claim_idle_ms``), then reads new ones (``XREADGROUP``); entries are
acknowledged by the caller once they are handled, so nothing read is lost::

    reader = GroupReader(store.redis, store.keys.webhooks, "hitl-webhooks", start="0")
    reader.ensure_group()
    for entry in reader.read(block_ms=1000):
        handle(entry.fields)
        reader.ack([entry.id])

and, inside an event loop, :func:`follow` runs that loop (read, handle the batch, acknowledge it)
until ``stop`` is set, through Redis outages::

    await follow(reader, handle_batch, stop)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import redis
from redis.exceptions import RedisError, ResponseError

from hitl.errors import StoreUnavailable

__all__ = ["Entry", "GroupReader", "Handler", "consumer_name", "follow", "stream_entries"]

log = logging.getLogger("hitl.streams")


class Entry(NamedTuple):
    """One stream entry: its id and its fields (as text)."""

    id: str
    fields: dict[str, str]


Handler = Callable[[list[Entry]], Awaitable[None]]
"""What :func:`follow` hands each batch to; the batch is acknowledged once it returns."""


def consumer_name() -> str:
    """A consumer name unique to this process: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class GroupReader:
    """One consumer of ``group`` on ``stream`` (see the module docstring).

    ``start`` is where a group created now begins: ``"0"`` for an outbox whose every entry
    matters, ``"$"`` for a feed of changes that only matter from now on.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        *,
        consumer: str | None = None,
        start: str = "$",
        count: int = 200,
        claim_idle_ms: int = 60_000,
        claim_every_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.redis = client
        self.stream = stream
        self.group = group
        self.consumer = consumer or consumer_name()
        self.start = start
        self.count = count
        self.claim_idle_ms = claim_idle_ms
        self.claim_every_s = claim_every_s
        """How often :meth:`read` looks for abandoned entries (0: on every read)."""
        self.clock = clock
        self._claim_cursor = "0-0"
        self._next_claim = 0.0

    def ensure_group(self) -> None:
        """Create the group (and the stream) unless it exists."""
        try:
            self.redis.xgroup_create(self.stream, self.group, id=self.start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def claim(self) -> list[Entry]:
        """Take over entries of this group idle longer than ``claim_idle_ms``."""
        reply: Any = self.redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self.count,
        )
        cursor, raw = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        self._claim_cursor = _text(cursor)
        if deleted:  # trimmed from the stream while pending: nothing left to handle
            self.ack([_text(i) for i in deleted])
        return [Entry(_text(i), _fields(f)) for i, f in raw if f is not None]

    def read(self, block_ms: int = 0) -> list[Entry]:
        """Abandoned entries when it is time to look for them, else new ones (waiting up to
        ``block_ms`` for some; 0: do not wait)."""
        now = self.clock()
        if now >= self._next_claim:
            claimed = self.claim()
            if self._claim_cursor == "0-0":  # scanned every pending entry: look again later
                self._next_claim = now + self.claim_every_s
            if claimed:
                return claimed
        reply: Any = self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=self.count, block=block_ms or None
        )
        return stream_entries(reply)

    def ack(self, ids: Sequence[str], *, delete: bool = False) -> None:
        """Acknowledge ``ids``; with ``delete``, also remove them from the stream in the same
        transaction (an outbox that should hold only open work)."""
        if not ids:
            return
        if not delete:
            self.redis.xack(self.stream, self.group, *ids)
            return
        pipe = self.redis.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()


async def follow(
    reader: GroupReader,
    handle: Handler,
    stop: asyncio.Event,
    *,
    block_ms: int = 250,
    retry_s: float = 1.0,
    ack: bool = True,
) -> None:
    """Read batches, ``handle`` each and acknowledge it, until ``stop`` is set.

    A batch whose handler raises is not acknowledged (it is read again once its entries have been
    idle ``claim_idle_ms``); Redis errors are logged and retried after ``retry_s``. The group is
    (re)created when missing, so a flushed Redis does not stop the reader. ``ack=False``: the
    handler acknowledges each entry itself when it is done with it (the webhook deliverer does,
    together with its audit entry).
    """
    ready = False
    while not stop.is_set():
        try:
            if not ready:
                await asyncio.to_thread(reader.ensure_group)
                ready = True
            batch = await asyncio.to_thread(reader.read, block_ms)
            if batch:
                await handle(batch)
                if ack:
                    await asyncio.to_thread(reader.ack, [e.id for e in batch])
        except asyncio.CancelledError:
            raise
        except (RedisError, StoreUnavailable) as exc:  # Redis down: say so, wait, go on
            log.warning("reading %s (group %s) failed: %s", reader.stream, reader.group, exc)
            ready = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=retry_s)
        except Exception:  # a handler's bug must not end the reader
            log.exception("handling %s (group %s) failed", reader.stream, reader.group)
            ready = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=retry_s)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in dict(raw).items()}


def stream_entries(reply: Any) -> list[Entry]:
    """XREADGROUP's reply (RESP2 list or RESP3 dict) as entries."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    return [
        Entry(_text(entry_id), _fields(fields))
        for _name, messages in streams
        for entry_id, fields in messages or []
        if fields is not None  # an entry deleted while pending
    ]
