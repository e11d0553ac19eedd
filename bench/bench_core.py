"""Core benchmarks: intake throughput, decision round trip, and the raw Redis baseline beside them.

Run with ``make bench`` (or ``python -m bench.bench_core``). Prints medians over several runs and
our/raw ratios; nothing here asserts a time. Each run uses its own redis-server on a free port.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import tempfile
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hitl.client import Client
from hitl.config import Settings
from hitl.handlers import Decider, OpenAuthority
from hitl.keys import KeyRing, PublicKeys
from hitl.models import ApprovalRequest, Reviewer
from hitl.queue.audit import AuditEvent, ChainHead, encode_entry
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.redis_server import RedisServer

KEYRING = KeyRing.generate()


def _request(i: int) -> str:
    return json.dumps(
        {
            "id": f"b-{uuid.uuid4().hex}",
            "action": "refund",
            "params": {"order_id": f"A-{i}", "amount": 25.0 + i % 400},
            "summary": f"Refund order A-{i}",
            "reasoning": "Customer reports the parcel arrived damaged; photo attached.",
            "agent_id": "support-bot",
            "requested_by": "U0CUSTOMER",
            "confidence": 0.8,
        }
    )


def _fill(r: Any, stream: str, n: int) -> None:
    """Queue ``n`` requests on ``stream`` as agents would (pipelined, 1,000 per round trip)."""
    pipe = r.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"request": _request(i)})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def _classifier(policy: bool) -> tuple[object, str]:
    if policy:
        try:
            from hitl.policies import default_policy

            p = default_policy()
            return p.evaluate, "default policy"
        except Exception as exc:  # the engine may be absent on an old checkout
            print(f"  (default policy unavailable: {exc}; using the open classifier)")
    return OpenAuthority().evaluate, "open classifier"


def bench_intake(server: RedisServer, n: int, batch: int, policy: bool) -> float:
    """Requests/s from XADD'ed entries to stored + pending, one consumer process."""
    r = server.client()
    r.flushall()
    _fill(r, "hitl:requests", n)
    store = Store(r, signer=KEYRING)
    classify, _ = _classifier(policy)
    consumer = IntakeConsumer(store, classify, batch=batch, block_ms=0)  # type: ignore[arg-type]
    consumer.ensure_group()
    t0 = time.perf_counter()
    done = 0
    while done < n:
        got = consumer.run_once(block_ms=0)
        if got == 0:
            break
        done += got
    elapsed = time.perf_counter() - t0
    consumer.close()
    stored = r.zcard("hitl:pending") + len(r.keys("hitl:decision:*"))
    if stored != n:
        print(f"  WARNING: {stored} of {n} requests stored")
    return done / elapsed


def bench_raw(server: RedisServer, n: int, batch: int) -> float:
    """The same server's floor: XREADGROUP + XACK of the same entries, nothing else."""
    r = server.client()
    r.flushall()
    _fill(r, "raw:requests", n)
    r.xgroup_create("raw:requests", "g", id="0")
    t0 = time.perf_counter()
    done = 0
    while done < n:
        reply = r.xreadgroup("g", "c", {"raw:requests": ">"}, count=batch)
        if not reply:
            break
        entries = reply[0][1]
        for _id, fields in entries:
            json.loads(fields["request"])
        r.xack("raw:requests", "g", *[e[0] for e in entries])
        done += len(entries)
    return done / (time.perf_counter() - t0)


def bench_naive(server: RedisServer, n: int, batch: int) -> float:
    """The floor for what intake does: a plain loop that reads a batch, validates each request,
    stores its record and pending entry, appends one hash-chained audit entry each, and acks, in
    one MULTI per batch. No policy, no signing, no idempotency check, no WATCH."""
    r = server.client()
    r.flushall()
    _fill(r, "naive:requests", n)
    r.xgroup_create("naive:requests", "g", id="0")
    head = ChainHead()
    t0 = time.perf_counter()
    done = 0
    while done < n:
        reply = r.xreadgroup("g", "c", {"naive:requests": ">"}, count=batch)
        if not reply:
            break
        entries = reply[0][1]
        now = time.time()
        with r.pipeline(transaction=True) as tx:
            for _sid, fields in entries:
                request = ApprovalRequest.model_validate_json(fields["request"])
                rid = request.id or _sid
                tx.set(f"naive:req:{rid}", request.model_dump_json())
                tx.zadd("naive:pending", {rid: now + 600})
                event = AuditEvent("submitted", rid, request.agent_id or "agent", {"a": 1})
                head, text = encode_entry(head, event, now)
                tx.xadd("naive:audit", {"e": text})
            tx.set("naive:audit:head", head.dumps())
            tx.xack("naive:requests", "g", *[e[0] for e in entries])
            tx.execute()
        done += len(entries)
    return done / (time.perf_counter() - t0)


def _agent(url: str, public: str, ids: Connection, times: Connection) -> None:
    """The agent in its own process (as in production, holding only the public key): wait for
    each id (verifying its signature), report when it returns."""
    client = Client(settings=Settings(redis_url=url, public_keys=PublicKeys.parse(public)))
    while True:
        rid = ids.recv()
        if rid is None:
            break
        if rid.startswith("raw:"):
            client.redis.blpop([rid], timeout=10)
        else:
            client.wait(rid, timeout=10)
        times.send(time.monotonic())
    client.close()


def bench_roundtrips(server: RedisServer, n: int) -> tuple[list[float], list[float]]:
    """approve() here -> the agent process blocked in wait() returns; and the raw LPUSH->BLPOP.

    CLOCK_MONOTONIC is system-wide on Linux, so the two processes' timestamps compare directly.
    """
    r = server.client()
    r.flushall()
    settings = Settings(redis_url=server.url, keyring=KEYRING)
    store = Store(r, signer=settings.signing_keys())
    consumer = IntakeConsumer(store, OpenAuthority().evaluate, block_ms=0)
    consumer.ensure_group()
    decider = Decider(store, OpenAuthority())
    client = Client(settings=settings)
    bob = Reviewer(user_id="bob", display_name="Bob")
    ctx = mp.get_context("spawn")
    ids_send, ids_recv = ctx.Pipe()
    times_recv, times_send = ctx.Pipe(duplex=False)
    agent = ctx.Process(
        target=_agent, args=(server.url, KEYRING.public().to_env(), ids_recv, times_send)
    )
    agent.start()
    ours: list[float] = []
    raw: list[float] = []
    for i in range(n):
        rid = client.submit("refund", {"order_id": f"A-{i}", "amount": 50.0}, requested_by="alice")
        consumer.run_once(block_ms=0)
        ids_send.send(rid)
        time.sleep(0.003)  # the agent reaches BLPOP
        t0 = time.monotonic()
        decider.approve(rid, bob)
        ours.append(times_recv.recv() - t0)
        ids_send.send(f"raw:{i}")
        time.sleep(0.003)
        t0 = time.monotonic()
        r.lpush(f"raw:{i}", "x")
        raw.append(times_recv.recv() - t0)
    ids_send.send(None)
    agent.join(10)
    client.close()
    consumer.close()
    return ours, raw


def bench_service_intake(server: RedisServer, n: int) -> tuple[float, float]:
    """``hitl serve``'s intake as deployed: one consumer thread + the dispatcher thread that
    folds digests and hands records to the channels (escalations need no job per request: the
    worker's sweep reads ``hitl:pending``). Returns (stored/s, stored-and-dispatched/s)."""
    from hitl.service import Service

    r = server.client()
    r.flushall()
    _fill(r, "hitl:requests", n)
    settings = Settings(
        redis_url=server.url, keyring=KEYRING, data_dir=Path(tempfile.mkdtemp(prefix="hitl-bench-"))
    )
    service = Service(settings)
    stored_keys = "hitl:pending"
    t0 = time.perf_counter()
    service.start_intake()
    stored_at = done_at = 0.0
    while time.perf_counter() - t0 < 120:
        if not stored_at and sum(vars(c.stats)["stored"] for c in service.consumers) >= n:
            stored_at = time.perf_counter() - t0
        if stored_at and service.dispatched >= n:
            done_at = time.perf_counter() - t0
            break
        time.sleep(0.005)
    service.stop_intake()
    del stored_keys
    if not done_at:
        print(f"  WARNING: only {service.dispatched} of {n} dispatched in 120 s")
        done_at = time.perf_counter() - t0
    return n / stored_at if stored_at else 0.0, n / done_at


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000, help="requests per intake run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--roundtrips", type=int, default=300)
    args = parser.parse_args()
    with RedisServer() as server:
        print(f"hitl core bench: redis on :{server.port}, n={args.n}, runs={args.runs}")
        for policy in (False, True):
            _, label = _classifier(policy)
            ours = [bench_intake(server, args.n, args.batch, policy) for _ in range(args.runs)]
            raw = [bench_raw(server, args.n, args.batch) for _ in range(args.runs)]
            o, w = statistics.median(ours), statistics.median(raw)
            runs = ", ".join(f"{x:,.0f}" for x in ours)
            print(
                f"intake ({label}): {o:,.0f} req/s median (runs {runs}); raw XREADGROUP+XACK "
                f"{w:,.0f} msg/s; ours/raw = {o / w:.2f}  [target >= 2,000 req/s]"
            )
        served, naive = [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine
            served.append(bench_service_intake(server, args.n))
            naive.append(bench_naive(server, args.n, args.batch))
        st = statistics.median(s for s, _ in served)
        sc = statistics.median(d for _, d in served)
        nv = statistics.median(naive)
        print(
            f"intake as `hitl serve` runs it (default policy; intake + dispatcher threads): "
            f"stored {st:,.0f} req/s, stored+dispatched {sc:,.0f} req/s "
            f"(runs {', '.join(f'{d:,.0f}' for _, d in served)})"
        )
        print(
            f"naive validate+store+audit loop (no policy, no signing): {nv:,.0f} req/s median "
            f"(runs {', '.join(f'{x:,.0f}' for x in naive)}); served/naive = {sc / nv:.2f}"
        )
        rt, raw_rt = bench_roundtrips(server, args.roundtrips)
        print(
            f"round trip approve -> blocked SDK returns: p50 {pct(rt, 0.5) * 1e3:.2f} ms, "
            f"p95 {pct(rt, 0.95) * 1e3:.2f} ms (n={len(rt)})  [target p95 <= 5 ms]"
        )
        print(
            f"raw LPUSH -> BLPOP wake-up: p50 {pct(raw_rt, 0.5) * 1e3:.2f} ms, "
            f"p95 {pct(raw_rt, 0.95) * 1e3:.2f} ms; "
            f"ours/raw p50 = {pct(rt, 0.5) / pct(raw_rt, 0.5):.1f}x"
        )


if __name__ == "__main__":
    main()
