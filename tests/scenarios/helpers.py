"""Small helpers the queue, handler, client, CLI and scenario tests share.

They drive the real system (a real Redis, the real intake consumer) and never replace a part::

    with consuming(intake):                       # intake.run() in a thread until the block ends
        decision = client.request_approval("refund", {"amount": 5})
    wait_until(lambda: store.find(rid) is not None)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis

from hitl.queue.intake import IntakeConsumer
from hitl.queue.keys import Keys

__all__ = [
    "audit_entries",
    "audit_kinds",
    "consuming",
    "drain",
    "run_in_thread",
    "wait_until",
    "xadd_raw",
]

T = TypeVar("T")
KEYS = Keys()


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@contextmanager
def consuming(consumer: IntakeConsumer, block_ms: int = 50) -> Iterator[threading.Thread]:
    """Run ``consumer.run()`` in a thread for the duration of the block."""
    consumer.block_ms = block_ms
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=10)


def drain(consumer: IntakeConsumer) -> int:
    """Process everything queued on the stream now; returns the number of entries handled."""
    total = 0
    while handled := consumer.run_once(block_ms=0):
        total += handled
    return total


class _Outcome:
    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None


@contextmanager
def run_in_thread(fn: Callable[[], T], timeout: float = 30.0) -> Iterator[_Outcome]:
    """Start ``fn()`` in a thread; at the end of the block join it and keep its result/error."""
    out = _Outcome()

    def target() -> None:
        try:
            out.value = fn()
        except BaseException as exc:  # handed to the test, which asserts on it
            out.error = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield out
    finally:
        thread.join(timeout)
        assert not thread.is_alive(), "the background call did not return"


def xadd_raw(client: redis.Redis, payload: str | bytes, field: str = "request") -> str:
    """``XADD hitl:requests * <field> <payload>`` exactly as another language would send it."""
    return str(client.xadd(KEYS.requests, {field: payload}))


def audit_entries(client: redis.Redis, keys: Keys = KEYS) -> list[dict[str, Any]]:
    """Every audit entry of every chain, oldest first (by ``ts``; each chain in its own order)."""
    out = []
    for chain in keys.audit_chains:
        for _id, fields in client.xrange(chain):
            value = fields[b"e"] if b"e" in fields else fields["e"]
            out.append(json.loads(value))
    return sorted(out, key=lambda e: e.get("ts", 0))


def audit_kinds(client: redis.Redis, request_id: str | None = None) -> list[str]:
    """The kinds of the audit entries (for one request, if given), oldest first."""
    return [
        e["kind"]
        for e in audit_entries(client)
        if request_id is None or e["request_id"] == request_id
    ]


def submit_raw(r: redis.Redis, intake: IntakeConsumer, rid: str, **fields: Any) -> str:
    """XADD a request as an agent would (a critical action requested by alice by default) and
    let ``intake`` store it; returns its id."""
    fields.setdefault("action", "delete_production_data")
    fields.setdefault("params", {"table": "orders", "amount": 100})
    fields.setdefault("requested_by", "alice")
    xadd_raw(r, json.dumps({"id": rid, **fields}))
    drain(intake)
    return rid
