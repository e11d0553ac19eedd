"""The RQ jobs, run by a real rq SimpleWorker against a real Redis, with a moved clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import SimpleWorker
from rq.job import Job, JobStatus

from hitl import jobs
from hitl.config import Settings
from hitl.jobs import JobContext, use_context
from hitl.models import (
    ApprovalRequest,
    Destination,
    RequestRecord,
    State,
    Verdict,
    VerdictKind,
)
from hitl.queue.audit import AuditEvent
from hitl.queue.scheduler import ManualClock, SchedulerConfig, StreamSink
from hitl.queue.store import Change, Store
from tests.chains import CHAIN, T0
from tests.conftest import KEYRING, keyring_file
from tests.redis_server import free_port
from tests.scenarios.helpers import audit_entries, audit_kinds


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(r: redis.Redis, settings: Settings, clock: ManualClock) -> Store:
    return Store(r, signer=settings.signing_keys(), clock=clock)


@pytest.fixture
def ctx(store: Store) -> Iterator[JobContext]:
    """Jobs in this process use the test's store (and its clock)."""
    context = JobContext.build(store, SchedulerConfig(remind_before_s=120, retry_intervals=(1,)))
    with use_context(context):
        yield context
    context.scheduler.connection.close()


class BurstWorker(SimpleWorker):
    """rq's SimpleWorker minus its remote-command pub/sub thread (which takes ~1 s to stop)."""

    def subscribe(self) -> None:
        pass


def run_due(ctx: JobContext) -> int:
    """What the RQ scheduler + a worker do when the clock reaches now: returns jobs promoted."""
    promoted = ctx.scheduler.enqueue_due()
    BurstWorker([ctx.scheduler.queue], connection=ctx.scheduler.connection).work(burst=True)
    return promoted


def put_request(store: Store, rid: str = "r1", **verdict: Any) -> RequestRecord:
    verdict.setdefault("escalation", CHAIN)
    verdict.setdefault("destination", Destination(kind="oncall", target="primary"))
    req = ApprovalRequest(id=rid, action="stop_instance", summary=f"Stop {rid}", requested_by="al")
    record = RequestRecord(
        request=req,
        verdict=Verdict(kind=VerdictKind.REVIEW, policy_version="pv1", **verdict),
        created_at=store.clock(),
        deadline=store.clock() + verdict["escalation"][0].after_s,
        params=req.params,
    )
    store.update(rid, lambda _c: Change(record=record, events=[AuditEvent("submitted", rid, "a")]))
    return record


def _notes(ctx: JobContext) -> list[tuple[str, str]]:
    sink = ctx.sink
    assert isinstance(sink, StreamSink)
    return [(n.kind, n.key) for _, n in sink.read()]


def test_the_chain_runs_on_a_real_worker(ctx: JobContext, clock: ManualClock) -> None:
    """Reminder, level 1, level 2, timeout: the sweep fires each when the clock reaches it."""
    put_request(ctx.store)
    ctx.scheduler.arm_sweep()
    assert 0 == run_due(ctx)
    clock.advance(480)
    run_due(ctx)
    assert [("reminder", "remind:r1:1")] == _notes(ctx)
    clock.advance(120)
    run_due(ctx)
    assert (1, State.PENDING) == (ctx.store.get("r1").escalation_level, ctx.store.get("r1").state)
    for step in (480, 120, 2280, 120):
        clock.advance(step)
        run_due(ctx)
    assert State.EXPIRED == ctx.store.get("r1").state
    assert [
        ("reminder", "remind:r1:1"),
        ("escalated", "esc:r1:1"),
        ("reminder", "remind:r1:2"),
        ("escalated", "esc:r1:2"),
        ("reminder", "remind:r1:3"),
        ("expired", "timeout:r1"),
    ] == _notes(ctx)
    assert ["submitted", "escalated", "escalated", "expired"] == audit_kinds(ctx.store.redis, "r1")


def test_a_job_run_twice_acts_and_tells_once(ctx: JobContext, clock: ManualClock) -> None:
    """Running escalate_job again (a retry, a duplicate) changes nothing and notifies nobody."""
    put_request(ctx.store)
    clock.advance(600)
    assert "escalated" == jobs.escalate_job("r1", 1)
    head = ctx.store.head()
    assert "noop" == jobs.escalate_job("r1", 1)
    assert head == ctx.store.head()
    assert [("escalated", "esc:r1:1")] == _notes(ctx)


def test_notification_lost_in_a_crash_is_sent_by_the_retry(
    ctx: JobContext, clock: ManualClock
) -> None:
    """If a job dies after its transaction, its retry sends the notification it owed."""
    from hitl.handlers.timeouts import escalate

    put_request(ctx.store)
    clock.advance(600)
    escalate(ctx.store, "r1", 1)  # the transaction committed, then the worker died
    assert [] == _notes(ctx)
    assert "noop" == jobs.escalate_job("r1", 1)
    assert [("escalated", "esc:r1:1")] == _notes(ctx)


def test_the_sweep_never_acts_before_a_deadline(ctx: JobContext, clock: ManualClock) -> None:
    """A sweep a moment before the deadline changes nothing; the next one, after it, escalates."""
    put_request(ctx.store)
    clock.advance(599.5)
    assert {"reminded": 1, "escalated": 0} == jobs.sweep_job()
    assert 0 == ctx.store.get("r1").escalation_level
    clock.advance(0.5)
    assert {"reminded": 0, "escalated": 1} == jobs.sweep_job()
    entry = [e for e in audit_entries(ctx.store.redis) if e["kind"] == "escalated"][0]
    assert (1, 0.0) == (ctx.store.get("r1").escalation_level, entry["details"]["late_s"])


def test_many_due_requests_fire_in_one_sweep(ctx: JobContext, clock: ManualClock) -> None:
    """One sweep escalates every overdue request and reminds every one nearing its deadline."""
    for i in range(30):
        put_request(ctx.store, f"old{i}")
    clock.advance(500)
    for i in range(20):
        put_request(ctx.store, f"new{i}", escalation=[CHAIN[0].model_copy(update={"after_s": 200})])
    clock.advance(100)
    assert {"reminded": 20, "escalated": 30} == jobs.sweep_job()
    assert {1} == {ctx.store.get(f"old{i}").escalation_level for i in range(30)}
    assert {"remind:new0:1", "esc:old0:1"} <= {key for _kind, key in _notes(ctx)}


def test_reminders_only_when_useful(store: Store, clock: ManualClock) -> None:
    """No reminder when disabled, or when it would come before the previous deadline."""
    put_request(store, "wide")
    for before, expected in ((0, []), (900, [])):
        context = JobContext.build(store, SchedulerConfig(remind_before_s=before))
        with use_context(context):
            clock.set(T0 + 300)
            jobs.sweep_job()
            assert expected == _notes(context)
        context.scheduler.connection.close()
    context = JobContext.build(store, SchedulerConfig(remind_before_s=900))
    with use_context(context):
        for at in (600, 1200, 3600 - 900):  # level 2's reminder (20m - 900s) is before 10m: none
            clock.set(T0 + at)
            jobs.sweep_job()
        assert [("escalated", "esc:wide:1"), ("escalated", "esc:wide:2")] == _notes(context)[:2]
        assert ("reminder", "remind:wide:3") == _notes(context)[2]
    context.scheduler.connection.close()


def test_a_job_promoted_early_waits_for_its_deadline(
    ctx: JobContext, store: Store, clock: ManualClock
) -> None:
    """A job queued per request by an earlier version still runs, and waits for its deadline."""
    put_request(store)
    clock.advance(599.6)
    assert "escalated" == jobs.escalate_job("r1", 1, T0 + 600)
    assert T0 + 600 == clock()  # it slept 0.4 s (on the test's clock)
    entry = [e for e in audit_entries(store.redis) if e["kind"] == "escalated"][0]
    assert 0.0 == entry["details"]["late_s"]


def test_transient_failure_is_retried(ctx: JobContext, store: Store, clock: ManualClock) -> None:
    """A sweep that cannot reach Redis fails, is retried by rq, and then does its work."""
    put_request(store)
    ctx.scheduler.arm_sweep()
    clock.advance(600)
    dead = redis.Redis(
        port=free_port(), decode_responses=True, retry=Retry(NoBackoff(), 0), socket_timeout=0.2
    )
    broken = Store(dead, signer=KEYRING, clock=clock)
    with use_context(JobContext(broken, ctx.scheduler, ctx.sink, ctx.digests)):
        run_due(ctx)
    sweep = f"hitl-sweep-{int(T0) + 1}"
    job = Job.fetch(sweep, connection=ctx.scheduler.connection)
    assert (JobStatus.SCHEDULED, 0) == (job.get_status(), job.retries_left)
    assert 0 == store.get("r1").escalation_level
    run_due(ctx)  # the retry (rq scheduled it on the wall clock, long before T0)
    assert 1 == store.get("r1").escalation_level
    assert JobStatus.FINISHED == Job.fetch(sweep, connection=ctx.scheduler.connection).get_status()
    dead.close()


def test_tick_sweeps_when_the_sweep_was_lost(ctx: JobContext, clock: ManualClock) -> None:
    """The periodic job escalates overdue requests even with no sweep armed, re-arms itself,
    and arms the sweep again."""
    put_request(ctx.store)
    ctx.scheduler.arm_tick()
    clock.advance(700)
    run_due(ctx)
    assert 1 == ctx.store.get("r1").escalation_level
    assert [("escalated", "esc:r1:1")] == _notes(ctx)
    scheduled = ctx.scheduler.connection.zrange("rq:scheduled:hitl", 0, -1)
    assert (1, 1) == (
        sum(b"tick" in j for j in scheduled),
        sum(b"sweep" in j for j in scheduled),
    )


def test_remind_job_is_quiet_once_escalated(ctx: JobContext, clock: ManualClock) -> None:
    """A reminder for a level already passed (or a decided request) says nothing."""
    put_request(ctx.store)
    clock.advance(600)
    jobs.escalate_job("r1", 1)
    assert "noop" == jobs.remind_job("r1", 1)
    clock.advance(500)
    assert "sent" == jobs.remind_job("r1", 2)
    assert "already sent" == jobs.remind_job("r1", 2)


def test_context_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, r: redis.Redis, tmp_path: Path
) -> None:
    """Without an injected context, a job builds its store from HITL_REDIS_URL and
    HITL_SIGNING_KEY_FILE."""
    assert settings.redis_url is not None
    monkeypatch.setenv("HITL_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("HITL_SIGNING_KEY_FILE", str(keyring_file(tmp_path)))
    monkeypatch.setenv("HITL_PREFIX", "env:")
    jobs.configure(None)
    try:
        built = jobs.context()
        assert ("env:", built.scheduler.queue.name) == (built.store.keys.prefix, "env")
        assert KEYRING.active == built.store.require_signer().active
        assert [] == jobs.digest_job()
    finally:
        jobs.configure(None)


def test_run_worker_burst_runs_what_is_due(settings: Settings, r: redis.Redis) -> None:
    """`hitl worker --burst`: the real HitlWorker promotes due jobs, forks and runs them."""
    real = Store(r, signer=settings.signing_keys())
    now = real.clock()
    record = put_request(real, "due").model_copy(
        update={"created_at": now - 700, "deadline": now - 100}
    )
    real.update("due", lambda _c: Change(record=record))
    scheduler = JobContext.build(real).scheduler
    scheduler.arm_sweep(real.clock() - 2)  # a sweep that is due now
    try:
        assert jobs.run_worker(settings, burst=True)
    finally:
        jobs.configure(None)
        scheduler.connection.close()
    assert 1 == real.get("due").escalation_level


def test_the_worker_refuses_to_start_without_a_signing_key(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, r: redis.Redis
) -> None:
    """`rq worker -w HitlWorker` with a Redis URL and no keyring stops at once with the reason,
    instead of running escalations and expiries that could never be signed."""
    from hitl.errors import ConfigError
    from hitl.queue.scheduler import HitlWorker

    assert settings.redis_url is not None
    monkeypatch.setenv("HITL_REDIS_URL", settings.redis_url)
    jobs.configure(None)
    try:
        worker = HitlWorker(["hitl"], connection=redis.Redis.from_url(settings.redis_url))
        with pytest.raises(ConfigError, match="HITL_SIGNING_KEY_FILE"):
            worker.work(burst=True)
    finally:
        jobs.configure(None)
