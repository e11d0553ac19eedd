"""Racing reviewers: fifty concurrent clicks on one request give exactly one decision."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from hitl.errors import AlreadyDecided, NotAuthorized
from hitl.handlers import Decider, OpenAuthority, Result
from hitl.models import Decision, Reviewer, Verdict, VerdictKind
from hitl.queue.audit import verify_entries
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.redis_server import RedisServer
from tests.scenarios.helpers import audit_entries, drain, xadd_raw

N = 50
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"


def _race(
    redis_server: RedisServer,
    store: Store,
    authority: OpenAuthority,
    act: Callable[[Decider, int], Result],
) -> tuple[list[Result], list[BaseException]]:
    """Run ``act`` from N threads at once, each with its own connection, Store and Decider."""
    barrier = threading.Barrier(N)
    results: list[Result] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    clients = [redis_server.client() for _ in range(N)]

    def worker(i: int) -> None:
        own = Store(clients[i], signer=store.signer)
        decider = Decider(own, authority)
        barrier.wait()
        try:
            result = act(decider, i)
        except BaseException as exc:  # collected and asserted on below
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(N)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    return results, errors


def _approve_or_reject(decider: Decider, i: int) -> Result:
    who = Reviewer(user_id=f"reviewer-{i:02d}", channel="slack" if i % 2 else "teams")
    if i % 2:
        return decider.reject("r-1", who, f"no from {i}")
    return decider.approve("r-1", who)


@pytest.mark.parametrize("run", range(2))
def test_fifty_racing_approvals_and_rejections(
    run: int,
    redis_server: RedisServer,
    intake: IntakeConsumer,
    store: Store,
    r: redis.Redis,
) -> None:
    """One decision; 49 AlreadyDecided saying who decided and when; one of each delivery; the
    audit chain has one terminal entry and 49 refusals, and verifies."""
    xadd_raw(r, '{"id": "r-1", "action": "refund", "params": {"amount": 120}}')
    drain(intake)
    results, errors = _race(redis_server, store, OpenAuthority(), _approve_or_reject)

    assert (1, N - 1) == (len(results), len(errors))
    decision = results[0].decision
    assert decision is not None
    winner = decision.reviewers[0].user_id
    assert all(isinstance(e, AlreadyDecided) for e in errors), errors
    pattern = rf"request r-1 is already {decision.outcome.value} by {winner} at {WHEN}"
    assert [] == [str(e) for e in errors if not re.fullmatch(pattern, str(e))]
    assert all(isinstance(e, AlreadyDecided) and e.decision == decision for e in errors)

    assert 1 == r.xlen("hitl:decisions")
    assert [decision] == [
        Decision.model_validate_json(x) for x in r.lrange("hitl:decision:r-1", 0, -1)
    ]
    entries = [e for e in audit_entries(r) if e["request_id"] == "r-1"]
    terminal = [e for e in entries if e["kind"] in ("approved", "rejected")]
    refused = [e for e in entries if e["kind"] == "refused"]
    assert ([decision.outcome.value], [winner]) == (
        [e["kind"] for e in terminal],
        [e["actor"] for e in terminal],
    )
    assert (N - 1, {True}) == (len(refused), {e["details"].get("late") for e in refused})
    assert sorted(f"reviewer-{i:02d}" for i in range(N) if f"reviewer-{i:02d}" != winner) == sorted(
        e["actor"] for e in refused
    )
    assert [decision.outcome.value] == [
        e["kind"] for e in entries if "delivered_to" in e["details"]
    ]
    report = verify_entries(audit_entries(r), expect_head=store.head())
    assert report.ok, str(report)
    assert [] == store.pending_ids()


def test_fifty_racing_approvals_under_a_two_person_rule(
    redis_server: RedisServer, store: Store, r: redis.Redis
) -> None:
    """With two approvals needed, exactly two distinct people make the one decision."""
    two = Verdict(kind=VerdictKind.REVIEW, approvals=2, rule="two")
    consumer = IntakeConsumer(store, lambda _req: two, block_ms=0)
    consumer.ensure_group()
    xadd_raw(r, '{"id": "r-1", "action": "refund"}')
    drain(consumer)
    consumer.close()
    authority = OpenAuthority(lambda _req: two)
    results, errors = _race(
        redis_server,
        store,
        authority,
        lambda d, i: d.approve("r-1", Reviewer(user_id=f"reviewer-{i:02d}")),
    )
    decided = [x.decision for x in results if x.decision is not None]
    assert (2, 1, N - 2) == (len(results), len(decided), len(errors))
    assert all(isinstance(e, AlreadyDecided) for e in errors)
    reviewers = [rv.user_id for rv in decided[0].reviewers]
    assert 2 == len(set(reviewers))
    assert (1, 1) == (r.xlen("hitl:decisions"), r.llen("hitl:decision:r-1"))
    assert verify_entries(audit_entries(r), expect_head=store.head()).ok


def test_same_reviewer_double_click(
    redis_server: RedisServer, store: Store, r: redis.Redis
) -> None:
    """One person clicking Approve from 20 devices at once casts one vote (two-person rule)."""
    two = Verdict(kind=VerdictKind.REVIEW, approvals=2)
    consumer = IntakeConsumer(store, lambda _req: two, block_ms=0)
    consumer.ensure_group()
    xadd_raw(r, '{"id": "r-1", "action": "refund"}')
    drain(consumer)
    consumer.close()
    barrier = threading.Barrier(20)
    outcomes: list[Any] = []

    def click() -> None:
        decider = Decider(store, OpenAuthority(lambda _req: two))
        barrier.wait()
        try:
            outcomes.append(decider.approve("r-1", Reviewer(user_id="bob")))
        except NotAuthorized as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=click) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert 1 == sum(isinstance(o, Result) for o in outcomes)
    assert 19 == sum(isinstance(o, NotAuthorized) for o in outcomes)
    assert ["bob"] == [v.reviewer.user_id for v in store.get("r-1").votes]
