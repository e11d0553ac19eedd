"""kill -9 of an intake consumer holding unacknowledged entries: another one takes over, and
every request is stored exactly once (none lost, none doubled)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import redis

from hitl.handlers import review_everything
from hitl.queue.audit import verify_entries
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.conftest import keyring_file
from tests.redis_server import RedisServer
from tests.scenarios.helpers import audit_entries, wait_until, xadd_raw

VICTIM = textwrap.dedent(
    """
    import sys, threading, time
    import redis
    from hitl.handlers import review_everything
    from hitl.queue.intake import IntakeConsumer
    from hitl.queue.store import Store
    from hitl.keys import KeyRing

    url, keys = sys.argv[1], sys.argv[2]
    store = Store(redis.Redis.from_url(url, decode_responses=True), signer=KeyRing.load(keys))

    def classify(request):
        if request.action == "slow_tool":   # hold this batch, unacknowledged, until killed
            time.sleep(600)
        return review_everything(request)

    IntakeConsumer(store, classify, name="victim", batch=10, block_ms=100).run(threading.Event())
    """
)

ROOT = Path(__file__).resolve().parents[2]


def _owned_by(r: redis.Redis, consumer: str) -> int:
    for entry in r.xpending("hitl:requests", "hitl-intake")["consumers"]:
        if entry["name"] == consumer:
            return int(entry["pending"])
    return 0


def test_killed_consumer_entries_are_processed_once(
    redis_server: RedisServer, store: Store, r: redis.Redis, tmp_path: Path
) -> None:
    """The victim stores one batch, dies holding the next; the rescuer stores that batch once."""
    fast = [f"fast-{i}" for i in range(10)]
    slow = [f"slow-{i}" for i in range(10)]
    for rid in fast:
        xadd_raw(r, json.dumps({"id": rid, "action": "fast_tool"}))
    for rid in slow:
        xadd_raw(r, json.dumps({"id": rid, "action": "slow_tool"}))
    r.xgroup_create("hitl:requests", "hitl-intake", id="0")

    proc = subprocess.Popen(
        [sys.executable, "-c", VICTIM, redis_server.url, str(keyring_file(tmp_path))],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(
            lambda: all(store.find(rid) for rid in fast) and _owned_by(r, "victim") == 10,
            timeout=30,
            what="the victim to store the first batch and hold the second",
        )
        assert all(store.find(rid) is None for rid in slow)
        os.kill(proc.pid, signal.SIGKILL)
        assert -signal.SIGKILL == proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    assert 10 == _owned_by(r, "victim")
    rescuer = IntakeConsumer(
        store, review_everything, name="rescuer", block_ms=0, claim_idle_ms=100
    )
    try:
        time.sleep(0.15)
        assert 10 == rescuer.run_once(block_ms=0)
        assert 0 == rescuer.run_once(block_ms=0)
    finally:
        rescuer.close()

    assert (10, 10, 0) == (rescuer.stats.reclaimed, rescuer.stats.stored, rescuer.stats.duplicate)
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]
    submitted = Counter(e["request_id"] for e in audit_entries(r) if e["kind"] == "submitted")
    assert {rid: 1 for rid in fast + slow} == dict(submitted)
    assert [] == [e for e in audit_entries(r) if e["kind"] == "duplicate_submission"]
    assert sorted(fast + slow) == sorted(store.pending_ids(limit=100))
    assert verify_entries(audit_entries(r), expect_head=store.head()).ok
