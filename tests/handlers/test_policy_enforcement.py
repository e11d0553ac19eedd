"""The shipped policy enforced through the handlers against a real Redis (issue 3, item 5)."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from hitl import jobs
from hitl.errors import AlreadyDecided, InvalidRequest, NotAuthorized
from hitl.handlers import Decider
from hitl.handlers.breakglass import acknowledge, break_glass, overdue
from hitl.jobs import JobContext, use_context
from hitl.models import ApprovalRequest, Outcome, Reviewer, State, Verdict
from hitl.policies import Policy, default_policy, parse_policy
from hitl.queue.audit import verify_entries
from hitl.queue.intake import IntakeConsumer
from hitl.queue.scheduler import StreamSink
from hitl.queue.store import Store
from tests.scenarios.helpers import audit_entries, audit_kinds

# A Wednesday at 11:00 in the policy's time zone: business hours.
WEDNESDAY_11 = datetime.datetime(2026, 11, 25, 11, 0, tzinfo=datetime.UTC)


# The same Wednesday at 23:00 UTC (the shipped policy's zone): after hours.
WEDNESDAY_23 = datetime.datetime(2026, 11, 25, 23, 0, tzinfo=datetime.UTC)


class Clock:
    def __init__(self, now: float = WEDNESDAY_11.timestamp()) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def policy() -> Policy:
    return default_policy()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pstore(r: redis.Redis, store: Store, clock: Clock) -> Store:
    """The test store, on a clock the test moves."""
    store.clock = clock
    return store


@pytest.fixture
def consumer(pstore: Store, policy: Policy) -> Iterator[IntakeConsumer]:
    """An intake that classifies with the shipped policy at the test clock's time."""

    def classify(request: ApprovalRequest) -> Verdict:
        now = datetime.datetime.fromtimestamp(pstore.clock(), datetime.UTC)
        return policy.evaluate(request, now=now)

    c = IntakeConsumer(pstore, classify, block_ms=0)
    c.ensure_group()
    yield c
    c.close()


@pytest.fixture
def decider(pstore: Store, policy: Policy) -> Decider:
    return Decider(pstore, policy)


def person(user_id: str, policy: Policy) -> Reviewer:
    entry = policy.reviewer(user_id)
    return Reviewer(user_id=user_id, display_name=entry.display_name if entry else "")


def submit(r: redis.Redis, consumer: IntakeConsumer, rid: str, action: str, **kw: Any) -> str:
    body = {"id": rid, "action": action, "requested_by": "alice", **kw}
    r.xadd("hitl:requests", {"request": json.dumps(body)})
    consumer.run_once(block_ms=0)
    return rid


def chain_ok(r: redis.Redis, store: Store) -> bool:
    entries = audit_entries(r)
    return verify_entries(entries, store.head()).ok


def refusals(r: redis.Redis) -> list[dict[str, Any]]:
    entries = audit_entries(r)
    return [e for e in entries if e["kind"] == "refused"]


CASES = [
    # (action, params, approver that may decide, someone who may not)
    ("stop_instance", {"instance_id": "i-1", "environment": "production"}, "bob", "carol"),
    ("modify_security_group", {"group_id": "sg-1", "rule": "10.0.0.0/8:443"}, "erin", "bob"),
    ("refund", {"order_id": "A-1", "amount": 250.0}, "bob", "erin"),
]


@pytest.mark.parametrize(("action", "params", "allowed", "denied"), CASES)
def test_only_the_routed_role_decides(
    r: redis.Redis,
    consumer: IntakeConsumer,
    decider: Decider,
    pstore: Store,
    policy: Policy,
    action: str,
    params: dict[str, Any],
    allowed: str,
    denied: str,
) -> None:
    """A reviewer without the rule's role is refused and audited; one with it decides."""
    rid = submit(r, consumer, f"r-{action}", action, params=params)
    with pytest.raises(NotAuthorized):
        decider.approve(rid, person(denied, policy))
    assert pstore.get(rid).state == State.PENDING
    result = decider.approve(rid, person(allowed, policy))
    assert result.decision is not None
    assert result.decision.outcome == Outcome.APPROVED
    assert [denied] == [e["actor"] for e in refusals(r)]
    assert chain_ok(r, pstore)


def test_requester_cannot_approve_even_with_the_role(
    r: redis.Redis, consumer: IntakeConsumer, decider: Decider, pstore: Store, policy: Policy
) -> None:
    """bob holds the manager role but asked for the refund himself: refused (self-approval)."""
    rid = submit(r, consumer, "r-self", "refund", params={"order_id": "A", "amount": 500.0})
    pstore.update(rid, lambda rec: _set_requester(rec, "U0BOB"))
    with pytest.raises(NotAuthorized) as err:
        decider.approve(rid, person("bob", policy))
    assert "cannot approve" in str(err.value) or "self" in str(err.value)
    assert pstore.get(rid).state == State.PENDING


# Every way the agent could write "bob" in requested_by (the reproduced defect), and every id
# bob could click under: none of the pairs may approve.
BOB_SPELLINGS = [" bob", "bob ", "bob\u200b", "ＢＯＢ", "Bob Brown", " bob  brown ", "U0BOB\u2060"]
BOB_CLICKS_AS = ["bob", "U0BOB", "bob@example.com"]


@pytest.mark.parametrize("clicks_as", BOB_CLICKS_AS)
@pytest.mark.parametrize("requested_by", BOB_SPELLINGS)
def test_requester_spelled_any_way_cannot_approve(
    r: redis.Redis,
    consumer: IntakeConsumer,
    decider: Decider,
    pstore: Store,
    policy: Policy,
    requested_by: str,
    clicks_as: str,
) -> None:
    """bob is refused his own refund however the agent spelled him, from any of his ids."""
    rid = submit(
        r,
        consumer,
        "r-self",
        "refund",
        params={"order_id": "A", "amount": 500.0},
        requested_by=requested_by,
    )
    with pytest.raises(NotAuthorized, match="no self-approval"):
        decider.approve(rid, person(clicks_as, policy))
    assert (State.PENDING, []) == (pstore.get(rid).state, pstore.get(rid).votes)
    assert [clicks_as] == [e["actor"] for e in refusals(r)]
    done = decider.approve(rid, person("frank", policy))  # compliance includes manager
    assert done.decision is not None and Outcome.APPROVED == done.decision.outcome


IDENTITY_POLICY = parse_policy(
    """
tools: {refund: high, wire: critical}
risk_levels:
  low: {policy: autonomous}
  medium: {policy: mandatory}
  high: {policy: mandatory, roles: [manager]}
  critical: {policy: mandatory, approvals: 2}
reviewers:
  - {id: alice, display_name: Alice Adams, slack_id: U0ALICE, roles: [manager]}
  - {id: sam1, display_name: Sam Lee, slack_id: U0SAM1, email: sam1@example.com, roles: [manager]}
  - {id: sam2, display_name: " SAM  LEE", slack_id: U0SAM2, roles: [manager]}
  - {id: pat, display_name: Pat Park, slack_id: U0PAT, roles: [manager]}
""",
    source="identity.yaml",
)


@pytest.mark.parametrize("policy", [IDENTITY_POLICY])
def test_two_person_rule_counts_spellings_of_alice_once(
    r: redis.Redis, consumer: IntakeConsumer, decider: Decider, pstore: Store, policy: Policy
) -> None:
    """alice, then " Alice\u200b", is one approver, not two; pat completes the quorum."""
    rid = submit(r, consumer, "r-wire", "wire", requested_by="zed")
    decider.approve(rid, Reviewer(user_id="alice"))
    with pytest.raises(NotAuthorized, match="already voted"):
        decider.approve(rid, Reviewer(user_id=" Alice\u200b"))
    assert (State.PENDING, 1) == (pstore.get(rid).state, len(pstore.get(rid).votes))
    done = decider.approve(rid, Reviewer(user_id="U0PAT"))
    assert done.decision is not None
    assert ["alice", "U0PAT"] == [rv.user_id for rv in done.decision.reviewers]


@pytest.mark.parametrize("policy", [IDENTITY_POLICY])
@pytest.mark.parametrize("clicks_as", ["sam1", "U0SAM1", "sam1@example.com", "sam2", "U0SAM2"])
def test_a_shared_display_name_excludes_everyone_who_has_it(
    r: redis.Redis,
    consumer: IntakeConsumer,
    decider: Decider,
    pstore: Store,
    policy: Policy,
    clicks_as: str,
) -> None:
    """requested_by "sam lee" could be either Sam, so neither may approve; pat may."""
    rid = submit(r, consumer, "r-sam", "refund", requested_by="sam lee")
    with pytest.raises(NotAuthorized, match="no self-approval"):
        decider.approve(rid, Reviewer(user_id=clicks_as))
    assert State.PENDING == pstore.get(rid).state
    done = decider.approve(rid, Reviewer(user_id="pat"))
    assert done.decision is not None and Outcome.APPROVED == done.decision.outcome


@pytest.mark.parametrize("policy", [IDENTITY_POLICY])
def test_a_shared_display_name_authorizes_nobody(
    r: redis.Redis, consumer: IntakeConsumer, decider: Decider, pstore: Store, policy: Policy
) -> None:
    """Acting as "Sam Lee" names no one person, so it is refused as a stranger; "Pat Park" works."""
    rid = submit(r, consumer, "r-who", "refund", requested_by="zed")
    with pytest.raises(NotAuthorized, match="not in the policy's reviewer directory"):
        decider.approve(rid, Reviewer(user_id="Sam Lee"))
    done = decider.approve(rid, Reviewer(user_id="pat park"))
    assert done.decision is not None and ["pat park"] == [
        rv.user_id for rv in done.decision.reviewers
    ]


def _set_requester(record: Any, who: str) -> Any:
    from hitl.queue.store import Change

    request = record.request.model_copy(update={"requested_by": who})
    return Change(record=record.model_copy(update={"request": request}))


def test_two_person_rule_with_distinct_roles(
    r: redis.Redis, consumer: IntakeConsumer, decider: Decider, pstore: Store, policy: Policy
) -> None:
    """delete_volume needs security AND lead_engineer from two people; a repeat vote is refused."""
    rid = submit(r, consumer, "r-del", "delete_volume", params={"volume_id": "vol-1"})
    first = decider.approve(rid, person("carol", policy))
    assert first.decision is None
    assert "1 of 2 approvals" in first.message
    with pytest.raises(NotAuthorized):
        decider.approve(rid, person("carol", policy))
    with pytest.raises(NotAuthorized):  # a second security-only person does not cover lead_engineer
        decider.approve(rid, person("erin", policy))
    done = decider.approve(rid, person("dave", policy))
    assert done.decision is not None
    assert [rv.user_id for rv in done.decision.reviewers] == ["carol", "dave"]
    assert {"security", "lead_engineer"} == {rv.role for rv in done.decision.reviewers}
    with pytest.raises(AlreadyDecided) as late:
        decider.approve(rid, person("bob", policy))
    assert "Dave" in str(late.value)
    assert chain_ok(r, pstore)


def test_modify_raising_the_risk_voids_votes_and_reroutes(
    r: redis.Redis, consumer: IntakeConsumer, decider: Decider, pstore: Store, policy: Policy
) -> None:
    """A modified refund is validated by its schema; within the same rule the approval counts."""
    rid = submit(
        r,
        consumer,
        "r-mod",
        "refund",
        params={"order_id": "A-9", "amount": 150.0},
        param_schema={
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
        },
    )
    before = pstore.get(rid).verdict
    with pytest.raises(InvalidRequest) as bad:
        decider.modify(rid, person("bob", policy), {"amount": "lots"})
    assert "amount" in str(bad.value)
    result = decider.modify(rid, person("bob", policy), {"amount": 120.0})
    assert result.decision is not None
    assert result.decision.params == {"order_id": "A-9", "amount": 120.0}
    assert result.decision.modified
    assert before.rule == result.record.verdict.rule


def test_modify_into_a_stricter_rule_restarts_review(
    r: redis.Redis,
    consumer: IntakeConsumer,
    decider: Decider,
    pstore: Store,
    policy: Policy,
    clock: Clock,
) -> None:
    """A staging stop after hours (on-call) modified to production: votes void, manager review."""
    clock.now = WEDNESDAY_23.timestamp()
    params = {"instance_id": "i-9", "environment": "staging"}
    rid = submit(r, consumer, "r-up", "stop_instance", params=params)
    record = pstore.get(rid)
    assert record.state == State.PENDING
    assert record.verdict.risk.value == "medium"
    result = decider.modify(rid, person("bob", policy), {"environment": "production"})
    after = result.record
    assert after.state == State.PENDING
    assert after.verdict.risk.value == "high"
    assert after.verdict.rule != record.verdict.rule
    assert after.votes == []
    assert after.params["environment"] == "production"
    kinds = audit_kinds(r)
    assert "review_restarted" in kinds


def test_break_glass_then_acknowledged(
    r: redis.Redis,
    consumer: IntakeConsumer,
    decider: Decider,
    pstore: Store,
    policy: Policy,
    clock: Clock,
) -> None:
    """bob breaks glass alone (loudly audited); frank acknowledges; nothing is overdue."""
    rid = submit(r, consumer, "r-bg", "delete_volume", params={"volume_id": "vol-9"})
    with pytest.raises(NotAuthorized):
        break_glass(decider, rid, person("erin", policy), "it is urgent")
    result = break_glass(decider, rid, person("bob", policy), "disk full, prod down")
    assert result.decision is not None
    assert result.decision.outcome == Outcome.APPROVED
    assert result.decision.reason.startswith("BREAK-GLASS")
    with pytest.raises(NotAuthorized):
        acknowledge(decider, rid, person("bob", policy))
    record = acknowledge(decider, rid, person("frank", policy))
    assert record.break_glass is not None and record.break_glass.acked_by is not None
    clock.now += 24 * 3600
    assert overdue(decider) == []
    assert chain_ok(r, pstore)


def test_the_worker_tick_raises_the_break_glass_alert(
    r: redis.Redis,
    consumer: IntakeConsumer,
    decider: Decider,
    pstore: Store,
    policy: Policy,
    clock: Clock,
) -> None:
    """A break-glass approval nobody acknowledges in time: the worker's periodic tick audits it
    as overdue and announces it, exactly once."""
    rid = submit(r, consumer, "r-bg3", "delete_volume", params={"volume_id": "vol-7"})
    break_glass(decider, rid, person("bob", policy), "disk full")
    with use_context(JobContext.build(pstore)):
        assert 0 == jobs.tick_job()["break_glass_overdue"]
        clock.now += (policy.ack_window_s or 0) + 1
        assert 1 == jobs.tick_job()["break_glass_overdue"]
        assert 0 == jobs.tick_job()["break_glass_overdue"]
    alerts = [n for _, n in StreamSink(pstore).read() if n.kind == "alert"]
    assert [rid] == [n.request_id for n in alerts]
    kinds = audit_kinds(r)
    assert 1 == kinds.count("break_glass_unacknowledged")


def test_a_late_answer_expires_the_request_even_without_a_worker(
    r: redis.Redis,
    consumer: IntakeConsumer,
    decider: Decider,
    pstore: Store,
    policy: Policy,
    clock: Clock,
) -> None:
    """Past the chain's end, an approval is refused as late and the request expires on the spot."""
    rid = submit(
        r,
        consumer,
        "r-late",
        "stop_instance",
        params={"instance_id": "i", "environment": "production"},
        timeout_s=60,
    )
    clock.now += 61
    with pytest.raises(AlreadyDecided) as late:
        decider.approve(rid, person("bob", policy))
    assert "expired" in str(late.value)
    record = pstore.get(rid)
    assert (State.EXPIRED, Outcome.EXPIRED) == (
        record.state,
        record.decision and record.decision.outcome,
    )
    decision = json.loads(r.lpop(f"hitl:decision:{rid}") or "{}")
    assert "expired" == decision["outcome"]
    refused = refusals(r)[-1]
    assert (True, "bob") == (refused["details"].get("late"), refused["actor"])
    assert chain_ok(r, pstore)
