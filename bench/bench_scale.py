"""Scale: R = 1, 2, 4, 8 replicas of the real ``hitl serve`` on one Redis (AOF on, everysec;
signing on), auto-approved and reviewed actions, a pushed burst and a paced run at half the
burst rate. One table: requests/s, p50/p95/p99 submit -> stored, bytes per request, correctness
(every id stored once, nothing dead-lettered, the chain verified by ``hitl audit verify``), and
beside each row the raw-Redis floor (XREADGROUP+XACK) and the naive validate+store+audit loop
measured in the same run, on the same server, just before the replicas start. Each row is the
run with the median rate of ``--runs``; "vs R=1" is the ratio to the same row with one replica.

Run with ``make bench`` or ``python -m bench.bench_scale --n 2000 --replicas 1,2,4,8``. Prints
medians and ratios; asserts nothing. Runs on any core count and says how many it had.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench_core import bench_naive, bench_raw, pct
from hitl.keys import KeyRing
from hitl.queue.keys import Keys
from tests.faults.harness import POLICY
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
KEYS = Keys()
ACTIONS = {"auto": "read_file", "reviewed": "deploy"}
"""The fault suite's policy: read_file is approved by the policy, deploy waits for a human."""


@dataclass
class Row:
    replicas: int
    kind: str
    mode: str
    rate: float
    latencies: list[float]
    bytes_per_request: float
    correct: str


def _request(rid: str, action: str, i: int) -> str:
    return json.dumps(
        {
            "id": rid,
            "action": action,
            "params": {"order_id": f"A-{i}", "amount": 25.0 + i % 400},
            "summary": f"{action} {i}",
            "reasoning": "The agent's reason, a sentence or two long, as agents write them.",
            "agent_id": "bench-agent",
            "requested_by": "U0AGENT",
        }
    )


class Replicas:
    """``hitl serve`` processes on one Redis."""

    def __init__(self, env: dict[str, str], count: int, logs: Path) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.procs = []
        for port in self.ports:
            with open(logs / f"serve-{port}.log", "ab") as log:
                cmd = [sys.executable, "-m", "hitl", "serve", "--host", "127.0.0.1"]
                self.procs.append(
                    subprocess.Popen(
                        [*cmd, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log
                    )
                )
        for port in self.ports:
            _wait_healthy(port)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


def _wait_healthy(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"hitl serve on {port} did not answer /healthz")


def _push(r: Any, ids: list[str], action: str, per_s: float | None) -> dict[str, float]:
    """XADD the requests (100 per pipeline); paced at ``per_s`` when given. Returns submit times."""
    sent: dict[str, float] = {}
    start = time.time()
    chunk = 100 if per_s is None else max(1, int(per_s / 100))  # paced: ~100 pipelines/s
    for begin in range(0, len(ids), chunk):
        if per_s is not None:
            due = start + begin / per_s
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
        pipe = r.pipeline(transaction=False)
        now = time.time()
        for i, rid in enumerate(ids[begin : begin + chunk], start=begin):
            pipe.xadd(KEYS.requests, {"request": _request(rid, action, i)})
            sent[rid] = now
        pipe.execute()
    return sent


def _stored_at(r: Any, ids: list[str], timeout: float = 300.0) -> dict[str, float]:
    """Wait until every id is stored; each record's ``created_at`` (the intake's clock)."""
    deadline = time.monotonic() + timeout
    found: dict[str, float] = {}
    todo = list(ids)
    while todo and time.monotonic() < deadline:
        still = []
        for begin in range(0, len(todo), 1000):
            chunk = todo[begin : begin + 1000]
            for rid, raw in zip(chunk, r.mget([KEYS.req(i) for i in chunk]), strict=True):
                if raw:
                    found[rid] = float(json.loads(raw)["created_at"])
                else:
                    still.append(rid)
        todo = still
        if todo:
            time.sleep(0.05)
    return found


def _bytes_per_request(r: Any, ids: list[str]) -> float:
    """Median ``MEMORY USAGE`` of a request's own keys (record, decision list) over a sample."""
    sample = ids[:: max(1, len(ids) // 200)]
    sizes = []
    for rid in sample:
        sizes.append(sum(int(r.memory_usage(k) or 0) for k in (KEYS.req(rid), KEYS.decision(rid))))
    return statistics.median(sizes) if sizes else 0.0


def _run(r: Any, replicas: int, kind: str, mode: str, n: int, per_s: float | None) -> Row:
    ids = [f"{kind}-{mode}-{replicas}-{uuid.uuid4().hex[:12]}" for _ in range(n)]
    dead_before = r.xlen(KEYS.dead)
    sent = _push(r, ids, ACTIONS[kind], per_s)
    stored = _stored_at(r, ids)
    if len(stored) < n:
        return Row(replicas, kind, mode, 0.0, [], 0.0, f"only {len(stored)}/{n} stored")
    latencies = [max(0.0, stored[i] - sent[i]) for i in ids]
    elapsed = max(stored.values()) - min(sent.values())
    dead = r.xlen(KEYS.dead) - dead_before
    return Row(
        replicas,
        kind,
        mode,
        n / elapsed if elapsed > 0 else 0.0,
        latencies,
        _bytes_per_request(r, ids),
        "ok" if dead == 0 else f"{dead} dead",
    )


def _median(rows: list[Row]) -> Row:
    """The run with the median rate (its latencies and size figures come with it)."""
    return sorted(rows, key=lambda row: row.rate)[len(rows) // 2]


def _stored_once(r: Any) -> int:
    """Requests with more than one ``submitted`` audit entry (0 when every id is stored once)."""
    submitted: Counter[str] = Counter()
    for _sid, fields in r.xrange(KEYS.audit):
        entry = json.loads(fields["e"])
        if entry["kind"] == "submitted":
            submitted[entry["request_id"]] += 1
    return sum(1 for count in submitted.values() if count > 1)


def _verify(env: dict[str, str]) -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "hitl", "audit", "verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="requests per burst and paced run")
    parser.add_argument("--replicas", default="1,2,4,8", help="replica counts, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="runs per row (the median is shown)")
    args = parser.parse_args()
    counts = [int(x) for x in args.replicas.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="hitl-bench-scale-"))
    keyring = KeyRing.generate()
    keyring.save(tmp / "keys.json")
    (tmp / "policy.yaml").write_text(POLICY)
    cores = os.cpu_count() or 1
    with RedisServer(appendonly=True, appendfsync="everysec") as server:
        r = server.client()
        env = {
            **os.environ,
            "HITL_REDIS_URL": server.url,
            "HITL_SIGNING_KEY_FILE": str(tmp / "keys.json"),
            "HITL_POLICY": str(tmp / "policy.yaml"),
        }
        print(
            f"hitl scale bench: {cores} cores, redis :{server.port} (appendonly yes, everysec), "
            f"signing on, n={args.n} per run, median of {args.runs} runs, replicas {counts}"
        )
        header = (
            f"{'R':>2} {'kind':<8} {'mode':<6} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'p99 ms':>8} {'B/req':>6} {'raw/s':>8} {'naive/s':>8} {'/raw':>5} {'/naive':>6} "
            f"{'vs R=1':>6}  correct"
        )
        print(header)
        first: dict[tuple[str, str], float] = {}
        for count in counts:
            r.flushall()
            raw = bench_raw(server, args.n, 200)
            naive = bench_naive(server, args.n, 200)
            r.flushall()
            # A fresh chain per R, so its own anchor file (the last R's would read as a wipe).
            env["HITL_DATA_DIR"] = str(tmp / f"data-{count}")
            replicas = Replicas(env, count, tmp)
            rows: list[Row] = []
            try:
                for kind in ACTIONS:
                    burst = _median(
                        [_run(r, count, kind, "burst", args.n, None) for _ in range(args.runs)]
                    )
                    half = max(1.0, burst.rate / 2)
                    paced = _median(
                        [_run(r, count, kind, "paced", args.n, half) for _ in range(args.runs)]
                    )
                    rows += [burst, paced]
            finally:
                replicas.stop()
            doubled = _stored_once(r)
            chain = "chain verified" if _verify(env) else "CHAIN FAILED"
            for row in rows:
                first.setdefault((row.kind, row.mode), row.rate)
                lat = [x * 1e3 for x in row.latencies] or [0.0]
                correct = f"{row.correct}, {doubled} stored twice, {chain}"
                print(
                    f"{row.replicas:>2} {row.kind:<8} {row.mode:<6} {row.rate:>8,.0f} "
                    f"{pct(lat, 0.5):>8.1f} {pct(lat, 0.95):>8.1f} {pct(lat, 0.99):>8.1f} "
                    f"{row.bytes_per_request:>6,.0f} {raw:>8,.0f} {naive:>8,.0f} "
                    f"{row.rate / raw:>5.2f} {row.rate / naive:>6.2f} "
                    f"{row.rate / first[(row.kind, row.mode)]:>6.2f}  {correct}",
                    flush=True,
                )
        print(
            "req/s: burst = n / (last stored - first submitted); paced = submitted at half the "
            "burst rate. raw/s: one XREADGROUP+XACK consumer; naive/s: validate+store+audit loop."
        )


if __name__ == "__main__":
    main()
