"""Live updates for the inbox: one reader of the record-change stream, fanned out to browsers.

Whoever changes a request (a Slack click, the CLI, the API, the scheduler) writes an entry to
``<prefix>events`` (:attr:`hitl.queue.keys.Keys.events`) in the same transaction. One task reads
that stream (one blocked thread, however many browsers are open) and hands each entry to every
subscriber's queue; the SSE endpoint writes them out::

    live = Live(store)
    async with live.subscription() as changes:
        change = await changes.get()      # {"request_id": "r-42", "kinds": "decided", ...}
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError

from hitl.queue.store import Store
from hitl.queue.streams import stream_entries

__all__ = ["CLOSING", "Live"]

log = logging.getLogger("hitl.inbox")

CLOSING: dict[str, str] = {"closing": "1"}
"""Handed to every subscriber when the server shuts down: end the stream now."""
QUEUE_SIZE = 256
"""A browser that falls this far behind loses the oldest changes (its page re-reads anyway)."""


class Live:
    """The record-change stream, read once and shared by every open inbox page."""

    def __init__(self, store: Store, *, block_ms: int = 1000) -> None:
        self.store = store
        self.block_ms = block_ms
        self.subscribers: set[asyncio.Queue[dict[str, str]]] = set()
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[asyncio.Queue[dict[str, str]]]:
        """A queue of changes from now on, while the context is open."""
        queue: asyncio.Queue[dict[str, str]] = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(queue)
        if self._task is None or self._task.done():
            start = await asyncio.to_thread(self._latest_id)
            self._task = asyncio.create_task(self._read(start))
        try:
            yield queue
        finally:
            self.subscribers.discard(queue)

    async def close(self) -> None:
        """Tell every open stream to end (:data:`CLOSING`) and stop reading."""
        self._fan_out(CLOSING)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _latest_id(self) -> str:
        newest: Any = self.store.redis.xrevrange(self.store.keys.events, count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def _read(self, last: str) -> None:
        stream = self.store.keys.events
        while self.subscribers:
            try:
                reply: Any = await asyncio.to_thread(
                    self.store.redis.xread, {stream: last}, count=200, block=self.block_ms
                )
            except RedisError as exc:  # Redis down: pages keep what they show; retry
                log.warning("live updates: reading %s failed: %s", stream, exc)
                await asyncio.sleep(1.0)
                continue
            for entry in stream_entries(reply):
                last = entry.id
                self._fan_out(entry.fields)

    def _fan_out(self, change: dict[str, str]) -> None:
        for queue in list(self.subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(change)
