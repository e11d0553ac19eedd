"""What requests cost in Redis: ``MEMORY USAGE`` of each request's own keys (its record and its
decision list), and the ``INFO memory`` growth that includes its share of the shared streams
(audit chains, ``hitl:decisions``, ``hitl:events``)::

    before = used_memory(store.redis)
    ...                                         # submit and decide the requests
    report = measure(store, ids, used_before=before)
    print(report)   # "512 requests: 1788 B each in their own keys (max 1872); 5.9 KiB each ..."
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from hitl.queue.keys import Keys
from hitl.queue.store import Store

__all__ = ["MemoryReport", "measure", "request_keys", "used_memory"]

BATCH = 1000


def request_keys(keys: Keys, request_id: str) -> list[str]:
    """The keys that belong to one request alone (those that exist are measured)."""
    return [keys.req(request_id), keys.decision(request_id)]


def used_memory(client: redis.Redis) -> int:
    """``INFO memory`` ``used_memory``: every byte the server holds."""
    info: Any = client.info("memory")
    return int(info["used_memory"])


@dataclass(frozen=True)
class MemoryReport:
    requests: int
    own_bytes: list[int]
    """Per request: the sum of ``MEMORY USAGE`` of its own keys."""
    used_delta: int | None = None
    """``used_memory`` growth since ``used_before`` (shared streams included), if given."""

    @property
    def mean(self) -> float:
        return sum(self.own_bytes) / len(self.own_bytes) if self.own_bytes else 0.0

    @property
    def max(self) -> int:
        return max(self.own_bytes, default=0)

    @property
    def used_per_request(self) -> float | None:
        if self.used_delta is None or not self.requests:
            return None
        return self.used_delta / self.requests

    def __str__(self) -> str:
        text = (
            f"{self.requests} requests: {self.mean:.0f} B each in their own keys (max {self.max})"
        )
        if (used := self.used_per_request) is not None:
            text += f"; {used:.0f} B each by INFO memory (audit and streams included)"
        return text


def measure(store: Store, ids: Sequence[str], *, used_before: int | None = None) -> MemoryReport:
    """``MEMORY USAGE`` (exact: ``SAMPLES 0``) of every request's own keys, pipelined."""
    own: list[int] = []
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        pipe = store.redis.pipeline(transaction=False)
        per = [request_keys(store.keys, rid) for rid in chunk]
        for names in per:
            for name in names:
                pipe.memory_usage(name, samples=0)
        sizes = iter(pipe.execute())
        own += [sum(next(sizes) or 0 for _ in names) for names in per]
    delta = None if used_before is None else used_memory(store.redis) - used_before
    return MemoryReport(len(ids), own, delta)
