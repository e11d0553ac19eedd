"""Every row of the article's risk table and IT-operations case study, end to end on a real Redis.

Each request goes through the intake (classified by the shipped policy at a fixed time), then
through the handlers: auto rows must be decided without anyone; review rows must refuse the wrong
reviewer (audited) and be decided by the right one(s).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from hitl.errors import NotAuthorized
from hitl.handlers import Decider
from hitl.models import ApprovalRequest, Outcome, Reviewer, State, Verdict
from hitl.policies import Policy, default_policy
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.scenarios.helpers import audit_kinds

WEDNESDAY_11 = datetime.datetime(2026, 11, 25, 11, 0, tzinfo=datetime.UTC)
WEDNESDAY_23 = datetime.datetime(2026, 11, 25, 23, 0, tzinfo=datetime.UTC)
REQUESTER = "U0CUSTOMER"

# (row, action, params, confidence, at, outcome, refused reviewer, deciding reviewers)
ROWS: list[tuple[str, str, dict[str, Any], float, datetime.datetime, str, str, list[str]]] = [
    ("risk low", "search_database", {"q": "orders"}, 0.8, WEDNESDAY_11, "auto_approved", "", []),
    ("risk medium, sure", "create_draft_email", {"to": "a@b.c"}, 0.95, WEDNESDAY_11,
     "auto_approved", "", []),
    ("risk medium, unsure", "update_task_status", {"task": "T-1"}, 0.7, WEDNESDAY_11,
     "approved", "", ["alice"]),
    ("risk high", "delete_production_data", {"table": "orders"}, 0.99, WEDNESDAY_11,
     "approved", "alice", ["bob"]),
    ("risk critical", "deploy_to_production", {"version": "1.2.3"}, 0.99, WEDNESDAY_11,
     "approved", "alice", ["bob", "frank"]),
    ("refund <= $100", "refund", {"order_id": "A", "amount": 80.0}, 0.9, WEDNESDAY_11,
     "auto_approved", "", []),
    ("refund > $100", "refund", {"order_id": "A", "amount": 180.0}, 0.9, WEDNESDAY_11,
     "approved", "alice", ["bob"]),
    ("list_instances", "list_instances", {"region": "eu"}, 0.5, WEDNESDAY_11,
     "auto_approved", "", []),
    ("stop dev", "stop_instance", {"instance_id": "i", "environment": "dev"}, 0.6, WEDNESDAY_11,
     "auto_approved", "", []),
    ("stop staging in hours", "stop_instance", {"instance_id": "i", "environment": "staging"},
     0.8, WEDNESDAY_11, "auto_approved", "", []),
    ("stop staging after hours", "stop_instance",
     {"instance_id": "i", "environment": "staging"}, 0.8, WEDNESDAY_23, "approved", "alice",
     ["<oncall:primary>"]),
    ("stop production", "stop_instance", {"instance_id": "i", "environment": "production"}, 0.99,
     WEDNESDAY_11, "approved", "carol", ["bob"]),
    ("delete_volume", "delete_volume", {"volume_id": "v"}, 0.99, WEDNESDAY_11, "approved", "bob",
     ["carol", "dave"]),
    ("modify_security_group", "modify_security_group", {"group_id": "sg"}, 0.99, WEDNESDAY_11,
     "approved", "bob", ["erin"]),
]  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = WEDNESDAY_11.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def policy() -> Policy:
    return default_policy()


@pytest.fixture
def clock(store: Store) -> Clock:
    c = Clock()
    store.clock = c
    return c


@pytest.fixture
def consumer(store: Store, policy: Policy, clock: Clock) -> Iterator[IntakeConsumer]:
    def classify(request: ApprovalRequest) -> Verdict:
        return policy.evaluate(request, now=datetime.datetime.fromtimestamp(clock(), datetime.UTC))

    c = IntakeConsumer(store, classify, block_ms=0)
    c.ensure_group()
    yield c
    c.close()


@pytest.mark.parametrize(
    ("row", "action", "params", "confidence", "at", "outcome", "refused", "deciders"),
    ROWS,
    ids=[row[0] for row in ROWS],
)
def test_row(
    r: redis.Redis,
    store: Store,
    policy: Policy,
    clock: Clock,
    consumer: IntakeConsumer,
    row: str,
    action: str,
    params: dict[str, Any],
    confidence: float,
    at: datetime.datetime,
    outcome: str,
    refused: str,
    deciders: list[str],
) -> None:
    """The row's policy holds through intake and handlers, and the audit chain records it."""
    clock.now = at.timestamp()
    body = {
        "id": "r-1",
        "action": action,
        "params": params,
        "confidence": confidence,
        "requested_by": REQUESTER,
    }
    r.xadd("hitl:requests", {"request": json.dumps(body)})
    consumer.run_once(block_ms=0)
    decider = Decider(store, policy)
    if refused:
        with pytest.raises(NotAuthorized):
            decider.approve("r-1", Reviewer(user_id=refused))
    for who in deciders:
        if who == "<oncall:primary>":
            who = policy.oncall("primary", at) or ""
        assert store.get("r-1").state is State.PENDING, f"{row}: decided before {who}"
        decider.approve("r-1", Reviewer(user_id=who))
    record = store.get("r-1")
    assert record.decision is not None, f"{row}: still pending after {deciders}"
    assert Outcome(outcome) == record.decision.outcome
    assert len(deciders) == len(record.decision.reviewers)
    kinds = audit_kinds(r)
    assert ("refused" in kinds) == bool(refused)
