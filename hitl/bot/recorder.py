"""Recording where cards were posted: many copies per transaction, written by one worker.

Every recorded copy appends a ``card_posted`` entry to the audit chain, and every append is
conditional on the chain's head, so concurrent writers would only collide and retry. The
:class:`CardRecorder` queues copies from every channel and writes them with
``Store.add_cards`` (one transaction for up to 200), one batch after another::

    recorder = CardRecorder(store)
    await recorder.record([(record.id, ref)], actor="slack")    # returns once it is written
"""

from __future__ import annotations

import asyncio
import logging
import time

from hitl.errors import HitlError
from hitl.models import CardRef
from hitl.queue.store import Store

__all__ = ["BATCH", "CardRecorder"]

log = logging.getLogger("hitl.dispatch")

BATCH = 200
"""Copies per transaction at most."""

_Queued = tuple[str, CardRef, str, "asyncio.Future[None]"]
"""A copy waiting to be recorded: request id, where, the channel (the audit's actor), done."""


class CardRecorder:
    """Records posted copies on their requests (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: list[_Queued] = []
        self._worker: asyncio.Task[None] | None = None

    async def record(self, items: list[tuple[str, CardRef]], actor: str) -> None:
        """Record ``(request id, copy)`` pairs posted by ``actor``; returns once they are written
        (a copy that cannot be recorded is logged: it was posted, and stays posted)."""
        if not items:
            return
        loop = asyncio.get_running_loop()
        futures = []
        for request_id, ref in items:
            done: asyncio.Future[None] = loop.create_future()
            self._queue.append((request_id, ref, actor, done))
            futures.append(done)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        await asyncio.gather(*futures)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            by_actor: dict[str, list[_Queued]] = {}
            for item in batch:
                by_actor.setdefault(item[2], []).append(item)
            for actor, items in by_actor.items():
                pairs = [(i, r) for i, r, _, _ in items]
                try:
                    failed = await asyncio.to_thread(self.record_batch, pairs, actor)
                except Exception as exc:  # whatever happens, nobody waits for ever
                    failed = [f"{type(exc).__name__}: {exc}"] * len(items)
                for (request_id, ref, _, done), error in zip(items, failed, strict=True):
                    if error:
                        log.error("card of %s posted at %s/%s but not recorded: %s",
                                  request_id, ref.conversation, ref.message, error)  # fmt: skip
                    if not done.done():
                        done.set_result(None)

    def record_batch(self, items: list[tuple[str, CardRef]], actor: str) -> list[str]:
        """Record cards in one transaction; ``""`` per item on success, else why not. When the
        transaction fails, one at a time with back-off."""
        try:
            missing = set(self.store.add_cards(items, actor))
            return [f"no request {i!r}" if i in missing else "" for i, _ in items]
        except HitlError as exc:
            log.warning("recording %d cards at once failed (%s); one by one", len(items), exc)
        failed: list[str] = []
        for request_id, ref in items:
            error = ""
            for attempt in range(5):
                try:
                    missing = set(self.store.add_cards([(request_id, ref)], actor))
                    error = f"no request {request_id!r}" if missing else ""
                    break
                except HitlError as exc:
                    error = str(exc)
                    time.sleep(0.1 * 2**attempt)
            failed.append(error)
        return failed
