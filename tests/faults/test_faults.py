"""The fault suite: under a steady load of requests and approvals, processes and Redis die at
random moments (seeded: the seed is printed; ``HITL_FAULT_SEED=N`` replays a run), and nothing
is lost, nothing is decided twice, and the audit chain verifies.

Each test prints one line: ``sent= decided= lost= duplicated= chain_verified= ...``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.faults.harness import Deployment, Load, Tally, chaos, fault_seed

pytestmark = pytest.mark.slow


def _report(name: str, seed: int, system: Deployment, tally: Tally) -> None:
    print(f"\n[{name}] seed={seed} restarts={dict(system.restarts)} {tally.line()}")
    if not tally.chain_ok:
        print(tally.chain_report)
    for line in tally.undecided:
        print("  not decided:", line)


def _assert_nothing_lost(tally: Tally) -> None:
    assert tally.sent > 0
    assert (tally.sent, 0, 0, True) == (tally.decided, tally.lost, tally.duplicated, tally.chain_ok)


def test_kill_9_the_intake_under_load(tmp_path: Path) -> None:
    """`hitl serve` (intake + API) killed -9 four times at random moments, two replicas, then
    restarted: every request stored and decided once, the chain verifies."""
    seed = fault_seed()
    rng = random.Random(seed)
    with Deployment(tmp_path).start(serves=2) as system, Load(system, seed) as load:
        for _ in chaos(
            rng, 4, lambda: system.kill_serve(rng.choice(system.ports)), system.restart_dead
        ):
            pass
        tally = system.tally(load.settle())
    _report("intake", seed, system, tally)
    _assert_nothing_lost(tally)


def test_kill_9_the_worker_under_load(tmp_path: Path) -> None:
    """The RQ worker and its scheduler killed -9 three times: every request left alone is still
    denied by default once (expired), no escalation job runs twice, the chain verifies."""
    seed = fault_seed()
    rng = random.Random(seed)
    with Deployment(tmp_path).start(serves=1) as system, Load(system, seed) as load:
        for _ in chaos(rng, 3, system.kill_worker, system.restart_dead, up=(0.5, 1.5)):
            pass
        tally = system.tally(load.settle())
    _report("worker", seed, system, tally)
    _assert_nothing_lost(tally)
    assert tally.outcomes.get("expired", 0) > 0


def test_kill_9_the_slack_task_under_load(tmp_path: Path) -> None:
    """The `hitl serve` that runs the Slack channel killed -9 three times while bob approves by
    clicking the cards in Slack: every deploy still gets its card (the start-up sweep posts what
    a dead process never posted) and is approved once; the chain verifies."""
    seed = fault_seed()
    rng = random.Random(seed)
    with (
        Deployment(tmp_path, slack=True).start(serves=1) as system,
        Load(system, seed, reviewer="slack") as load,
    ):
        for _ in chaos(rng, 3, system.kill_serve, system.restart_dead):
            pass
        tally = system.tally(load.settle())
    _report("slack", seed, system, tally)
    _assert_nothing_lost(tally)
    assert 0 == tally.cards_missing


@pytest.mark.parametrize("appendfsync", ["always", "everysec"])
def test_kill_9_redis_and_restart_from_its_aof(tmp_path: Path, appendfsync: str) -> None:
    """redis-server killed -9 three times and restarted from its AOF. With `always` nothing
    acknowledged is lost; with `everysec` the last second may be, and agents that re-submit
    (by id) and the sweep cover requests; what everysec does to decisions is printed."""
    seed = fault_seed()
    rng = random.Random(seed)
    with (
        Deployment(tmp_path, appendfsync=appendfsync).start(serves=1) as system,
        Load(system, seed) as load,
    ):
        for _ in chaos(rng, 3, system.kill_redis, system.restart_dead, up=(0.5, 1.5)):
            pass
        tally = system.tally(load.settle())
    _report(f"redis-{appendfsync}", seed, system, tally)
    assert (tally.sent, 0) == (tally.decided, tally.duplicated)
    if appendfsync == "always":
        _assert_nothing_lost(tally)


def test_redis_cut_for_10_seconds(tmp_path: Path) -> None:
    """Redis frozen (SIGSTOP) for 10 s under load, then back: every process rides it out, every
    request is decided once, the chain verifies."""
    seed = fault_seed()
    with Deployment(tmp_path).start(serves=1) as system, Load(system, seed) as load:
        time.sleep(1.0)
        system.redis.pause()
        time.sleep(10.0)
        system.redis.resume()
        time.sleep(1.0)
        tally = system.tally(load.settle())
    _report("redis-cut-10s", seed, system, tally)
    _assert_nothing_lost(tally)
