"""Large backlogs: how long one page of the pending list takes with N pending requests.

The three ways a reviewer lists work: every pending request (``hitl pending``, the API's
``GET /api/v1/requests``), what one reviewer may decide (``hitl pending --as``, ``?mine=1``,
Slack's ``/hitl pending``) and a filter (``?action=``). Each is timed through the handler they all
call (:func:`hitl.handlers.pending`) at random offsets; prints p50/p95 against the issue's
target (p95 <= 200 ms at 10,000 pending). Run with ``python -m bench.bench_backlog --n 10000``.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from bench.bench_core import KEYRING, _fill, pct
from hitl.handlers import Page, pending, review_everything
from hitl.policies import default_policy
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.redis_server import RedisServer


def _timed(call: Callable[[], Page], runs: int) -> tuple[list[float], Page]:
    samples, page = [], call()
    for _ in range(runs):
        t0 = time.perf_counter()
        page = call()
        samples.append(time.perf_counter() - t0)
    return samples, page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="pending requests")
    parser.add_argument("--runs", type=int, default=20, help="pages timed per way of listing")
    args = parser.parse_args()
    policy = default_policy()
    rng = random.Random(1)
    with RedisServer() as server:
        r = server.client()
        store = Store(r, signer=KEYRING)
        _fill(r, store.keys.requests, args.n)
        intake = IntakeConsumer(store, review_everything, block_ms=0)
        intake.ensure_group()
        while intake.run_once(block_ms=0):
            pass
        intake.close()
        total = store.pending_count()
        print(f"hitl backlog bench: {total:,} pending, {args.runs} pages of 20 per way")
        ways: dict[str, Callable[[], Page]] = {
            "all (hitl pending, GET /requests)": lambda: pending(
                store, offset=rng.randrange(max(1, total - 20)), limit=20
            ),
            "for a reviewer (--as bob, ?mine=1, /hitl pending)": lambda: pending(
                store, reviewer_id="bob", authority=policy, offset=0, limit=20
            ),
            "filtered (?action=refund)": lambda: pending(
                store, where=lambda rec: rec.request.action == "refund", offset=0, limit=20
            ),
        }
        for name, call in ways.items():
            samples, page = _timed(call, args.runs)
            ms = [s * 1e3 for s in samples]
            print(
                f"{name}: p50 {pct(ms, 0.5):,.1f} ms, p95 {pct(ms, 0.95):,.1f} ms "
                f"({len(page.records)} shown of {page.total:,})  [target p95 <= 200 ms]"
            )


if __name__ == "__main__":
    main()
