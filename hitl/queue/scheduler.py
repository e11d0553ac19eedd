"""When things happen: the once-a-second sweep on RQ, the periodic tick, and notifications.

No request gets a job of its own. ``hitl:pending`` already orders every pending request by its
next deadline, so one RQ job, the **sweep**, runs every ``sweep_s`` (1) seconds and fires every
escalation, expiry and reminder that is due, re-reading each request first. Its job id is its
slot number (``hitl-sweep-<slot>``) and each sweep arms the next slot before it works, so any
number of processes may arm it and one slot still runs once; the jobs live in Redis, so a worker
that dies loses nothing. A worker started with ``rq worker --with-scheduler`` runs them when due::

    scheduler = Scheduler(store, folder=Digests(store, StreamSink(store)))
    cards = scheduler.on_stored(records)     # arms the sweep and tick; returns the cards to post
    scheduler.arm_sweep()                    # the due-timers sweep (self-rescheduling)
    scheduler.arm_tick()                     # the periodic digest + safety sweep job

and, for the worker (the Procfile's ``worker:`` line)::

    rq worker --with-scheduler -w hitl.queue.scheduler.HitlWorker --url "$HITL_REDIS_URL" hitl

What the jobs say to people goes out as :class:`Notification` entries on the ``<prefix>notify``
stream (one entry per dedupe key, ever), which the channel adapters consume; time comes from the
store's clock, so tests move a :class:`ManualClock` instead of sleeping and promote due jobs
with :meth:`Scheduler.enqueue_due`.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

import redis
from pydantic import BaseModel, ConfigDict, Field
from rq import Queue, Retry, Worker
from rq.exceptions import DuplicateJobError, SchedulerNotFound
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.scripts import release_lock

from hitl.errors import ConfigError, HitlError
from hitl.models import Destination, EscalationStep, RequestRecord
from hitl.queue.keys import Keys
from hitl.queue.store import Clock, Store

__all__ = [
    "HitlWorker",
    "ManualClock",
    "Notification",
    "NotificationSink",
    "RecordFolder",
    "Scheduler",
    "SchedulerConfig",
    "Step",
    "StreamSink",
    "chain",
    "dest_key",
    "raw_connection",
]

log = logging.getLogger("hitl.scheduler")

JOBS = "hitl.jobs"
"""Where the worker imports the job functions from (jobs are enqueued by dotted name)."""
TOLERANCE_S = 1.0
"""A job may run this much before its time (clock skew between hosts) and still act."""
NOTIFY_MAXLEN = 100_000
NOTIFIED_TTL_S = 30 * 24 * 3600


# -- time --------------------------------------------------------------------------------------


class ManualClock:
    """A clock that only moves when told to: inject it into a Store so escalation tests do not
    sleep. ``clock = ManualClock(1_700_000_000); clock.advance(600)``."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now

    def sleep(self, seconds: float) -> None:
        """What ``time.sleep`` is to ``time.time``: the clock moves, nobody waits."""
        self.advance(max(0.0, seconds))

    def set(self, now: float) -> None:
        self.now = now


# -- the chain ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """Level ``level`` (1-based) of a request's chain, due at an absolute time."""

    level: int
    due_at: float
    target: Destination | None
    timeout: bool
    after_s: int


def chain(record: RequestRecord) -> list[Step]:
    """The request's effective escalation chain, in time order.

    The policy's steps (``after_s`` counted from the request's creation), cut at the first
    timeout step; a request's own ``timeout_s`` ends the chain earlier if it is sooner (so a
    request past its expiry is expired even without a policy chain).
    """
    steps: list[EscalationStep] = []
    for step in sorted(record.verdict.escalation, key=lambda s: s.after_s):
        steps.append(step)
        if step.timeout:
            break
    limit = record.request.timeout_s
    if limit is not None and not any(s.timeout and s.after_s <= limit for s in steps):
        steps = [s for s in steps if s.after_s < limit and not s.timeout]
        steps.append(EscalationStep(after_s=limit, timeout=True))
    return [
        Step(n, record.created_at + s.after_s, s.target, s.timeout, s.after_s)
        for n, s in enumerate(steps, start=1)
    ]


def dest_key(destination: Destination | None) -> str:
    """``channel:#ops``, ``oncall:primary``, ``user:U0BOB``; ``default`` without a destination."""
    if destination is None or not destination.target:
        return "default"
    return f"{destination.kind}:{destination.target}"


# -- notifications -----------------------------------------------------------------------------


NotificationKind = Literal["escalated", "reminder", "expired", "digest", "alert"]


class Notification(BaseModel):
    """Something a channel adapter must tell people. One entry per ``key``, ever.

    On the ``<prefix>notify`` stream each field is a string: ``kind``, ``key``, ``request_id``
    (empty for a digest), ``level``, ``target`` (Destination JSON, or empty: "wherever the card
    is"), ``text``, ``thread`` (``1``: also reply in the thread under every posted card of the
    request), ``digest_id``, ``at`` (epoch seconds) and ``data`` (JSON: the digest for a digest).
    """

    model_config = ConfigDict(extra="ignore")

    kind: NotificationKind
    key: str
    text: str
    request_id: str = ""
    level: int = 0
    target: Destination | None = None
    thread: bool = True
    digest_id: str = ""
    at: float = 0.0
    data: dict[str, Any] = Field(default_factory=dict)

    def to_fields(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "key": self.key,
            "request_id": self.request_id,
            "level": str(self.level),
            "target": self.target.model_dump_json() if self.target is not None else "",
            "text": self.text,
            "thread": "1" if self.thread else "0",
            "digest_id": self.digest_id,
            "at": f"{self.at:.6f}",
            "data": json.dumps(self.data, ensure_ascii=False, separators=(",", ":")),
        }

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Notification:
        """Parse a stream entry (bytes or str fields)."""
        f = {_text(k): _text(v) for k, v in fields.items()}
        return cls.model_validate(
            {
                **f,
                "level": int(f.get("level") or 0),
                "target": json.loads(f["target"]) if f.get("target") else None,
                "thread": f.get("thread", "1") == "1",
                "at": float(f.get("at") or 0.0),
                "data": json.loads(f["data"]) if f.get("data") else {},
            }
        )


class NotificationSink(Protocol):
    """Where notifications go. Returns False when this ``key`` was already sent."""

    def send(self, notification: Notification) -> bool: ...


_SEND_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
end
return false
"""


class StreamSink:
    """Writes notifications to ``<prefix>notify``, at most once per key (``<prefix>notified:<key>``
    is set in the same script), so a job that runs twice tells people once."""

    def __init__(self, store: Store) -> None:
        self.redis = store.redis
        self.keys = store.keys
        self._script = self.redis.register_script(_SEND_ONCE)

    @property
    def stream(self) -> str:
        return self.keys.notify

    def send(self, notification: Notification) -> bool:
        args: list[str | int] = [NOTIFIED_TTL_S, NOTIFY_MAXLEN]
        for name, value in notification.to_fields().items():
            args += [name, value]
        marker = self.keys.notified(notification.key)
        return self._script(keys=[marker, self.stream], args=args) is not None

    def read(self, after: str = "0-0", count: int = 1000) -> list[tuple[str, Notification]]:
        """Entries after stream id ``after`` (for tests and simple consumers)."""
        low = f"({after}" if after != "0-0" else "-"
        entries = cast(list[Any], self.redis.xrange(self.stream, min=low, count=count))
        return [(_text(i), Notification.from_fields(f)) for i, f in entries]


# -- configuration -----------------------------------------------------------------------------


class SchedulerConfig(BaseModel):
    """How the scheduler paces things. ``SchedulerConfig.from_env()`` reads ``HITL_*``."""

    model_config = ConfigDict(frozen=True)

    queue: str | None = None
    """The RQ queue; default: the key prefix without colons (``hitl``)."""
    remind_before_s: int = Field(default=120, ge=0)
    """A reminder goes to whoever is being waited on this long before each deadline (0: none)."""
    tick_s: int = Field(default=30, gt=0)
    """How often the periodic job posts due digests (and re-sweeps overdue requests)."""
    sweep_s: int = Field(default=1, gt=0)
    """How often the sweep fires the escalations, expiries and reminders that are due."""
    sweep_result_ttl_s: int = Field(default=60, gt=0)
    """A finished sweep is kept this long (one a second: a day of them would be 86,400 hashes)."""
    digest_wait_s: int = Field(default=300, ge=0)
    """A digest-eligible request waits at most this long for its digest."""
    pace: int = Field(default=10, ge=0)
    """Cards per destination per ``pace_window_s``; the extra low/medium ones are folded into a
    digest (0: never fold). High and critical requests always get their own card."""
    pace_window_s: int = Field(default=60, gt=0)
    digest_max_items: int = Field(default=100, gt=0, le=500)
    digest_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    job_timeout_s: int = Field(default=60, gt=0)
    result_ttl_s: int = Field(default=24 * 3600, gt=0)
    """Finished jobs are kept this long, so their ids stay taken (a job is never run twice)."""
    retry_intervals: tuple[int, ...] = (1, 5, 30, 120, 600)
    """Transient failures (Redis unreachable) are retried after these delays."""

    @classmethod
    def from_env(cls, **overrides: object) -> SchedulerConfig:
        """``HITL_QUEUE``, ``HITL_REMIND_BEFORE``, ``HITL_TICK``, ``HITL_SWEEP``,
        ``HITL_DIGEST_WAIT`` (seconds) and
        ``HITL_CHANNEL_PACE`` (``10/60``: ten cards a minute per destination)."""
        env = os.environ
        values: dict[str, object] = {}
        if queue := env.get("HITL_QUEUE"):
            values["queue"] = queue
        for name, field in (
            ("HITL_REMIND_BEFORE", "remind_before_s"),
            ("HITL_TICK", "tick_s"),
            ("HITL_SWEEP", "sweep_s"),
            ("HITL_DIGEST_WAIT", "digest_wait_s"),
        ):
            if raw := env.get(name):
                values[field] = _seconds(name, raw)
        if pace := env.get("HITL_CHANNEL_PACE"):
            count, _, window = pace.partition("/")
            try:
                values["pace"] = int(count)
                values["pace_window_s"] = int(window or 60)
            except ValueError:
                raise ConfigError(
                    f"HITL_CHANNEL_PACE must look like 10/60 (cards/seconds), got {pace!r}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def queue_name(self, keys: Keys) -> str:
        return self.queue or (keys.prefix.strip(":").replace(":", "-") or "hitl")

    def retry(self) -> Retry | None:
        intervals = list(self.retry_intervals)
        return Retry(max=len(intervals), interval=intervals) if intervals else None


def _seconds(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be whole seconds, got {raw!r}") from None


# -- scheduling --------------------------------------------------------------------------------


class RecordFolder(Protocol):
    """Decides which newly stored requests get their own card now (the rest go to a digest).
    :class:`hitl.queue.digest.Digests` is one."""

    def fold(
        self, records: Sequence[RequestRecord], now: float | None = None
    ) -> list[RequestRecord]: ...


def raw_connection(client: redis.Redis) -> redis.Redis:
    """A client on the same server with ``decode_responses=False``, as RQ needs."""
    from hitl.queue.connection import with_decoding

    return with_decoding(client, decode=False)


@dataclass(frozen=True)
class PlannedJob:
    job_id: str
    at: float
    func: str
    args: tuple[Any, ...]
    result_ttl: int = 0
    """Seconds a finished (and, if set, a failed) run is kept; 0: the config's ``result_ttl_s``."""


class Scheduler:
    """Schedules a request's jobs on RQ. Cheap to build; thread-safe like the store."""

    def __init__(
        self,
        store: Store,
        config: SchedulerConfig | None = None,
        *,
        connection: redis.Redis | None = None,
        folder: RecordFolder | None = None,
    ) -> None:
        self.store = store
        self.config = config or SchedulerConfig()
        self.connection = connection if connection is not None else raw_connection(store.redis)
        self.queue = Queue(self.config.queue_name(store.keys), connection=self.connection)
        self.folder = folder
        self._last_arm = -math.inf

    @property
    def clock(self) -> Clock:
        return self.store.clock

    def on_stored(self, records: Sequence[RequestRecord]) -> list[RequestRecord]:
        """The intake's ``on_stored`` hook: no job per request (the sweep finds every pending
        request by its deadline); make sure the sweep and the tick are armed (once per
        ``tick_s``), fold bursts and digest-eligible requests (when a folder is set), and return
        the records that should get their own card now. Terminal records are returned as is."""
        now = self.clock()
        if now - self._last_arm >= self.config.tick_s:
            self._last_arm = now
            self.arm_sweep(now)
            self.arm_tick(now)
        if self.folder is None:
            return list(records)
        return self.folder.fold(records, now)

    # -- the periodic tick ---------------------------------------------------------------------

    def arm_tick(self, now: float | None = None) -> bool:
        """Make sure the periodic job runs at the next multiple of ``tick_s``.

        Its job id is the slot number, so any number of processes may call this (and the tick
        re-arms itself) without ever creating two ticks for one slot.
        """
        return _arm_tick(self.queue, self.config, self.clock() if now is None else now)

    def arm_sweep(self, now: float | None = None) -> bool:
        """Make sure the sweep runs at the next multiple of ``sweep_s`` (once per slot, like
        :meth:`arm_tick`); each sweep arms the next one before it works."""
        return _arm_sweep(self.queue, self.config, self.clock() if now is None else now)

    # -- promotion (tests, burst runs) ---------------------------------------------------------

    def enqueue_due(self, now: float | None = None) -> int:
        """Move scheduled jobs due at ``now`` (default: the store's clock) onto the queue.

        The RQ scheduler does this with the wall clock; tests that move a :class:`ManualClock`
        call this instead, then run ``SimpleWorker(...).work(burst=True)``.
        """
        now = self.clock() if now is None else now
        registry = ScheduledJobRegistry(queue=self.queue)  # type: ignore[no-untyped-call]  # rq
        moved = 0
        while True:
            ids = registry.get_jobs_to_schedule(math.floor(now))
            if not ids:
                return moved
            for job_id, job in zip(
                ids, Job.fetch_many(ids, connection=self.connection), strict=True
            ):
                if job is not None:
                    self.queue.enqueue_job(job)
                    moved += 1
                registry.remove(job_id)


def _enqueue(queue: Queue, config: SchedulerConfig, job: PlannedJob) -> bool:
    """Schedule ``job`` unless its id is taken (atomically: ``unique=True``)."""
    try:
        queue.enqueue_at(_second(job.at), job.func, *job.args, unique=True, **_options(config, job))
    except DuplicateJobError:
        return False
    return True


def _second(at: float) -> datetime.datetime:
    """rq's registry counts whole seconds, so a job is promoted up to a second before ``at``;
    the jobs that must not act early get ``at`` as an argument and wait out the rest."""
    return datetime.datetime.fromtimestamp(math.floor(at), datetime.UTC)


def _options(config: SchedulerConfig, job: PlannedJob) -> dict[str, Any]:
    options: dict[str, Any] = {
        "job_id": job.job_id,
        "retry": config.retry(),
        "job_timeout": config.job_timeout_s,
        "result_ttl": job.result_ttl or config.result_ttl_s,
        "description": f"{job.func.rsplit('.', 1)[-1]}{job.args!r}",
    }
    if job.result_ttl:  # a frequent job: keep a failed run a day, not rq's default year
        options["failure_ttl"] = config.result_ttl_s
    return options


def _arm_tick(queue: Queue, config: SchedulerConfig, now: float) -> bool:
    slot = math.floor(now / config.tick_s) + 1
    job_id = f"{_job_token(queue.name)}-tick-{slot}"
    return _enqueue(queue, config, PlannedJob(job_id, slot * config.tick_s, f"{JOBS}.tick_job", ()))


def _arm_sweep(queue: Queue, config: SchedulerConfig, now: float) -> bool:
    slot = math.floor(now / config.sweep_s) + 1
    job_id = f"{_job_token(queue.name)}-sweep-{slot}"
    job = PlannedJob(
        job_id, slot * config.sweep_s, f"{JOBS}.sweep_job", (), config.sweep_result_ttl_s
    )
    return _enqueue(queue, config, job)


def _job_token(value: str) -> str:
    out = "".join(c if c.isascii() and (c.isalnum() or c in "_-") else "-" for c in value)
    if out != value:  # keep distinct names distinct
        out += "-" + hashlib.sha256(value.encode()).hexdigest()[:8]
    return out


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


# -- the worker --------------------------------------------------------------------------------


class HitlWorker(Worker):
    """``rq worker --with-scheduler -w hitl.queue.scheduler.HitlWorker``: rq's forking worker plus

    - the sweep and the periodic tick are armed when the worker starts (so escalations and
      digests run without anyone else calling :meth:`Scheduler.arm_sweep`);
    - the scheduler lock of a worker that was killed (``SIGKILL``: it never released the lock)
      is taken over once its holder has missed heartbeats for ``stale_after_s``, instead of
      after the lock's 61 s expiry plus rq's 10-minute maintenance interval.
    """

    revive_every_s = 5.0
    stale_after_s = 10.0
    config: SchedulerConfig | None = None

    @property
    def dequeue_timeout(self) -> int:
        # Wake up every few seconds so a dead scheduler is noticed while the queue is idle.
        return min(super().dequeue_timeout, int(self.revive_every_s))

    def work(self, *args: Any, **kwargs: Any) -> bool:
        config = self.config or SchedulerConfig.from_env()
        for queue in self.queues:
            _arm_sweep(queue, config, time.time())
            _arm_tick(queue, config, time.time())
        # Import the jobs (and build their store) once here, not in every forked work horse.
        jobs = importlib.import_module(JOBS)
        try:
            jobs.context()
        except ConfigError:
            # No signing key: this worker could not sign an expiry (deny-by-default) or an
            # escalation's decision. Refuse to start rather than run jobs that all fail.
            log.error("hitl worker cannot start: the jobs are not configured")
            raise
        except HitlError as exc:  # e.g. Redis not up yet: each job retries when it runs
            log.warning("hitl jobs are not ready yet: %s", exc)
        return bool(super().work(*args, **kwargs))

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return bool(super().should_run_maintenance_tasks) or self._scheduler_down()

    def run_maintenance_tasks(self) -> None:
        if self._scheduler_down():
            self._revived_at = time.monotonic()
            self.reclaim_stale_scheduler_locks()
            assert self.scheduler is not None
            self.scheduler.acquire_locks(auto_start=True)  # type: ignore[no-untyped-call]  # rq
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]  # rq

    def reclaim_stale_scheduler_locks(self) -> list[str]:
        """Release scheduler locks whose holder stopped heart-beating; returns their queues."""
        released = []
        for name in self.queue_names():
            key = RQScheduler.get_locking_key(name)
            holder = self.connection.get(key)
            if holder is None:
                continue
            owner = _text(holder)
            try:
                beat = RQScheduler.fetch(owner, self.connection).last_heartbeat
            except SchedulerNotFound:
                beat = None
            age = (
                math.inf
                if beat is None
                else (datetime.datetime.now(datetime.UTC) - beat).total_seconds()
            )
            if age > self.stale_after_s and release_lock(self.connection, key, owner):
                log.warning(
                    "took over the scheduler lock of %s from dead scheduler %s", name, owner
                )
                released.append(name)
        return released

    def _scheduler_down(self) -> bool:
        scheduler = self.scheduler
        if scheduler is None or self._stop_requested:
            return False
        process = scheduler._process
        if process is not None and process.is_alive():
            return False
        return time.monotonic() - getattr(self, "_revived_at", -math.inf) >= self.revive_every_s
