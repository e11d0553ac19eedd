"""Redis goes away and comes back: the intake loop and a waiting agent carry on, and nothing
that was acknowledged is lost."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest
import redis

from hitl.client import Client
from hitl.config import Settings
from hitl.handlers import Decider, review_everything
from hitl.models import Reviewer, State
from hitl.queue.audit import verify_entries
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.conftest import KEYRING
from tests.redis_server import RedisServer, free_port
from tests.scenarios.helpers import audit_entries, consuming, run_in_thread, wait_until, xadd_raw


@pytest.fixture
def flaky() -> Iterator[RedisServer]:
    """A Redis of our own with AOF, on a fixed port, that a test may kill and restart."""
    server = RedisServer(port=free_port(), appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def fstore(flaky: RedisServer) -> Iterator[Store]:
    settings = Settings(redis_url=flaky.url, keyring=KEYRING)
    client = redis.Redis.from_url(flaky.url, decode_responses=True)
    yield Store(client, signer=settings.signing_keys())
    client.close()


def _submit(client: redis.Redis, rid: str) -> None:
    xadd_raw(client, json.dumps({"id": rid, "action": "refund", "params": {"n": rid}}))


def _stored(store: Store, ids: list[str]) -> bool:
    try:
        return all(store.find(i) is not None for i in ids)
    except Exception:  # Redis still coming back: not yet
        return False


def test_intake_survives_a_redis_kill_and_restart(
    flaky: RedisServer, fstore: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """run() rides out the outage, processes entries added after the restart, loses nothing."""
    caplog.set_level(logging.WARNING, logger="hitl.intake")
    consumer = IntakeConsumer(fstore, review_everything, claim_idle_ms=200)
    before = [f"before-{i}" for i in range(5)]
    after = [f"after-{i}" for i in range(5)]
    with consuming(consumer, block_ms=100) as thread:
        for rid in before:
            _submit(fstore.redis, rid)
        wait_until(lambda: _stored(fstore, before), what="the first requests")

        flaky.kill()
        wait_until(lambda: not _stored(fstore, before), what="Redis to be gone")
        wait_until(
            lambda: "intake: Redis unavailable" in caplog.text, what="the consumer to notice"
        )
        time.sleep(0.3)  # a few retries with backoff
        flaky.start()  # same port, same AOF directory
        assert thread.is_alive()

        for rid in after:
            _submit(fstore.redis, rid)
        wait_until(lambda: _stored(fstore, after), timeout=30, what="requests after the restart")
    consumer.close()

    assert sorted(before + after) == sorted(fstore.pending_ids(limit=100))
    assert 0 == fstore.redis.xpending("hitl:requests", "hitl-intake")["pending"]
    submitted = [e["request_id"] for e in audit_entries(fstore.redis) if e["kind"] == "submitted"]
    assert sorted(before + after) == sorted(submitted)
    report = verify_entries(audit_entries(fstore.redis), expect_head=fstore.head())
    assert report.ok, str(report)


def test_waiting_agent_survives_a_redis_restart(flaky: RedisServer, fstore: Store) -> None:
    """An agent blocked in wait() during an outage gets the decision made after the restart."""
    settings = Settings(redis_url=flaky.url, keyring=KEYRING)
    consumer = IntakeConsumer(fstore, review_everything, block_ms=0)
    consumer.ensure_group()
    with Client(settings=settings) as client:
        rid = client.submit("refund", {"amount": 5})
        consumer.run_once(block_ms=0)
        with run_in_thread(lambda: client.wait(rid, timeout=30)) as agent:
            flaky.kill()
            time.sleep(0.5)  # the agent's BLPOP fails and it retries with backoff
            flaky.start()
            wait_until(lambda: _stored(fstore, [rid]), what="the record after the restart")
            Decider(fstore).approve(rid, Reviewer(user_id="bob"))
    consumer.close()
    assert (True, State.APPROVED) == (agent.value.approved, fstore.get(rid).state)


def test_submit_while_redis_is_down_writes_nothing(flaky: RedisServer, fstore: Store) -> None:
    """StoreUnavailable from submit means the request is not queued (nothing half-written)."""
    from hitl.errors import StoreUnavailable

    settings = Settings(redis_url=flaky.url, keyring=KEYRING)
    with Client(settings=settings) as client:
        flaky.kill()
        with pytest.raises(StoreUnavailable, match="could not queue the request"):
            client.submit("refund", {"amount": 1}, id="r-1")
        flaky.start()
        assert 0 == fstore.redis.xlen("hitl:requests")
        client.submit("refund", {"amount": 1}, id="r-1")
    assert 1 == fstore.redis.xlen("hitl:requests")
