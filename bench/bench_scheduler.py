"""Scheduler benchmarks: escalation lateness with the real RQ scheduler, and scheduling cost.

Lateness is "deadline -> escalation fired": the time between a level's deadline and the moment
the sweep's transaction ran, as recorded in the ``escalated`` / ``expired`` audit entries
(``late_s``). It is measured with a real ``rq worker --with-scheduler`` process (the Procfile's
worker) on its own redis-server; the sweep runs at each whole second, and the RQ scheduler polls
once a second, so a deadline is acted on up to ~2 s after it, never before.

Run with ``make bench`` (or ``python -m bench.bench_scheduler``). Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.bench_core import _classifier as core_classifier
from bench.bench_core import _request as core_request
from hitl.config import Settings
from hitl.jobs import JobContext, start_worker, stop_worker
from hitl.keys import KeyRing
from hitl.models import (
    ApprovalRequest,
    Destination,
    EscalationStep,
    RequestRecord,
    Risk,
    Verdict,
    VerdictKind,
)
from hitl.queue.intake import IntakeConsumer
from hitl.queue.scheduler import SchedulerConfig
from hitl.queue.store import Store
from tests.redis_server import RedisServer
from tests.scenarios.helpers import audit_entries

KEYRING = KeyRing.generate()


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _verdict(first: int, timeout: int) -> Verdict:
    return Verdict(
        kind=VerdictKind.REVIEW,
        risk=Risk.MEDIUM,
        destination=Destination(kind="channel", target="#ops"),
        escalation=[
            EscalationStep(after_s=first, target=Destination(kind="user", target="bob")),
            EscalationStep(after_s=timeout, timeout=True),
        ],
        policy_version="bench",
    )


def bench_lateness(server: RedisServer, n: int) -> tuple[list[float], list[float], float]:
    """Submit ``n`` requests (spread over ~2 s) with a 2-4 s / 5-7 s chain; collect late_s."""
    r = server.client()
    r.flushall()
    settings = Settings(redis_url=server.url, keyring=KEYRING, data_dir=Path(tempfile.mkdtemp()))
    store = Store(r, signer=settings.signing_keys())
    ctx = JobContext.build(store, SchedulerConfig(remind_before_s=0))
    worker = start_worker(settings)
    try:
        deadline = time.monotonic() + 30
        while not r.get("rq:scheduler-lock:hitl") and time.monotonic() < deadline:
            time.sleep(0.05)  # the worker's scheduler is up
        rng = random.Random(7)
        verdicts: dict[str, Verdict] = {}

        def classify(request: ApprovalRequest) -> Verdict:
            assert request.id is not None
            return verdicts[request.id]

        intake = IntakeConsumer(store, classify, block_ms=0, on_stored=ctx.scheduler.on_stored)
        intake.ensure_group()
        for i in range(n):
            rid = f"late-{i}"
            first = rng.randint(2, 4)
            verdicts[rid] = _verdict(first, first + 3)
            r.xadd(store.keys.requests, {"request": f'{{"id":"{rid}","action":"restart"}}'})
            intake.run_once(block_ms=0)
            time.sleep(rng.uniform(0, 2.0 / n))
        deadline = time.monotonic() + 30
        while store.pending_count() and time.monotonic() < deadline:
            time.sleep(0.2)
        entries = audit_entries(r, store.keys)
        escalated = [e["details"]["late_s"] for e in entries if e["kind"] == "escalated"]
        expired = [e["details"]["late_s"] for e in entries if e["kind"] == "expired"]
        left = store.pending_count() / n
        intake.close()
        return escalated, expired, left
    finally:
        stop_worker(worker)
        ctx.scheduler.connection.close()
        r.close()


def bench_scheduling(server: RedisServer, n: int) -> float:
    """Records/s through ``Scheduler.on_stored`` (digest folding; no job per request: the
    sweep reads ``hitl:pending``)."""
    r = server.client()
    r.flushall()
    settings = Settings(redis_url=server.url, keyring=KEYRING)
    store = Store(r, signer=settings.signing_keys())
    ctx = JobContext.build(store, SchedulerConfig(remind_before_s=120))
    now = time.time()
    verdict = _verdict(600, 3600).model_copy(
        update={
            "escalation": [
                EscalationStep(after_s=600, target=Destination(kind="oncall", target="x")),
                EscalationStep(after_s=1200, target=Destination(kind="oncall", target="y")),
                EscalationStep(after_s=3600, timeout=True),
            ]
        }
    )
    records = [
        RequestRecord(
            request=ApprovalRequest(id=f"s-{i}", action="restart"),
            verdict=verdict,
            created_at=now,
        )
        for i in range(n)
    ]
    t0 = time.perf_counter()
    for start in range(0, n, 100):
        ctx.scheduler.on_stored(records[start : start + 100])
    elapsed = time.perf_counter() - t0
    ctx.scheduler.connection.close()
    r.close()
    return n / elapsed


def bench_intake(server: RedisServer, n: int, hooked: bool) -> float:
    """Intake req/s with the default policy, with or without the scheduler's on_stored hook
    (the service runs the hook in the intake thread)."""
    r = server.client()
    r.flushall()
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd("hitl:requests", {"request": core_request(i)})
    pipe.execute()
    store = Store(r, signer=KEYRING)
    ctx = JobContext.build(store, SchedulerConfig())
    classify, _ = core_classifier(True)
    hook = ctx.scheduler.on_stored if hooked else None
    consumer = IntakeConsumer(store, classify, batch=200, block_ms=0, on_stored=hook)
    consumer.ensure_group()
    t0 = time.perf_counter()
    done = 0
    while done < n and (got := consumer.run_once(block_ms=0)):
        done += got
    elapsed = time.perf_counter() - t0
    consumer.close()
    ctx.scheduler.connection.close()
    r.close()
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40, help="requests per lateness run")
    parser.add_argument("--runs", type=int, default=3, help="lateness runs (a fresh worker each)")
    parser.add_argument("--schedule", type=int, default=2000, help="records in the cost run")
    parser.add_argument("--intake", type=int, default=5000, help="requests per intake run")
    args = parser.parse_args()
    with RedisServer() as server:
        print(f"hitl scheduler bench: redis on :{server.port}, n={args.n}, runs={args.runs}")
        pooled: dict[str, list[float]] = {"escalation": [], "timeout (expired)": []}
        medians: dict[str, list[float]] = {k: [] for k in pooled}
        for _ in range(args.runs):
            escalated, expired, left = bench_lateness(server, args.n)
            if left:
                print(f"  ({left:.0%} of the requests were still pending after 30 s)")
            for label, samples in (("escalation", escalated), ("timeout (expired)", expired)):
                pooled[label] += samples
                if samples:
                    medians[label].append(pct(samples, 0.5))
        for label, samples in pooled.items():
            if not samples:
                print(f"{label}: no samples")
                continue
            runs = ", ".join(f"{m:.2f}" for m in medians[label])
            print(
                f"scheduler lateness, deadline -> {label} fired: p50 {pct(samples, 0.5):.2f} s, "
                f"p95 {pct(samples, 0.95):.2f} s, max {max(samples):.2f} s "
                f"(n={len(samples)}, mean {statistics.mean(samples):.2f} s; run p50s {runs})  "
                "[`rq worker --with-scheduler` polls once a second]"
            )
        rate = bench_scheduling(server, args.schedule)
        print(
            f"scheduling (Scheduler.on_stored alone): {rate:,.0f} requests/s "
            "(digest folding only: no job per request, one thread)"
        )
        bare = statistics.median(bench_intake(server, args.intake, False) for _ in range(3))
        hooked = statistics.median(bench_intake(server, args.intake, True) for _ in range(3))
        print(
            f"intake with the default policy: {bare:,.0f} req/s bare, {hooked:,.0f} req/s with "
            f"the scheduler's on_stored hook in the intake thread (x{hooked / bare:.2f}; "
            f"n={args.intake}, median of 3)"
        )


if __name__ == "__main__":
    main()
