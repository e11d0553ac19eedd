"""hitl on a Sentinel-managed Redis (``HITL_REDIS_URL=redis+sentinel://...``): the whole
lifecycle, and a failover of the master in the middle of a load of requests and decisions that
loses nothing."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hitl.cli import main
from hitl.client import Client
from hitl.config import Settings
from hitl.errors import AlreadyDecided, StoreUnavailable
from hitl.handlers import Decider, OpenAuthority
from hitl.jobs import JobContext, use_context
from hitl.models import Reviewer, State
from hitl.queue.connection import open_store
from hitl.queue.intake import IntakeConsumer
from hitl.queue.scheduler import ManualClock, SchedulerConfig
from hitl.queue.store import Store
from tests.chains import T0
from tests.conftest import KEYRING, keyring_file, public_key_env
from tests.redis_sentinel import SentinelSetup
from tests.scenarios.helpers import audit_entries, consuming, wait_until
from tests.test_jobs import put_request, run_due

pytestmark = pytest.mark.slow

SENT = 300


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSetup]:
    """A master, its replica and two sentinels (started once for the module)."""
    with SentinelSetup() as setup:
        yield setup


@pytest.fixture
def sentinel_store(
    sentinels: SentinelSetup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Store]:
    """The environment of every process pointed at the sentinels, and a store opened from it."""
    monkeypatch.setenv("HITL_REDIS_URL", sentinels.url)
    monkeypatch.setenv("HITL_SIGNING_KEY_FILE", str(keyring_file(tmp_path)))
    monkeypatch.setenv("HITL_PUBLIC_KEY", public_key_env())
    store = open_store(Settings.from_env())
    store.redis.flushall()
    yield store
    store.redis.close()


def _submit_all(ids: list[str], errors: list[str]) -> None:
    """An agent that submits each request, retrying (same id: idempotent) when Redis is
    unreachable, as the SDK's StoreUnavailable tells it to."""
    with Client() as agent:
        for rid in ids:
            while True:
                try:
                    agent.submit("refund", {"amount": 5}, id=rid)
                    break
                except StoreUnavailable as exc:
                    errors.append(str(exc))


def _approve_until(store: Store, stop: threading.Event, errors: list[str]) -> None:
    """A reviewer approving whatever is pending until told to stop; a decision whose outcome
    was unknown (Redis went away after it was sent) is simply tried again."""
    decider = Decider(store, OpenAuthority())
    while not stop.is_set():
        try:
            for rid in store.pending_ids(limit=50):
                with contextlib.suppress(AlreadyDecided):
                    decider.approve(rid, Reviewer(user_id="bob"))
        except StoreUnavailable as exc:
            errors.append(str(exc))


def test_lifecycle_through_sentinel_survives_a_failover_under_load(
    sentinels: SentinelSetup, sentinel_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """Submitted -> stored -> approved -> the agent gets a signed decision -> the chain verifies,
    for every request, while the master fails over to its replica half way through."""
    store = sentinel_store
    ids = [f"s-{i}" for i in range(SENT)]
    consumer = IntakeConsumer(store, OpenAuthority().evaluate, claim_idle_ms=200)
    consumer.ensure_group()
    old_master = sentinels.master_port()
    errors: list[str] = []
    stop = threading.Event()
    reviewer = threading.Thread(target=_approve_until, args=(store, stop, errors), daemon=True)
    agent = threading.Thread(target=_submit_all, args=(ids, errors), daemon=True)
    with consuming(consumer, block_ms=50):
        reviewer.start()
        agent.start()
        wait_until(lambda: store.redis.exists(store.keys.req(ids[SENT // 3])), what="a third")
        new_master = sentinels.failover()
        agent.join(60)
        wait_until(
            lambda: all(r and r.state is State.APPROVED for r in map(store.find, ids)),
            timeout=60,
            what="every request to be approved",
        )
        stop.set()
        reviewer.join(10)
    consumer.close()

    with Client() as waiting_agent:  # verifies each decision with the public key only
        decided = [waiting_agent.wait(rid, timeout=5) for rid in ids]
    submitted = Counter(
        e["request_id"] for e in audit_entries(store.redis) if e["kind"] == "submitted"
    )
    lost = [rid for rid in ids if submitted[rid] == 0]
    duplicated = [rid for rid, n in submitted.items() if n > 1]
    print(
        f"sentinel failover {old_master} -> {new_master}: sent {SENT}, decided "
        f"{sum(d.approved for d in decided)}, lost {len(lost)}, duplicated {len(duplicated)}, "
        f"retried errors {len(errors)}"
    )
    assert (new_master != old_master, sentinels.master_port()) == (True, new_master)
    assert ([], [], SENT) == (lost, duplicated, sum(d.approved for d in decided))
    assert 0 == store.redis.xlen(store.keys.dead)
    capsys.readouterr()
    assert 0 == main(["audit", "verify"])
    assert capsys.readouterr().out.startswith(f"OK: {2 * SENT} entries in 16 chains")


def test_the_worker_runs_its_jobs_on_the_master_after_a_failover(
    sentinels: SentinelSetup, sentinel_store: Store
) -> None:
    """RQ gets a plain connection to the Sentinel-managed master (hitl worker's own): the sweep
    armed before a failover expires the overdue request after it."""
    clock = ManualClock(T0)
    store = Store(sentinel_store.redis, signer=KEYRING, clock=clock)
    ctx = JobContext.build(store, SchedulerConfig(retry_intervals=(1,)))
    with use_context(ctx):
        put_request(store, "w-1")
        ctx.scheduler.arm_sweep()
        sentinels.failover()
        clock.advance(10_000)
        # A pooled connection to the demoted master fails once and is dropped (RQ's worker
        # loop retries such a ConnectionError, and so does this); a job that failed on one is
        # retried, and the next sweep comes a second later anyway.
        for _ in range(3):
            with contextlib.suppress(redis.ConnectionError):
                run_due(ctx)
            clock.advance(2)
        states = [store.get("w-1").state]
    ctx.scheduler.connection.close()
    assert [State.EXPIRED] == states
