"""The RQ job functions, and the worker that runs them.

Jobs take ids and numbers, never live clients, and build what they need from the environment
once per process (``HITL_REDIS_URL``, ``HITL_SIGNING_KEY_FILE``, ``HITL_PREFIX``: see
:class:`~hitl.config.Settings`; pacing: :meth:`SchedulerConfig.from_env`). The work is done by
:func:`sweep_job`, every second: it reads the pending requests that are due from ``hitl:pending``
(scored by deadline), re-reads each one and does nothing if it is already decided, so a sweep
that runs twice, late or beside another is harmless; notifications are deduplicated by key.
Transient failures (Redis unreachable) raise, and rq retries them (``Retry`` on every job).

This module is the worker's composition root: it sits beside :mod:`hitl.service` (the web
process's) above both :mod:`hitl.handlers` and :mod:`hitl.queue`, because it calls the use cases in
handlers and ``hitl.queue`` may not (the layers contract in ``.importlinter``).

Tests inject a store with a :class:`~hitl.queue.scheduler.ManualClock` and run jobs in-process::

    with use_context(JobContext.build(store)) as ctx:
        ctx.scheduler.arm_sweep()
        clock.advance(600)
        ctx.scheduler.enqueue_due()
        SimpleWorker([ctx.scheduler.queue], connection=ctx.scheduler.connection).work(burst=True)
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from hitl.config import Settings
from hitl.errors import NotFound
from hitl.handlers.timeouts import Escalation, due_level, escalate, notices, remind, reminder
from hitl.models import RequestRecord
from hitl.queue.digest import Digests
from hitl.queue.keys import Keys
from hitl.queue.scheduler import (
    HitlWorker,
    ManualClock,
    Notification,
    NotificationSink,
    Scheduler,
    SchedulerConfig,
    StreamSink,
    chain,
    raw_connection,
)
from hitl.queue.store import Store

__all__ = [
    "JobContext",
    "configure",
    "context",
    "digest_job",
    "escalate_job",
    "remind_job",
    "run_worker",
    "start_worker",
    "stop_worker",
    "sweep_job",
    "tick_job",
    "use_context",
]

log = logging.getLogger("hitl.jobs")
SWEEP_BATCH = 500
"""Records read per MGET."""
SWEEP_MAX = 10_000
"""Due requests one sweep handles at most; the next sweep, a second later, takes the rest."""
MAX_EARLY_S = 1.0


@dataclass
class JobContext:
    """What the jobs of one process share: the store (and its clock), the scheduler, the sink,
    and the ``sleep`` that goes with the clock (a :class:`ManualClock` moves instead)."""

    store: Store
    scheduler: Scheduler
    sink: NotificationSink
    digests: Digests
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def build(
        cls,
        store: Store,
        config: SchedulerConfig | None = None,
        *,
        sink: NotificationSink | None = None,
    ) -> JobContext:
        config = config or SchedulerConfig()
        sink = sink or StreamSink(store)
        digests = Digests(store, sink, config)
        scheduler = Scheduler(store, config, connection=raw_connection(store.redis), folder=digests)
        sleep = store.clock.sleep if isinstance(store.clock, ManualClock) else time.sleep
        return cls(store, scheduler, sink, digests, sleep)

    def wait_until(self, at: float | None) -> None:
        """rq promotes a job up to a second before its time (whole-second scores): wait the
        rest, so that a deadline is acted on at its time, never before."""
        if at is not None:
            delay = at - self.store.clock()
            if 0 < delay <= MAX_EARLY_S:
                self.sleep(delay)

    @classmethod
    def from_settings(cls, settings: Settings, config: SchedulerConfig | None = None) -> JobContext:
        from hitl.queue.connection import open_store

        return cls.build(open_store(settings), config or SchedulerConfig.from_env())


_lock = threading.Lock()
_current: JobContext | None = None


def configure(ctx: JobContext | None) -> None:
    """Set (or, with None, forget) the context the jobs of this process use."""
    global _current
    with _lock:
        _current = ctx


def context() -> JobContext:
    """The context set with :func:`configure`, else one built from the environment."""
    global _current
    with _lock:
        if _current is None:
            _current = JobContext.from_settings(Settings.from_env())
        return _current


@contextlib.contextmanager
def use_context(ctx: JobContext) -> Iterator[JobContext]:
    """Run jobs in-process against ``ctx`` (tests); the previous context comes back after."""
    global _current
    with _lock:
        saved, _current = _current, ctx
    try:
        yield ctx
    finally:
        with _lock:
            _current = saved


# -- the jobs ----------------------------------------------------------------------------------


def sweep_job() -> dict[str, int]:
    """Every ``sweep_s`` seconds: arm the next sweep, then send every reminder and fire every
    escalation and expiry that is due, in one pass over ``hitl:pending``."""
    ctx = context()
    now = ctx.store.clock()
    ctx.scheduler.arm_sweep(now)  # first: a failure below must not stop the sweeping
    reminded = _remind_due(ctx, now)
    escalated = _sweep_overdue(ctx, now)
    return {"reminded": reminded, "escalated": escalated}


def _sweep_overdue(ctx: JobContext, now: float) -> int:
    """Escalate (or time out) every pending request whose deadline has passed, up to
    SWEEP_MAX of them (the next sweep takes the rest). Returns requests changed."""
    store = ctx.store
    ids = store.redis.zrangebyscore(store.keys.pending, "-inf", now, start=0, num=SWEEP_MAX)
    changed = 0
    for record in _records(store, [str(i) for i in ids]):
        level = due_level(record, now)
        if level > record.escalation_level:
            changed += _escalate(ctx, record.id, level, now).changed
    return changed


def _remind_due(ctx: JobContext, now: float) -> int:
    """Remind whoever is waited on ``remind_before_s`` before each deadline: the requests whose
    deadline entered ``(now, now + remind_before_s]`` since the last sweep (the key
    ``reminded_until`` keeps where the last sweep stopped). Returns reminders sent."""
    before = ctx.scheduler.config.remind_before_s
    if not before:
        return 0
    store = ctx.store
    horizon = now + before
    last = store.redis.get(store.keys.reminded_until)
    low = float(last) if last is not None else -math.inf
    if low >= horizon:
        return 0
    due = cast(
        list[tuple[str, float]],
        store.redis.zrangebyscore(
            store.keys.pending, low, horizon, start=0, num=SWEEP_MAX, withscores=True
        ),
    )
    sent = 0
    for record in _records(store, [str(i) for i, _score in due]):
        level = record.escalation_level + 1
        steps = chain(record)
        if level > len(steps):
            continue
        previous = steps[level - 2].due_at if level > 1 else record.created_at
        if steps[level - 1].due_at - before <= previous:
            continue  # the reminder would come before the previous deadline: not useful
        notice = reminder(record, level, now)
        if notice is not None and ctx.sink.send(notice):
            sent += 1
    # Inclusive next time: a full page ends at a score that may have more members.
    reached = float(due[-1][1]) if len(due) == SWEEP_MAX else horizon
    store.redis.set(store.keys.reminded_until, repr(reached))
    return sent


def _records(store: Store, ids: list[str]) -> Iterator[RequestRecord]:
    """The records of ``ids`` that still exist, read ``SWEEP_BATCH`` at a time."""
    for offset in range(0, len(ids), SWEEP_BATCH):
        chunk = ids[offset : offset + SWEEP_BATCH]
        raws = store.redis.mget([store.keys.req(i) for i in chunk])
        for raw in raws:
            if raw is not None:
                yield RequestRecord.model_validate_json(raw)


def escalate_job(request_id: str, level: int, at: float | None = None) -> str:
    """Kept for jobs an earlier version queued per request: escalate at ``at`` (the sweep now
    does this for every request)."""
    ctx = context()
    ctx.wait_until(at)
    try:
        return _escalate(ctx, request_id, level).action.value
    except NotFound:
        return "noop"


def _escalate(ctx: JobContext, request_id: str, level: int, now: float | None = None) -> Escalation:
    """Escalate and tell whoever must be told (once)."""
    result = escalate(ctx.store, request_id, level, now)
    for notice in notices(result):
        ctx.sink.send(notice)
    return result


def remind_job(request_id: str, level: int, at: float | None = None) -> str:
    """Kept for jobs an earlier version queued per request: remind before ``level``'s deadline."""
    ctx = context()
    ctx.wait_until(at)
    notice = remind(ctx.store, request_id, level)
    if notice is None:
        return "noop"
    return "sent" if ctx.sink.send(notice) else "already sent"


def digest_job(dest: str | None = None) -> list[str]:
    """Post ``dest``'s digest now, or (without ``dest``) every digest that is due. Digest ids."""
    ctx = context()
    if dest is None:
        return [d.id for d in ctx.digests.post_due()]
    digest = ctx.digests.post(dest)
    return [digest.id] if digest is not None else []


def tick_job() -> dict[str, Any]:
    """The periodic job: re-arm itself and the sweep, post due digests, raise the alert for
    break-glass approvals nobody acknowledged in time, and sweep overdue requests.

    Arming the sweep here restarts it within ``tick_s`` if its chain of jobs was lost (a
    flushed queue); the overdue sweep here is the same as the sweep's.
    """
    ctx = context()
    now = ctx.store.clock()
    ctx.scheduler.arm_tick(now)  # first: a failure below must not stop the ticking
    ctx.scheduler.arm_sweep(now)
    swept = _sweep_overdue(ctx, now)
    digests = ctx.digests.post_due(now)
    unacknowledged = _break_glass_overdue(ctx)
    return {"swept": swept, "digests": len(digests), "break_glass_overdue": len(unacknowledged)}


def _break_glass_overdue(ctx: JobContext) -> list[str]:
    """Audit (``break_glass_unacknowledged``, ``alert: true``) and announce, once each, the
    break-glass approvals whose acknowledgement window passed without a second person."""
    from hitl.handlers import Decider
    from hitl.handlers.breakglass import overdue

    reported = overdue(Decider(ctx.store))
    for request_id in reported:
        ctx.sink.send(
            Notification(
                kind="alert",
                key=f"break-glass-overdue:{request_id}",
                request_id=request_id,
                text=(
                    f":rotating_light: break-glass approval of {request_id} was not acknowledged "
                    "in time: a second person must review it now (`hitl ack` / the card)"
                ),
                at=ctx.store.clock(),
            )
        )
    return reported


# -- the worker --------------------------------------------------------------------------------


def run_worker(
    settings: Settings,
    config: SchedulerConfig | None = None,
    *,
    burst: bool = False,
    with_scheduler: bool = True,
) -> bool:
    """``hitl worker``: an :class:`HitlWorker` on the hitl queue, jobs bound to ``settings``."""
    ctx = JobContext.from_settings(settings, config)
    configure(ctx)
    worker = HitlWorker([ctx.scheduler.queue], connection=ctx.scheduler.connection)
    worker.config = ctx.scheduler.config
    log.info("hitl worker on queue %s (scheduler: %s)", ctx.scheduler.queue.name, with_scheduler)
    return worker.work(burst=burst, with_scheduler=with_scheduler)


def start_worker(
    settings: Settings,
    *,
    url: str | None = None,
    burst: bool = False,
    log_file: IO[bytes] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``rq worker --with-scheduler -w hitl.queue.scheduler.HitlWorker`` as a child process
    (``hitl demo``, benchmarks, tests), in its own process group with its scheduler child.

    ``url`` defaults to ``settings.redis_url`` (the embedded server's URL when that is None).
    Stop it with :func:`stop_worker`.
    """
    from hitl.queue.connection import redis_url

    url = url or redis_url(settings)
    child_env = {
        **os.environ,
        "HITL_REDIS_URL": url,
        "HITL_PREFIX": settings.prefix,
        "HITL_DATA_DIR": str(settings.data_dir),
        "HITL_SIGNING_KEY_FILE": str(_keyring_file(settings)),
        **(env or {}),
    }
    queue = SchedulerConfig.from_env().queue_name(Keys(settings.prefix))
    cmd = [sys.executable, "-m", "rq.cli", "worker", "--with-scheduler"]
    cmd += ["-w", f"{HitlWorker.__module__}.{HitlWorker.__name__}", "--url", url]
    cmd += ["--burst", queue] if burst else [queue]
    out = log_file if log_file is not None else subprocess.DEVNULL
    return subprocess.Popen(cmd, env=child_env, stdout=out, stderr=out, start_new_session=True)


def _keyring_file(settings: Settings) -> Path:
    """The worker signs expiries: hand it the keyring file (written to the data dir, mode
    0600, when the settings hold a keyring given in code)."""
    path = settings.keyring_path
    if path is not None and (path.exists() or settings.keyring is None):
        settings.signing_keys()  # the embedded default creates its keyring here
        return path
    path = settings.data_dir / "signing-keys.json"
    if not path.exists():
        settings.signing_keys().save(path)
    return path


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """A warm shutdown (the worker finishes its job and stops its scheduler), then SIGKILL for
    whatever is left of its process group. Returns the exit code."""
    if proc.poll() is None:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait(timeout)
