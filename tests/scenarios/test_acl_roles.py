"""`hitl acl` applied to a fresh Redis: each process kind works as its own user, and no more.

The agent submits and waits through the real SDK, the service runs intake and decisions, the
worker runs escalation jobs on rq's SimpleWorker, the auditor reads; each is refused what its
role does not need. After every working flow, ``ACL LOG`` is empty: nothing was denied quietly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.exceptions import NoPermissionError, ResponseError
from rq import SimpleWorker

from hitl.acl import ROLES, acl_rules
from hitl.client import AsyncClient, Client
from hitl.config import Settings
from hitl.handlers import Decider, OpenAuthority
from hitl.jobs import JobContext, use_context
from hitl.models import (
    ApprovalRequest,
    Destination,
    FeedbackEntry,
    Outcome,
    Reviewer,
    State,
    Verdict,
    VerdictKind,
)
from hitl.queue.audit import verify_entries
from hitl.queue.intake import IntakeConsumer
from hitl.queue.keys import Keys
from hitl.queue.scheduler import ManualClock, SchedulerConfig
from hitl.queue.store import Store
from tests.chains import CHAIN, T0
from tests.conftest import KEYRING
from tests.redis_server import RedisServer
from tests.scenarios.helpers import audit_entries, consuming, drain, run_in_thread, wait_until

PASSWORDS = {role: f"pw-{role}-not-for-production" for role in ROLES}
AGENT = Settings(public_keys=KEYRING.public())
"""An agent's settings: the public key only (it verifies decisions, it cannot sign one)."""


def apply_rules(admin: redis.Redis, lines: list[str]) -> None:
    """Run each ``ACL SETUSER`` line; Redis before 7.2 has no CLIENT SETINFO to grant."""
    for line in lines:
        try:
            admin.execute_command(*line.split())
        except ResponseError as exc:
            version = tuple(int(x) for x in str(admin.info("server")["redis_version"]).split("."))
            if not (line.endswith("+client|setinfo") and version < (7, 2)):
                raise AssertionError(f"{line}: {exc}") from exc


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    """A redis-server of its own, with the four users of `hitl acl` (hashed passwords)."""
    with RedisServer() as server:
        admin = server.client()
        apply_rules(admin, acl_rules(Keys(), "hitl", ROLES, PASSWORDS))
        admin.close()
        yield server


@pytest.fixture
def admin(acl_server: RedisServer) -> Iterator[redis.Redis]:
    """The default (unrestricted) user, on an empty database with an empty ACL log."""
    client = acl_server.client()
    client.flushall()
    client.acl_log_reset()
    yield client
    client.close()


def url(server: RedisServer, role: str) -> str:
    return f"redis://hitl-{role}:{PASSWORDS[role]}@127.0.0.1:{server.port}/0"


def connect(server: RedisServer, role: str) -> redis.Redis:
    return redis.Redis.from_url(url(server, role), decode_responses=True)


def store_as(server: RedisServer, role: str, clock: ManualClock | None = None) -> Store:
    """A Store over a connection as ``hitl-<role>``, as tests/conftest.py builds one."""
    kw: dict[str, Any] = {"clock": clock} if clock is not None else {}
    return Store(
        connect(server, role),
        signer=KEYRING,
        **kw,
    )


def denials(admin: redis.Redis) -> list[str]:
    """What ``ACL LOG`` recorded as refused: ``user: object``."""
    return [f"{e['username']}: {e['object']}" for e in admin.acl_log()]


def chain_ok(store: Store) -> bool:
    entries = audit_entries(store.redis)
    return verify_entries(entries, store.head()).ok


def agent_feedback(server: RedisServer, action: str) -> list[FeedbackEntry]:
    """``Client.feedback`` read as hitl-agent (and its overrides: none)."""
    with Client(url=url(server, "agent"), settings=AGENT, agent_id="agent-1") as agent:
        assert [] == agent.controls(session_id="s-1")
        return agent.feedback(action=action)


def test_agent_submits_and_waits_while_the_service_decides(
    acl_server: RedisServer, admin: redis.Redis
) -> None:
    """The SDK as hitl-agent, intake and the decider as hitl-service: approved, chain intact."""
    service = store_as(acl_server, "service")
    decider = Decider(service, OpenAuthority())
    intake = IntakeConsumer(service, OpenAuthority().evaluate, block_ms=0)
    intake.ensure_group()
    with Client(url=url(acl_server, "agent"), settings=AGENT) as agent:
        rid = agent.submit(
            "refund", {"order": "A-1", "amount": 5}, requested_by="alice", agent_id="agent-1"
        )
        drain(intake)
        assert State.PENDING == agent.status(rid).state  # type: ignore[union-attr]
        with run_in_thread(lambda: agent.wait(rid, timeout=10)) as waiting:
            wait_until(lambda: admin.client_list(_type="normal"), what="the agent to block")
            decider.approve(rid, Reviewer(user_id="bob"), "fine")
    assert waiting.error is None
    assert Outcome.APPROVED == waiting.value.outcome
    assert ["fine"] == [f.reason for f in agent_feedback(acl_server, "refund")]
    assert chain_ok(service)
    assert [] == denials(admin)
    intake.close()
    service.redis.close()


async def test_async_agent_submits_waits_and_cancels(
    acl_server: RedisServer, admin: redis.Redis
) -> None:
    """AsyncClient as hitl-agent: submit, wait for an approval, cancel another request."""
    service = store_as(acl_server, "service")
    decider = Decider(service, OpenAuthority())
    intake = IntakeConsumer(
        service,
        OpenAuthority().evaluate,
        block_ms=0,
        on_cancel=decider.cancel_by_agent,
    )
    intake.ensure_group()
    async with AsyncClient(url=url(acl_server, "agent"), settings=AGENT) as agent:
        rid = await agent.submit("refund", {"order": "A-3"}, requested_by="alice")
        other = await agent.submit("refund", {"order": "A-4"}, requested_by="alice")
        await asyncio.to_thread(drain, intake)
        await asyncio.to_thread(decider.approve, rid, Reviewer(user_id="bob"))
        approved = await agent.wait(rid, timeout=10)
        with consuming(intake):
            cancelled = await agent.cancel(other, "never mind")
    assert (Outcome.APPROVED, Outcome.CANCELLED) == (approved.outcome, cancelled.outcome)
    assert [] == denials(admin)
    intake.close()
    service.redis.close()


@pytest.mark.parametrize(
    "command",
    [
        ("SET", "hitl:req:r1", "{}"),
        ("DEL", "hitl:req:r1"),
        ("LPUSH", "hitl:decision:r1", '{"outcome": "approved"}'),
        ("RPUSH", "hitl:decision:r1", '{"outcome": "approved"}'),
        ("XADD", "hitl:audit:{0}", "*", "e", "{}"),
        ("XADD", "hitl:dead", "*", "reason", "x"),
        ("XADD", "hitl:decisions", "*", "decision", "{}"),
        ("XRANGE", "hitl:requests", "-", "+"),
        ("XREAD", "STREAMS", "hitl:requests", "0"),
        ("XREADGROUP", "GROUP", "hitl", "agent", "STREAMS", "hitl:requests", ">"),
        ("GET", "hitl:audit:{0}:head"),
        ("GET", "rq:job:x"),
        ("LPUSH", "rq:queue:hitl", "x"),
        ("HGETALL", "rq:job:x"),
        ("FLUSHALL",),
        ("CONFIG", "GET", "*"),
        ("EVAL", "return 1", "0"),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("LPUSH", "hitl:feedback:x", "{}"),
        ("SET", "hitl:control:agent:a", "{}"),
        ("LRANGE", "hitl:requests", "0", "-1"),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_agent_is_refused_everything_else(
    acl_server: RedisServer, admin: redis.Redis, command: tuple[str, ...]
) -> None:
    """An agent cannot forge, erase, read others' requests, touch jobs or administer Redis."""
    admin.set("hitl:req:r1", "{}")
    agent = connect(acl_server, "agent")
    with pytest.raises(NoPermissionError):
        agent.execute_command(*command)
    assert "{}" == admin.get("hitl:req:r1")
    assert 0 == admin.exists("hitl:decision:r1")
    agent.close()


def _chain_verdict() -> Verdict:
    return Verdict(
        kind=VerdictKind.REVIEW,
        destination=Destination(kind="channel", target="#ops"),
        escalation=CHAIN,
        policy_version="pv-test",
    )


def test_worker_runs_the_escalation_the_service_scheduled(
    acl_server: RedisServer, admin: redis.Redis
) -> None:
    """The service schedules the chain (rq jobs); as hitl-worker, SimpleWorker escalates it."""
    clock = ManualClock(T0)
    service = store_as(acl_server, "service", clock)
    service_ctx = JobContext.build(service, SchedulerConfig(remind_before_s=0))

    def classify(request: ApprovalRequest) -> Verdict:
        return _chain_verdict()

    intake = IntakeConsumer(
        service, classify, block_ms=0, on_stored=service_ctx.scheduler.on_stored
    )
    intake.ensure_group()
    with Client(url=url(acl_server, "agent"), settings=AGENT) as agent:
        rid = agent.submit("restart", {"service": "api"}, requested_by="alice")
    drain(intake)
    assert admin.zcard("rq:scheduled:hitl") >= 1

    worker = store_as(acl_server, "worker", clock)
    ctx = JobContext.build(worker, SchedulerConfig(remind_before_s=0))
    with use_context(ctx):
        clock.advance(600)
        assert 1 <= ctx.scheduler.enqueue_due()
        SimpleWorker([ctx.scheduler.queue], connection=ctx.scheduler.connection).work(burst=True)
    record = worker.get(rid)
    assert (State.PENDING, 1) == (record.state, record.escalation_level)
    assert chain_ok(worker)
    assert [] == denials(admin)
    intake.close()
    for conn in (service.redis, worker.redis, ctx.scheduler.connection):
        conn.close()
    service_ctx.scheduler.connection.close()


def test_auditor_reads_records_and_the_chain_but_writes_nothing(
    acl_server: RedisServer, admin: redis.Redis
) -> None:
    """hitl-auditor verifies the chain and reads records; every write is refused."""
    service = store_as(acl_server, "service")
    intake = IntakeConsumer(service, OpenAuthority().evaluate, block_ms=0)
    intake.ensure_group()
    with Client(url=url(acl_server, "agent"), settings=AGENT) as agent:
        rid = agent.submit("refund", {"order": "A-2"}, requested_by="alice")
    drain(intake)
    auditor = store_as(acl_server, "auditor")
    assert rid == auditor.get(rid).id
    assert chain_ok(auditor)
    assert [rid] == auditor.redis.zrange(auditor.keys.pending, 0, -1)
    assert [] == denials(admin)
    for command in (
        ("SET", f"hitl:req:{rid}", "{}"),
        ("DEL", "hitl:audit:{0}"),
        ("XADD", "hitl:audit:{0}", "*", "e", "{}"),
        ("LPUSH", f"hitl:decision:{rid}", "{}"),
        ("XREADGROUP", "GROUP", "hitl", "auditor", "STREAMS", "hitl:requests", ">"),
        ("FLUSHALL",),
        ("EVAL", "return 1", "0"),
    ):
        with pytest.raises(NoPermissionError):
            auditor.redis.execute_command(*command)
    assert chain_ok(service)
    intake.close()
    service.redis.close()
    auditor.redis.close()
