"""Scheduling on RQ: job ids, what gets scheduled when, promotion, the tick, notifications."""

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


def test_job_ids_are_valid_and_one_to_one(scheduler: Scheduler) -> None:
    """Request ids may hold `._:`; rq job ids may not, so they are escaped without collisions."""
    ids = {scheduler.job_id("esc", rid, 1) for rid in ("a.b", "a:b", "a_b", "a_db", "a-b")}
    assert 5 == len(ids)
    assert "hitl-esc-a_db-1" == scheduler.job_id("esc", "a.b", 1)
    for job_id in ids:
        Job(id=job_id, connection=scheduler.connection)  # rq validates the id


def test_queue_name_follows_the_prefix(store: Store) -> None:
    """Two installations with different prefixes on one Redis use different queues."""
    assert "hitl" == SchedulerConfig().queue_name(Keys())
    assert "acme-hitl" == SchedulerConfig().queue_name(Keys("acme:hitl:"))
    assert "mine" == SchedulerConfig(queue="mine").queue_name(Keys())


def test_the_next_level_and_its_reminder_are_scheduled(scheduler: Scheduler) -> None:
    """One job at a time: the reminder before the next level, then (scheduled by the reminder)
    that level's escalation; later levels follow."""
    record = _record()
    assert ["hitl-rem-r1-1"] == scheduler.schedule(record)
    assert ["hitl-esc-r1-1"] == scheduler.schedule(record, reminded=True)
    assert {"hitl-esc-r1-1": T0 + 600, "hitl-rem-r1-1": T0 + 480} == _scheduled(scheduler)
    job = Job.fetch("hitl-esc-r1-1", connection=scheduler.connection)
    assert ("hitl.queue.jobs.escalate_job", ("r1", 1, T0 + 600)) == (job.func_name, job.args)
    assert job.retries_left is not None and job.retries_left > 0
    at_two = record.model_copy(update={"escalation_level": 2})
    assert ["hitl-rem-r1-3"] == scheduler.schedule(at_two)
    assert ["hitl-esc-r1-3"] == scheduler.schedule(at_two, reminded=True)
    assert T0 + 3600 == _scheduled(scheduler)["hitl-esc-r1-3"]


def test_scheduling_twice_schedules_nothing_new(scheduler: Scheduler) -> None:
    """Job ids are unique per (request, level): a second schedule() is a no-op."""
    record = _record()
    assert 1 == len(scheduler.schedule(record))
    assert [] == scheduler.schedule(record)
    assert [] == scheduler.schedule(record)
    assert 1 == len(_scheduled(scheduler))


def test_jobs_carry_their_exact_time(scheduler: Scheduler) -> None:
    """rq's registry counts whole seconds: the job is promoted at the second, and carries the
    exact deadline so it can wait out the rest (see test_jobs)."""
    scheduler.schedule(_record(created_at=T0 + 0.25, escalation=CHAIN[:1]), reminded=True)
    assert T0 + 600 == _scheduled(scheduler)["hitl-esc-r1-1"]
    job = Job.fetch("hitl-esc-r1-1", connection=scheduler.connection)
    assert ("r1", 1, T0 + 600.25) == job.args


def test_nothing_for_decided_or_finished_chains(scheduler: Scheduler) -> None:
    """Terminal records get no jobs, nor does a request at the end of its chain."""
    assert [] == scheduler.schedule(_record("done").model_copy(update={"state": State.APPROVED}))
    assert [] == scheduler.schedule(_record("end").model_copy(update={"escalation_level": 3}))
    assert [] == scheduler.schedule(_record("none", escalation=[]))


def test_reminders_only_when_useful(store: Store) -> None:
    """No reminder when disabled, in the past, or before the previous deadline."""
    off = Scheduler(store, SchedulerConfig(remind_before_s=0))
    assert ["hitl-esc-off-1"] == off.schedule(_record("off"))
    wide = Scheduler(store, SchedulerConfig(remind_before_s=900))
    level_one = _record("wide").model_copy(update={"escalation_level": 1})
    assert ["hitl-esc-wide-2"] == wide.schedule(level_one), "900 s before 20m is before 10m"
    level_two = _record("wide").model_copy(update={"escalation_level": 2})
    assert ["hitl-rem-wide-3"] == wide.schedule(level_two)
    late = Scheduler(store, SchedulerConfig(remind_before_s=120))
    assert ["hitl-esc-late-1"] == late.schedule(_record("late"), now=T0 + 500)


def test_enqueue_due_moves_only_due_jobs(scheduler: Scheduler, clock: ManualClock) -> None:
    """Moving the clock and promoting puts exactly the due jobs on the queue."""
    scheduler.schedule(_record())
    scheduler.schedule(_record(), reminded=True)
    assert 0 == scheduler.enqueue_due()
    clock.advance(480)
    assert 1 == scheduler.enqueue_due()
    clock.advance(120)
    assert 1 == scheduler.enqueue_due()
    assert ["hitl-rem-r1-1", "hitl-esc-r1-1"] == scheduler.queue.get_job_ids()
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


def test_on_stored_schedules_and_returns_cards(scheduler: Scheduler) -> None:
    """Without a folder every stored record gets its card; pending ones get their jobs."""
    records = [_record("a"), _record("b").model_copy(update={"state": State.APPROVED})]
    assert records == scheduler.on_stored(records)
    assert {"hitl-rem-a-1"} <= set(_scheduled(scheduler))
    assert not any("-b-" in i for i in _scheduled(scheduler))


def test_resync_schedules_pending_requests(scheduler: Scheduler, store: Store) -> None:
    """Requests stored before the scheduler was wired in get their jobs on resync()."""
    from hitl.queue.store import Change

    for rid in ("x1", "x2"):
        store.update(rid, lambda _c, rid=rid: Change(record=_record(rid)))
    assert 2 == scheduler.resync()  # one job each: the first reminder
    assert 0 == scheduler.resync()


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
    config = SchedulerConfig.from_env()
    assert (60, 5, 30, 900) == (
        config.remind_before_s,
        config.pace,
        config.pace_window_s,
        config.digest_wait_s,
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
