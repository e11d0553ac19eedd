"""Digests end to end: 25 low-urgency requests, one message, one click, 25 decisions.

The policy is the shipped default plus one digest rule (goodwill credits are batched); agents
submit through the SDK, the real intake stores and folds, a real rq worker posts the digest, and
"Approve all" goes through the policy's authorization for each of the 25 requests.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker

from hitl.client import Client
from hitl.config import Settings
from hitl.handlers import Decider
from hitl.handlers.batch import decide_digest
from hitl.jobs import JobContext, use_context
from hitl.models import (
    ApprovalRequest,
    Decision,
    Destination,
    RequestRecord,
    Reviewer,
    State,
    Verdict,
)
from hitl.policies import DEFAULT_PATH, Policy, parse_policy
from hitl.queue.digest import Digest
from hitl.queue.intake import IntakeConsumer
from hitl.queue.scheduler import ManualClock, Notification, SchedulerConfig, StreamSink
from hitl.queue.store import Store
from tests.conftest import keyring_file
from tests.scenarios.helpers import audit_entries, drain

T0 = datetime.datetime(2030, 1, 8, 10, 0, tzinfo=datetime.UTC).timestamp()
SUPPORT = "channel:#support-approvals"
DIGEST_RULE = """
  - name: goodwill-credits
    reason: Small goodwill credits are reviewed in batches, not one card each.
    action: issue_credit
    policy: mandatory
    roles: [standard]
    destination: channel:#support-approvals
    digest: true
"""
ALICE = Reviewer(user_id="alice", display_name="Alice Adams", channel="slack")
MALLORY = Reviewer(user_id="mallory", channel="slack")


class BurstWorker(SimpleWorker):
    """rq's SimpleWorker minus its remote-command pub/sub thread (which takes ~1 s to stop)."""

    def subscribe(self) -> None:
        pass


@pytest.fixture(scope="module")
def policy() -> Policy:
    text = DEFAULT_PATH.read_text().replace("\nrules:\n", "\nrules:\n" + DIGEST_RULE, 1)
    text = text.replace("\ntools:\n", "\ntools:\n  issue_credit: medium\n", 1)
    return parse_policy(text, source="default+digest")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(r: redis.Redis, settings: Settings, clock: ManualClock) -> Store:
    return Store(r, signer=settings.signing_keys(), clock=clock)


@pytest.fixture
def ctx(store: Store) -> Iterator[JobContext]:
    context = JobContext.build(store, SchedulerConfig(digest_wait_s=300))
    with use_context(context):
        yield context
    context.scheduler.connection.close()


class Cards:
    """What the channel adapter would post: the records on_stored hands back."""

    def __init__(self) -> None:
        self.posted: list[RequestRecord] = []


@pytest.fixture
def cards() -> Cards:
    return Cards()


@pytest.fixture
def intake(store: Store, policy: Policy, ctx: JobContext, cards: Cards) -> IntakeConsumer:
    def classify(request: ApprovalRequest) -> Verdict:
        now = datetime.datetime.fromtimestamp(store.clock(), datetime.UTC)
        return policy.evaluate(request, now=now)

    def on_stored(records: list[RequestRecord]) -> None:
        cards.posted += ctx.scheduler.on_stored(records)

    consumer = IntakeConsumer(store, classify, block_ms=0, on_stored=on_stored)
    consumer.ensure_group()
    return consumer


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(settings=settings, agent_id="support-bot") as c:
        yield c


def run_due(ctx: JobContext) -> None:
    ctx.scheduler.enqueue_due()
    BurstWorker([ctx.scheduler.queue], connection=ctx.scheduler.connection).work(burst=True)


def submit_credits(client: Client, intake: IntakeConsumer, n: int = 25) -> list[str]:
    ids = [
        client.submit(
            "issue_credit",
            {"customer": f"C-{i}", "amount": 5 + i},
            summary=f"Goodwill credit ${5 + i} for customer C-{i}",
            requested_by="dave",
        )
        for i in range(n)
    ]
    drain(intake)
    return ids


def digests_sent(ctx: JobContext) -> list[Notification]:
    assert isinstance(ctx.sink, StreamSink)
    return [n for _, n in ctx.sink.read() if n.kind == "digest"]


def post_digest(ctx: JobContext, clock: ManualClock) -> Digest:
    clock.advance(300)
    run_due(ctx)
    (note,) = digests_sent(ctx)
    return Digest.model_validate(note.data["digest"])


def test_25_requests_make_one_digest_not_25_cards(
    ctx: JobContext, intake: IntakeConsumer, client: Client, clock: ManualClock, cards: Cards
) -> None:
    """No card is posted; after the digest wait, one message lists all 25."""
    ids = submit_credits(client, intake)
    assert all(ctx.store.get(i).verdict.digest for i in ids)
    assert [] == cards.posted
    clock.advance(299)
    run_due(ctx)
    assert [] == digests_sent(ctx)
    clock.advance(1)
    run_due(ctx)
    (note,) = digests_sent(ctx)
    digest = Digest.model_validate(note.data["digest"])
    assert sorted(ids) == sorted(digest.request_ids)
    assert (Destination(kind="channel", target="#support-approvals"), SUPPORT) == (
        note.target,
        digest.dest,
    )
    assert "Approve all 25" in note.text and "Reject all" in note.text
    assert "Goodwill credit $5 for customer C-0" in note.text
    clock.advance(3600)
    run_due(ctx)
    assert 1 == len(digests_sent(ctx)), "the same requests were posted twice"
    assert [] == cards.posted


def test_approve_all_is_25_decisions_and_25_unblocked_agents(
    ctx: JobContext,
    intake: IntakeConsumer,
    client: Client,
    clock: ManualClock,
    policy: Policy,
    store: Store,
) -> None:
    """One click: 25 authorized decisions, 25 audit entries, 25 agents unblocked."""
    ids = submit_credits(client, intake)
    digest = post_digest(ctx, clock)
    answers: dict[str, Decision] = {}

    def agent(rid: str) -> None:
        answers[rid] = client.wait(rid, timeout=30)

    agents = [threading.Thread(target=agent, args=(rid,)) for rid in ids]
    for t in agents:
        t.start()
    batch = decide_digest(Decider(store, policy), ctx.digests, digest.id, ALICE, approve=True)
    for t in agents:
        t.join(30)
    assert 25 == len(batch.decided) and "25 approved" == batch.message
    assert sorted(ids) == sorted(answers)
    assert all(d.approved and d.reviewers[0].user_id == "alice" for d in answers.values())
    approved = [e for e in audit_entries(store.redis) if e["kind"] == "approved"]
    assert sorted(ids) == sorted(e["request_id"] for e in approved)
    assert all(store.get(i).state is State.APPROVED for i in ids)


def test_unauthorized_approve_all_decides_nothing(
    ctx: JobContext,
    intake: IntakeConsumer,
    client: Client,
    clock: ManualClock,
    policy: Policy,
    store: Store,
) -> None:
    """Someone outside the reviewer directory clicks "Approve all": 25 refusals, 0 decisions."""
    ids = submit_credits(client, intake)
    digest = post_digest(ctx, clock)
    batch = decide_digest(Decider(store, policy), ctx.digests, digest.id, MALLORY, approve=True)
    assert [] == batch.decided and 25 == len(batch.refused)
    assert all(store.get(i).state is State.PENDING for i in ids)
    assert 0 == sum(store.redis.llen(store.keys.decision(i)) for i in ids)
    refused = [e for e in audit_entries(store.redis) if e["kind"] == "refused"]
    assert sorted(ids) == sorted(e["request_id"] for e in refused)
    assert not [e for e in audit_entries(store.redis) if e["kind"] in ("vote", "approved")]


@pytest.mark.slow
def test_two_workers_running_the_digest_job_post_one_digest(
    intake: IntakeConsumer, client: Client, r: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    """Two `rq worker` processes run the digest job for the same channel at once: one digest."""
    ids = submit_credits(client, intake)
    raw = redis.Redis.from_url(str(settings.redis_url))
    queue = Queue("hitl", connection=raw)
    for _ in range(4):
        queue.enqueue("hitl.jobs.digest_job", SUPPORT)
    env = {
        **os.environ,
        "HITL_REDIS_URL": str(settings.redis_url),
        "HITL_SIGNING_KEY_FILE": str(keyring_file(tmp_path)),
        "HITL_DATA_DIR": str(settings.data_dir),
    }
    rq = str(Path(sys.executable).with_name("rq"))
    procs = []
    for n in range(2):
        with open(tmp_path / f"worker-{n}.log", "wb") as log:
            cmd = [rq, "worker", "--burst", "--url", str(settings.redis_url), "hitl"]
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=log))
    for proc in procs:
        assert 0 == proc.wait(60)
    notes = [f for _, f in r.xrange("hitl:notify") if f["kind"] == "digest"]
    assert 1 == len(notes)
    digest = Digest.model_validate(json.loads(notes[0]["data"])["digest"])
    assert sorted(ids) == sorted(digest.request_ids)
    raw.close()
