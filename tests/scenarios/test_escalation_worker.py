"""The real thing: ``rq worker --with-scheduler`` processes, the wall clock, short delays.

Slow (seconds each): the RQ scheduler polls once a second, and the restart test waits for the
new worker to take over the dead one's scheduler lock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hitl.client import Client
from hitl.config import Settings
from hitl.jobs import JobContext, start_worker, stop_worker
from hitl.models import (
    ApprovalRequest,
    Destination,
    EscalationStep,
    Outcome,
    Risk,
    State,
    Verdict,
    VerdictKind,
)
from hitl.queue.intake import IntakeConsumer
from hitl.queue.scheduler import SchedulerConfig, StreamSink
from hitl.queue.store import Store
from tests.scenarios.helpers import audit_entries, drain, run_in_thread, wait_until

pytestmark = pytest.mark.slow
BOB = Destination(kind="user", target="bob")


class Workers:
    """``rq worker`` processes this test started (each in its own process group)."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        with open(self.logs / f"worker-{len(self.procs)}.log", "wb") as log:
            proc = start_worker(self.settings, log_file=log, env={"HITL_TICK": "2"})
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its scheduler child: no clean shutdown, locks left behind."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            stop_worker(proc)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(settings, tmp_path)
    yield w
    w.stop_all()


@pytest.fixture
def ctx(store: Store) -> Iterator[JobContext]:
    context = JobContext.build(store, SchedulerConfig(remind_before_s=0, tick_s=2))
    yield context
    context.scheduler.connection.close()


def _short_chain(notify_after: int, timeout_after: int) -> Verdict:
    return Verdict(
        kind=VerdictKind.REVIEW,
        risk=Risk.MEDIUM,
        destination=Destination(kind="channel", target="#ops"),
        escalation=[
            EscalationStep(after_s=notify_after, target=BOB),
            EscalationStep(after_s=timeout_after, timeout=True),
        ],
        policy_version="pv-test",
    )


def _intake(store: Store, ctx: JobContext, verdict: Verdict) -> IntakeConsumer:
    def classify(request: ApprovalRequest) -> Verdict:
        return verdict

    consumer = IntakeConsumer(store, classify, block_ms=0, on_stored=ctx.scheduler.on_stored)
    consumer.ensure_group()
    return consumer


def test_real_scheduler_escalates_and_expires(
    workers: Workers, store: Store, ctx: JobContext, settings: Settings
) -> None:
    """With `rq worker --with-scheduler`, a 1 s / 3 s chain escalates then expires on time."""
    workers.start()
    # On a loaded machine the worker takes seconds to start; the clock starts once it runs.
    wait_until(lambda: store.redis.get("rq:scheduler-lock:hitl"), what="the scheduler's lock")
    intake = _intake(store, ctx, _short_chain(1, 3))
    with Client(settings=settings) as client:
        rid = client.submit("restart", {"service": "api"}, requested_by="alice")
        drain(intake)
        created = store.get(rid).created_at
        with run_in_thread(lambda: client.wait(rid, timeout=20)) as agent:
            pass
    assert agent.error is None and Outcome.EXPIRED == agent.value.outcome
    entries = {e["kind"]: e for e in audit_entries(store.redis) if e["request_id"] == rid}
    assert 1 == entries["escalated"]["details"]["level"]
    # fired within the scheduler's granularity (it polls every second, in whole seconds)
    assert 0 <= entries["escalated"]["details"]["late_s"] < 3
    assert 3 <= agent.value.decided_at - created < 6
    sink = ctx.sink
    assert isinstance(sink, StreamSink)

    def told() -> list[tuple[str, Destination | None]] | None:
        notes = [(n.kind, n.target) for _, n in sink.read()]
        return notes if len(notes) >= 2 else None

    expected = [("escalated", BOB), ("expired", Destination(kind="user", target="alice"))]
    assert expected == wait_until(told, what="both notifications")
    intake.close()


def test_killed_worker_loses_no_pending_escalation(
    workers: Workers, store: Store, ctx: JobContext, r: redis.Redis, settings: Settings
) -> None:
    """SIGKILL the worker (and its scheduler) before the deadline; a new worker takes over."""
    first = workers.start()
    wait_until(lambda: r.get("rq:scheduler-lock:hitl"), what="the first scheduler's lock")
    intake = _intake(store, ctx, _short_chain(2, 4))
    with Client(settings=settings) as client:
        rid = client.submit("restart", {"service": "api"}, requested_by="alice")
    drain(intake)
    workers.kill(first)
    assert r.get("rq:scheduler-lock:hitl"), "the dead scheduler's lock is still held"
    workers.start()

    def decided() -> State | None:
        state = store.get(rid).state
        return state if state.terminal else None

    assert State.EXPIRED == wait_until(decided, timeout=45, what="the new worker's timeout")
    kinds = [e["kind"] for e in audit_entries(store.redis) if e["request_id"] == rid]
    assert "expired" in kinds
    intake.close()


def test_worker_arms_the_periodic_tick(workers: Workers, r: redis.Redis) -> None:
    """A fresh worker schedules the tick, and the tick keeps re-arming itself."""
    workers.start()

    def ticks_run() -> bool:
        return sum("tick" in i for i in r.zrange("rq:finished:hitl", 0, -1)) >= 2

    wait_until(ticks_run, timeout=15, what="two ticks to run")
    time.sleep(0.1)
    scheduled = [k for k in r.zrange("rq:scheduled:hitl", 0, -1) if "tick" in k]
    assert 1 == len(scheduled)
