"""Scheduling on RQ: the sweep and the tick, promotion, notifications, the worker's locks."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler

from hitl.errors import ConfigError
from hitl.models import (
    ApprovalRequest,
    Destination,
    RequestRecord,
    State,
    Verdict,
    VerdictKind,
)
from hitl.queue.keys import Keys
from hitl.queue.scheduler import (
    HitlWorker,
    ManualClock,
    Notification,
    Scheduler,
    SchedulerConfig,
    StreamSink,
    dest_key,
    raw_connection,
)
from hitl.queue.store import Store
from tests.chains import CHAIN, T0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(r: redis.Redis, settings: Any, clock: ManualClock) -> Store:
    return Store(r, signer=settings.signing_keys(), clock=clock)


@pytest.fixture
def scheduler(store: Store) -> Iterator[Scheduler]:
    s = Scheduler(store, SchedulerConfig(remind_before_s=120))
    yield s
    s.connection.close()


def _record(rid: str = "r1", *, created_at: float = T0, **verdict: Any) -> RequestRecord:
    verdict.setdefault("escalation", CHAIN)
    req = ApprovalRequest(id=rid, action="stop_instance", summary=f"Stop {rid}")
    return RequestRecord(
        request=req,
        verdict=Verdict(kind=VerdictKind.REVIEW, policy_version="pv1", **verdict),
        created_at=created_at,
        params=req.params,
    )


def _scheduled(scheduler: Scheduler) -> dict[str, float]:
    registry = ScheduledJobRegistry(queue=scheduler.queue)
    key = registry.key
    return {i.decode(): s for i, s in scheduler.connection.zrange(key, 0, -1, withscores=True)}


def test_queue_name_follows_the_prefix(store: Store) -> None:
    """Two installations with different prefixes on one Redis use different queues."""
    assert "hitl" == SchedulerConfig().queue_name(Keys())
    assert "acme-hitl" == SchedulerConfig().queue_name(Keys("acme:hitl:"))
    assert "mine" == SchedulerConfig(queue="mine").queue_name(Keys())


def test_on_stored_schedules_no_job_per_request(scheduler: Scheduler) -> None:
    """Storing requests arms the sweep and the tick (one job each), never a job per request."""
    records = [_record(f"r{i}") for i in range(50)]
    records.append(_record("done").model_copy(update={"state": State.APPROVED}))
    assert records == scheduler.on_stored(records)
    assert records[:2] == scheduler.on_stored(records[:2])
    slot = int(T0) + 1
    tick = int(T0 // 30) + 1
    assert {f"hitl-sweep-{slot}": float(slot), f"hitl-tick-{tick}": tick * 30.0} == _scheduled(
        scheduler
    )


def test_arm_sweep_once_per_slot(scheduler: Scheduler, clock: ManualClock) -> None:
    """Any number of arm_sweep() calls make one sweep job per one-second slot, kept briefly."""
    assert scheduler.arm_sweep()
    assert not scheduler.arm_sweep()
    clock.advance(0.5)
    assert not scheduler.arm_sweep()
    clock.advance(1)
    assert scheduler.arm_sweep()
    slot = int(T0) + 1
    assert {f"hitl-sweep-{slot}": slot, f"hitl-sweep-{slot + 1}": slot + 1.0} == _scheduled(
        scheduler
    )
    job = Job.fetch(f"hitl-sweep-{slot}", connection=scheduler.connection)
    assert ("hitl.jobs.sweep_job", (), 60) == (job.func_name, job.args, job.result_ttl)
    assert job.retries_left is not None and job.retries_left > 0


def test_enqueue_due_moves_only_due_jobs(scheduler: Scheduler, clock: ManualClock) -> None:
    """Moving the clock and promoting puts exactly the due jobs on the queue."""
    scheduler.arm_sweep()
    scheduler.arm_tick()
    assert 0 == scheduler.enqueue_due()
    clock.advance(1)
    assert 1 == scheduler.enqueue_due()
    clock.advance(30)
    assert 1 == scheduler.enqueue_due()
    slot, tick = int(T0) + 1, int(T0 // 30) + 1
    assert [f"hitl-sweep-{slot}", f"hitl-tick-{tick}"] == scheduler.queue.get_job_ids()
    assert {} == _scheduled(scheduler)


def test_arm_tick_once_per_slot(scheduler: Scheduler, clock: ManualClock) -> None:
    """Any number of arm_tick() calls make one tick job per slot."""
    assert scheduler.arm_tick()
    assert not scheduler.arm_tick()
    clock.advance(1)
    assert not scheduler.arm_tick()
    ticks = {k: v for k, v in _scheduled(scheduler).items() if "-tick-" in k}
    slot = int(T0 // 30) + 1
    assert {f"hitl-tick-{slot}": slot * 30.0} == ticks


def test_notification_stream_format(store: Store) -> None:
    """One entry per key with string fields the adapters parse back."""
    sink = StreamSink(store)
    note = Notification(
        kind="escalated",
        key="esc:r1:1",
        request_id="r1",
        level=1,
        target=Destination(kind="oncall", target="secondary"),
        text="Escalated to you",
        at=T0,
    )
    assert sink.send(note)
    assert not sink.send(note)
    ((entry_id, fields),) = store.redis.xrange("hitl:notify")
    assert {
        "kind": "escalated",
        "key": "esc:r1:1",
        "request_id": "r1",
        "level": "1",
        "target": '{"kind":"oncall","target":"secondary"}',
        "text": "Escalated to you",
        "thread": "1",
        "digest_id": "",
        "at": f"{T0:.6f}",
        "data": "{}",
    } == fields
    assert [(entry_id, note)] == sink.read()
    raw = raw_connection(store.redis)
    ((_, raw_fields),) = raw.xrange("hitl:notify")
    assert note == Notification.from_fields(raw_fields)
    raw.close()


def test_dest_key() -> None:
    """Destinations become stable keys; none is `default`."""
    assert "channel:#ops" == dest_key(Destination(kind="channel", target="#ops"))
    assert "default" == dest_key(None)


def test_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """HITL_* variables configure pacing; a bad value names the variable."""
    monkeypatch.setenv("HITL_REMIND_BEFORE", "60")
    monkeypatch.setenv("HITL_CHANNEL_PACE", "5/30")
    monkeypatch.setenv("HITL_DIGEST_WAIT", "900")
    monkeypatch.setenv("HITL_SWEEP", "2")
    config = SchedulerConfig.from_env()
    assert (60, 5, 30, 900, 2) == (
        config.remind_before_s,
        config.pace,
        config.pace_window_s,
        config.digest_wait_s,
        config.sweep_s,
    )
    monkeypatch.setenv("HITL_TICK", "soon")
    with pytest.raises(ConfigError, match="HITL_TICK"):
        SchedulerConfig.from_env()
    monkeypatch.setenv("HITL_TICK", "10")
    monkeypatch.setenv("HITL_CHANNEL_PACE", "lots")
    with pytest.raises(ConfigError, match="HITL_CHANNEL_PACE"):
        SchedulerConfig.from_env()


def test_worker_takes_over_a_dead_schedulers_lock(scheduler: Scheduler) -> None:
    """A lock whose holder stopped heart-beating is released; a live holder's is kept."""
    conn = scheduler.connection
    key = RQScheduler.get_locking_key("hitl")
    worker = HitlWorker([scheduler.queue], connection=conn)
    conn.set(key, "ghost", ex=60)  # holder with no metadata at all: killed long ago
    assert ["hitl"] == worker.reclaim_stale_scheduler_locks()
    assert conn.get(key) is None

    alive = RQScheduler([scheduler.queue], connection=conn, name="alive")
    alive.register_birth()
    conn.set(key, "alive", ex=60)
    assert [] == worker.reclaim_stale_scheduler_locks()
    stale = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=60)
    conn.hset(alive.key, "last_heartbeat", stale.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    assert ["hitl"] == worker.reclaim_stale_scheduler_locks()
