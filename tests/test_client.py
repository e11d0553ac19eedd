"""The agent SDK against a real Redis and the real intake: submit, wait, cancel, verify."""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

import hitl.client
from hitl.client import AsyncClient, Client, build_request, require_approval
from hitl.config import Settings
from hitl.errors import (
    ApprovalRejected,
    ApprovalTimeout,
    InvalidRequest,
    SignatureError,
    StoreUnavailable,
)
from hitl.handlers import Decider
from hitl.keys import KeyRing
from hitl.models import Decision, Outcome, Reviewer, State
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.conftest import KEYRING
from tests.redis_server import RedisServer, free_port
from tests.scenarios.helpers import audit_kinds, consuming, drain, run_in_thread, wait_until

BOB = Reviewer(user_id="bob", display_name="Bob", channel="slack")


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(settings=settings, agent_id="agent-1") as c:
        yield c


@pytest.fixture
async def aclient(settings: Settings) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(settings=settings, agent_id="agent-1") as c:
        yield c


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    """HITL_REDIS_URL and HITL_PUBLIC_KEY (verify only) as an agent's environment sets them."""
    monkeypatch.setenv("HITL_REDIS_URL", redis_server.url)
    monkeypatch.setenv("HITL_PUBLIC_KEY", KEYRING.public().to_env())


def _pending(store: Store, rid: str | None = None) -> str:
    """Wait until a request (this one, or any) is pending; return its id."""

    def first() -> str | None:
        ids = store.pending_ids()
        if rid is None:
            return ids[0] if ids else None
        return rid if rid in ids else None

    return wait_until(first, what="a pending request")


# -- submit ------------------------------------------------------------------------------------


def test_submit_queues_a_request(
    client: Client, intake: IntakeConsumer, store: Store, r: redis.Redis
) -> None:
    """submit() returns the id at once; the intake turns it into a pending request."""
    rid = client.submit("refund", {"order": "A-1", "amount": 5}, summary="Refund A-1")
    assert 32 == len(rid)
    assert 1 == r.xlen("hitl:requests")
    drain(intake)
    record = store.get(rid)
    assert ("agent-1", "Refund A-1", State.PENDING) == (
        record.request.agent_id,
        record.request.summary,
        record.state,
    )


def test_submit_refuses_invalid_input_naming_the_field(client: Client, r: redis.Redis) -> None:
    """Bad input is InvalidRequest listing each field; nothing reaches the stream."""
    with pytest.raises(InvalidRequest, match="risk: ") as info:
        client.submit("refund", {"a": 1}, risk="extreme", confidence=2)
    assert {"risk", "confidence"} == {f for f, _ in info.value.errors}
    with pytest.raises(InvalidRequest, match="action: "):
        client.submit("not a tool name")
    with pytest.raises(InvalidRequest, match="parms: unknown field"):
        client.submit("refund", parms={})
    assert 0 == r.xlen("hitl:requests")


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"n": 2**53}, "params.n: integer outside ±(2**53-1)"),
        ({"x": float("inf")}, "params.x: not a finite number"),
        ({"deep": functools.reduce(lambda inner, _: [inner], range(40), 1)}, "nest deeper"),
    ],
)
def test_submit_refuses_what_json_cannot_carry(
    client: Client, r: redis.Redis, params: dict[str, Any], words: str
) -> None:
    """Huge integers, inf and over-deep params are InvalidRequest at submit; nothing is queued."""
    with pytest.raises(InvalidRequest, match=re.escape(words)) as info:
        client.submit("refund", params)
    assert ["params"] == [f for f, _ in info.value.errors]
    assert 0 == r.xlen("hitl:requests")


def test_submit_refuses_what_the_intake_would_dead_letter(
    client: Client, intake: IntakeConsumer, r: redis.Redis
) -> None:
    """A request over the wire limit is InvalidRequest at submit, not a silent dead letter."""
    plan = [{"description": "step", "params": {"blob": "x" * 5000}} for _ in range(100)]
    try:
        with pytest.raises(InvalidRequest, match="262144"):
            client.submit("refund", {}, plan=plan)
    finally:
        drain(intake)
    assert 0 == r.xlen("hitl:dead")


def test_same_id_twice_is_one_request(
    client: Client, intake: IntakeConsumer, store: Store, r: redis.Redis
) -> None:
    """Resubmitting with the same id (an agent retrying) creates one request."""
    assert "r-1" == client.submit("refund", {"amount": 1}, id="r-1")
    assert "r-1" == client.submit("refund", {"amount": 1}, id="r-1")
    assert "r-1" == client.submit("refund", {"amount": 2}, id="r-1")
    drain(intake)
    assert ({"amount": 1}, 1) == (store.get("r-1").params, store.pending_count())
    kinds = ["submitted", "duplicate_submission", "conflicting_submission"]
    assert kinds == audit_kinds(r, "r-1")


def test_build_request_generates_distinct_ids() -> None:
    """Every request built without an id gets a fresh one."""
    ids = {build_request("x", None).id for _ in range(100)}
    assert 100 == len(ids)


def test_status(client: Client, intake: IntakeConsumer) -> None:
    """status() is the record, or None for an unknown id."""
    rid = client.submit("refund", {})
    drain(intake)
    record = client.status(rid)
    assert (None, State.PENDING) == (client.status("nope"), record.state if record else None)


# -- waiting -----------------------------------------------------------------------------------


def test_request_approval_returns_the_modified_params(
    client: Client, intake: IntakeConsumer, store: Store, decider: Decider
) -> None:
    """The blocked call returns when a human decides, with the params they approved."""
    with (
        consuming(intake),
        run_in_thread(
            lambda: client.request_approval("refund", {"order": "A-1", "amount": 100}, timeout=20)
        ) as out,
    ):
        rid = _pending(store)
        decider.modify(rid, BOB, {"amount": 50})
    decision: Decision = out.value
    assert (Outcome.APPROVED, {"order": "A-1", "amount": 50}, True, ["bob"]) == (
        decision.outcome,
        decision.params,
        decision.modified,
        [rv.user_id for rv in decision.reviewers],
    )
    assert 20 == store.get(rid).request.timeout_s


def test_wait_returns_a_rejection(client: Client, intake: IntakeConsumer, decider: Decider) -> None:
    """wait() returns any outcome; the caller checks ``approved``."""
    rid = client.submit("refund", {})
    drain(intake)
    decider.reject(rid, BOB, "no")
    decision = client.wait(rid, timeout=5)
    assert (False, "no") == (decision.approved, decision.reason)


def test_timeout_leaves_the_request_pending(
    client: Client, intake: IntakeConsumer, store: Store, decider: Decider
) -> None:
    """ApprovalTimeout says the request is still pending; waiting again gets the decision."""
    rid = client.submit("refund", {})
    drain(intake)
    with pytest.raises(ApprovalTimeout, match="it is still pending") as info:
        client.wait(rid, timeout=0.2)
    assert rid == info.value.request_id
    assert f"wait({rid!r})" in str(info.value)
    assert State.PENDING == store.get(rid).state
    decider.approve(rid, BOB)
    assert client.wait(rid, timeout=5).approved


def test_wait_resumes_after_an_agent_restart(
    settings: Settings, intake: IntakeConsumer, decider: Decider, r: redis.Redis
) -> None:
    """A new client (the agent restarted) waits on the old id; the list was already popped."""
    with Client(settings=settings) as before_restart:
        rid = before_restart.submit("delete_volume", {"volume_id": "vol-1"})
    drain(intake)
    decider.approve(rid, BOB)
    assert r.lpop(f"hitl:decision:{rid}") is not None  # the earlier run consumed the list
    with Client(settings=settings) as after_restart:
        decision = after_restart.wait(rid, timeout=5)
    assert (True, {"volume_id": "vol-1"}) == (decision.approved, decision.params)


def test_two_waiters_both_get_the_decision(
    settings: Settings, intake: IntakeConsumer, store: Store, decider: Decider
) -> None:
    """Two processes waiting on one id are both answered (one pops, one reads the record)."""
    with Client(settings=settings) as a, Client(settings=settings) as b:
        rid = a.submit("refund", {})
        drain(intake)
        with (
            run_in_thread(lambda: a.wait(rid, 10)) as first,
            run_in_thread(lambda: b.wait(rid, 10)) as second,
        ):
            decider.approve(rid, BOB)
    assert first.value == second.value
    assert first.value.approved


# -- cancel ------------------------------------------------------------------------------------


def test_cancel_travels_on_the_stream(
    client: Client, intake: IntakeConsumer, store: Store, r: redis.Redis
) -> None:
    """cancel() queues a cancel entry; the intake's handler cancels; the decision comes back."""
    rid = client.submit("refund", {})
    drain(intake)
    with consuming(intake):
        decision = client.cancel(rid, "re-planned")
    assert (Outcome.CANCELLED, "re-planned", "agent-1") == (
        decision.outcome,
        decision.reason,
        decision.reviewers[0].user_id,
    )
    assert (State.CANCELLED, 0) == (store.get(rid).state, store.pending_count())


def test_cancel_after_approval_returns_the_approval(
    client: Client, intake: IntakeConsumer, decider: Decider, r: redis.Redis
) -> None:
    """A human who was faster wins: cancel() returns the approval."""
    rid = client.submit("refund", {})
    drain(intake)
    decider.approve(rid, BOB)
    with consuming(intake):
        decision = client.cancel(rid)  # answered from the record at once
        wait_until(lambda: "refused" == audit_kinds(r, rid)[-1], what="the refused cancel")
    assert (Outcome.APPROVED, ["bob"]) == (
        decision.outcome,
        [rv.user_id for rv in decision.reviewers],
    )


# -- signatures --------------------------------------------------------------------------------


def test_verify_catches_tampered_params(
    client: Client, intake: IntakeConsumer, decider: Decider
) -> None:
    """The executing tool can check that the params are the approved ones."""
    rid = client.submit("refund", {"amount": 50})
    drain(intake)
    decider.approve(rid, BOB)
    decision = client.wait(rid, 5)
    assert decision == client.verify(decision)
    with pytest.raises(SignatureError, match="do not execute it"):
        client.verify(decision.model_copy(update={"params": {"amount": 5000}}))
    with pytest.raises(SignatureError):
        client.verify(
            decision.model_copy(update={"outcome": Outcome.APPROVED, "request_id": "other"})
        )


def test_wait_refuses_a_decision_signed_with_another_key(
    settings: Settings, intake: IntakeConsumer, decider: Decider
) -> None:
    """An agent trusting other public keys gets SignatureError, not a decision to execute."""
    stranger = settings.model_copy(
        update={"keyring": None, "public_keys": KeyRing.generate().public()}
    )
    with Client(settings=settings) as c:
        rid = c.submit("refund", {})
    drain(intake)
    decider.approve(rid, BOB)
    with Client(settings=stranger) as wrong, pytest.raises(SignatureError):
        wrong.wait(rid, 5)
    with Client(settings=stranger, verify=False) as unchecked:
        assert unchecked.wait(rid, 5).approved


# -- the decorator -----------------------------------------------------------------------------


def test_decorator_runs_the_tool_with_the_approved_params(
    client: Client, intake: IntakeConsumer, store: Store, decider: Decider
) -> None:
    """The tool runs once approved, with the reviewer's params; the summary is formatted."""
    calls: list[tuple[str, float]] = []

    @require_approval(client, summary="Refund ${amount} for {order_id}", risk="high", timeout=20)
    def refund(order_id: str, amount: float = 100.0) -> str:
        calls.append((order_id, amount))
        return f"refunded {amount}"

    with consuming(intake), run_in_thread(lambda: refund("A-1")) as out:
        rid = _pending(store)
        record = store.get(rid)
        assert ("refund", "Refund $100.0 for A-1", "high") == (
            record.request.action,
            record.request.summary,
            record.verdict.risk.value,
        )
        decider.modify(rid, BOB, {"amount": 40.0})
    assert ("refunded 40.0", [("A-1", 40.0)]) == (out.value, calls)
    assert "refund" == refund.__name__


def test_decorator_raises_on_rejection(
    client: Client, intake: IntakeConsumer, store: Store, decider: Decider
) -> None:
    """A rejection raises ApprovalRejected with the reason and the reviewer; the tool never runs."""
    calls: list[str] = []

    @require_approval(client, action="delete_volume")
    def delete(volume_id: str) -> None:
        calls.append(volume_id)

    with consuming(intake), run_in_thread(lambda: delete("vol-1")) as out:
        rid = _pending(store)
        decider.reject(rid, BOB, "not during the freeze")
    err = out.error
    assert isinstance(err, ApprovalRejected)
    assert ("not during the freeze", "bob", Outcome.REJECTED, []) == (
        err.reason,
        err.reviewer.user_id if err.reviewer else None,
        err.outcome,
        calls,
    )
    assert f"request {rid} rejected by Bob: not during the freeze" == str(err)


def test_decorator_uses_the_environment(
    env: None, intake: IntakeConsumer, store: Store, decider: Decider
) -> None:
    """Without a client the decorator builds one from HITL_REDIS_URL / HITL_PUBLIC_KEY."""

    @require_approval()
    def ping(host: str) -> str:
        return f"pong {host}"

    with consuming(intake), run_in_thread(lambda: ping("db-1")) as out:
        decider.approve(_pending(store), BOB)
    assert "pong db-1" == out.value


def test_decorator_builds_one_client(
    env: None,
    intake: IntakeConsumer,
    store: Store,
    decider: Decider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The decorator's own client is made once and reused for every call."""
    made: list[Client] = []

    class Counting(Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(hitl.client, "Client", Counting)

    @require_approval()
    def ping() -> str:
        return "pong"

    with consuming(intake):
        for _ in range(2):
            with run_in_thread(ping):
                decider.approve(_pending(store), BOB)
    for c in made:
        c.close()
    assert 1 == len(made)


# -- async -------------------------------------------------------------------------------------


async def _apending(store: Store) -> str:
    for _ in range(1000):
        ids = await asyncio.to_thread(store.pending_ids)
        if ids:
            return ids[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no pending request")


async def test_async_submit_wait_and_cancel(
    aclient: AsyncClient, intake: IntakeConsumer, store: Store, decider: Decider
) -> None:
    """AsyncClient: submit, wait for an approval, cancel another request."""
    with consuming(intake):
        rid = await aclient.submit("refund", {"amount": 5}, id="a-1")
        waiter = asyncio.create_task(aclient.wait(rid, timeout=10))
        await _apending(store)
        await asyncio.to_thread(decider.approve, rid, BOB)
        approved = await waiter

        other = await aclient.submit("refund", {"amount": 6})
        assert other == await _apending(store)
        cancelled = await aclient.cancel(other, "never mind")
    assert (True, Outcome.CANCELLED, "never mind") == (
        approved.approved,
        cancelled.outcome,
        cancelled.reason,
    )
    record = await aclient.status(rid)
    assert record is not None and State.APPROVED == record.state


async def test_async_timeout_and_invalid_input(
    aclient: AsyncClient, intake: IntakeConsumer, store: Store
) -> None:
    """The async twin times out the same way and validates the same way."""
    rid = await aclient.submit("refund", {})
    await asyncio.to_thread(drain, intake)
    with pytest.raises(ApprovalTimeout):
        await aclient.wait(rid, timeout=0.2)
    with pytest.raises(InvalidRequest, match="timeout_s"):
        await aclient.submit("refund", timeout_s=-1)
    assert State.PENDING == (await asyncio.to_thread(store.get, rid)).state


async def test_async_decorator(
    aclient: AsyncClient, intake: IntakeConsumer, store: Store, decider: Decider
) -> None:
    """``async def`` tools run with the approved params or raise ApprovalRejected."""

    @require_approval(aclient, summary="Stop {instance}")
    async def stop_instance(instance: str, force: bool = False) -> str:
        return f"stopped {instance} force={force}"

    with consuming(intake):
        task = asyncio.create_task(stop_instance("i-1"))
        rid = await _apending(store)
        await asyncio.to_thread(decider.modify, rid, BOB, {"force": True})
        assert "stopped i-1 force=True" == await task

        task = asyncio.create_task(stop_instance("i-2"))
        rid = await _apending(store)
        await asyncio.to_thread(decider.reject, rid, BOB, "prod freeze")
        with pytest.raises(ApprovalRejected, match="prod freeze") as info:
            await task
    assert "bob" == (info.value.reviewer.user_id if info.value.reviewer else None)


# -- Redis down --------------------------------------------------------------------------------


def test_submit_with_redis_down_is_store_unavailable(settings: Settings) -> None:
    """With nothing listening, submit raises StoreUnavailable saying the request was not queued."""
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    with (
        Client(settings=down) as c,
        pytest.raises(StoreUnavailable, match="could not queue the request") as info,
    ):
        c.submit("refund", {})
    assert "Connection refused" in str(info.value)
