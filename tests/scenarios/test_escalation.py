"""The default policy's 10 / 20 / 60 minute chain, end to end, with a moved clock.

The agent submits through the SDK, the real intake stores the request, a real rq worker runs
the once-a-second sweep as the clock moves, and the agent blocked in ``wait()`` is answered.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest
import redis
from rq import SimpleWorker

from hitl.client import Client
from hitl.config import Settings
from hitl.errors import AlreadyDecided
from hitl.handlers import Decider
from hitl.jobs import JobContext, use_context
from hitl.models import ApprovalRequest, Destination, Outcome, Reviewer, State, Verdict
from hitl.policies import Policy, default_policy
from hitl.queue.audit import verify_entries
from hitl.queue.intake import IntakeConsumer
from hitl.queue.scheduler import ManualClock, SchedulerConfig, StreamSink
from hitl.queue.store import Store
from tests.scenarios.helpers import audit_entries, audit_kinds, drain, run_in_thread

SATURDAY_NIGHT = datetime.datetime(2030, 1, 5, 22, 0, tzinfo=datetime.UTC).timestamp()
"""After hours: the default policy sends a staging stop to the on-call engineer, with its chain
10m -> oncall:secondary, 20m -> oncall:managers, 60m -> timeout (rejected)."""
ERIN = Reviewer(user_id="erin", display_name="Erin Evans", channel="slack")


class BurstWorker(SimpleWorker):
    """rq's SimpleWorker minus its remote-command pub/sub thread (which takes ~1 s to stop)."""

    def subscribe(self) -> None:
        pass


@pytest.fixture(scope="module")
def policy() -> Policy:
    return default_policy()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SATURDAY_NIGHT)


@pytest.fixture
def store(r: redis.Redis, settings: Settings, clock: ManualClock) -> Store:
    return Store(r, signer=settings.signing_keys(), clock=clock)


@pytest.fixture
def ctx(store: Store) -> Iterator[JobContext]:
    context = JobContext.build(store, SchedulerConfig())
    with use_context(context):
        yield context
    context.scheduler.connection.close()


@pytest.fixture
def intake(store: Store, policy: Policy, ctx: JobContext, clock: ManualClock) -> IntakeConsumer:
    """The real intake, classifying with the default policy at the test's time."""

    def classify(request: ApprovalRequest) -> Verdict:
        return policy.evaluate(request, now=datetime.datetime.fromtimestamp(clock(), datetime.UTC))

    consumer = IntakeConsumer(store, classify, block_ms=0, on_stored=ctx.scheduler.on_stored)
    consumer.ensure_group()
    return consumer


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(settings=settings, agent_id="it-ops-agent") as c:
        yield c


def run_due(ctx: JobContext) -> None:
    ctx.scheduler.enqueue_due()
    BurstWorker([ctx.scheduler.queue], connection=ctx.scheduler.connection).work(burst=True)


def submit(client: Client, intake: IntakeConsumer) -> str:
    rid = client.submit(
        "stop_instance",
        {"instance_id": "i-0stg9", "environment": "staging"},
        summary="Stop staging instance i-0stg9",
        requested_by="alice",
    )
    drain(intake)
    return rid


def notes(ctx: JobContext) -> list[tuple[str, str, Destination | None]]:
    assert isinstance(ctx.sink, StreamSink)
    return [(n.kind, n.key, n.target) for _, n in ctx.sink.read()]


def test_unanswered_request_walks_the_chain_and_expires(
    ctx: JobContext, intake: IntakeConsumer, client: Client, clock: ManualClock, policy: Policy
) -> None:
    """10m: secondary on-call; 20m: managers; 60m: expired, the blocked agent is unblocked."""
    rid = submit(client, intake)
    store = ctx.store
    record = store.get(rid)
    assert [600, 1200, 3600] == [s.after_s for s in record.verdict.escalation]
    assert SATURDAY_NIGHT + 600 == record.deadline
    with run_in_thread(lambda: client.wait(rid, timeout=30)) as agent:
        # each deadline, and the reminder two minutes before it
        for minutes, level in ((8, 0), (10, 1), (18, 1), (20, 2), (58, 2)):
            clock.set(SATURDAY_NIGHT + minutes * 60)
            run_due(ctx)
            assert (level, State.PENDING) == (store.get(rid).escalation_level, store.get(rid).state)
        assert SATURDAY_NIGHT + 3600 == store.get(rid).deadline
        clock.set(SATURDAY_NIGHT + 3600)
        run_due(ctx)
    decision = agent.value
    assert agent.error is None and Outcome.EXPIRED == decision.outcome
    assert not decision.approved and 3600.0 == decision.age_s
    assert State.EXPIRED == store.get(rid).state
    assert [
        ("reminder", f"remind:{rid}:1", Destination(kind="oncall", target="primary")),
        ("escalated", f"esc:{rid}:1", Destination(kind="oncall", target="secondary")),
        ("reminder", f"remind:{rid}:2", Destination(kind="oncall", target="secondary")),
        ("escalated", f"esc:{rid}:2", Destination(kind="oncall", target="managers")),
        ("reminder", f"remind:{rid}:3", Destination(kind="oncall", target="managers")),
        ("expired", f"timeout:{rid}", Destination(kind="user", target="alice")),
    ] == notes(ctx)
    kinds = audit_kinds(store.redis, rid)
    assert ["submitted", "escalated", "escalated", "expired"] == kinds
    events = [f["kinds"] for _, f in store.redis.xrange(store.keys.events)]
    assert ["submitted", "escalated", "escalated", "expired"] == events

    with pytest.raises(AlreadyDecided):
        Decider(store, policy).approve(rid, ERIN)
    late = audit_entries(store.redis)[-1]
    assert ("refused", True) == (late["kind"], late["details"]["late"])
    assert verify_entries(audit_entries(store.redis), store.head()).ok


def test_answer_at_level_two_stops_the_chain(
    ctx: JobContext, intake: IntakeConsumer, client: Client, clock: ManualClock, policy: Policy
) -> None:
    """Erin approves after the second escalation: the timeout job later changes nothing."""
    rid = submit(client, intake)
    store = ctx.store
    clock.set(SATURDAY_NIGHT + 1200)
    run_due(ctx)
    assert 2 == store.get(rid).escalation_level
    with run_in_thread(lambda: client.wait(rid, timeout=30)) as agent:
        Decider(store, policy).approve(rid, ERIN, "checked: the job is stuck")
    assert agent.value.approved
    head = store.head()
    sent = notes(ctx)
    clock.set(SATURDAY_NIGHT + 7200)
    run_due(ctx)
    assert head == store.head(), "a job acted after the decision"
    assert sent == notes(ctx)
    assert State.APPROVED == store.get(rid).state
    finished = ctx.scheduler.queue.finished_job_registry.get_job_ids()
    assert f"hitl-sweep-{int(SATURDAY_NIGHT) + 1201}" in finished, "no sweep ran after the decision"


def test_restarted_worker_loses_no_escalation(
    ctx: JobContext, intake: IntakeConsumer, client: Client, clock: ManualClock, store: Store
) -> None:
    """Jobs live in Redis: a worker (and a scheduler object) built afresh runs them."""
    rid = submit(client, intake)
    clock.set(SATURDAY_NIGHT + 600)
    fresh = JobContext.build(store, SchedulerConfig())  # a new process: new objects, new pools
    with use_context(fresh):
        run_due(fresh)
    assert 1 == store.get(rid).escalation_level
    fresh.scheduler.connection.close()
