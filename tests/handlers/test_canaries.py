"""Canary requests through ``hitl serve``'s intake: sent at the policy's rate among real requests,
indistinguishable on the card and in the API, marked in the audit log, never delivered to any
agent, and counted in each reviewer's catch rate."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hitl.bot.cards import card_view
from hitl.config import Settings
from hitl.errors import ConfigError
from hitl.handlers.canaries import catches
from hitl.handlers.metrics import stats
from hitl.models import Reviewer, State
from hitl.policies import DEFAULT_PATH, load_policy
from hitl.queue.keys import Keys
from hitl.queue.store import Store
from hitl.service import Service
from tests.scenarios.helpers import audit_entries, wait_until, xadd_raw

GOVERNANCE = """
governance:
  canary:
    rate: 0.5
    requests:
      - action: refund
        params: {order_id: "A-7731", amount: 900}
        summary: "Refund $900 for order A-7731"
        reasoning: "The customer says the parcel never arrived."
        agent_id: support-bot
        requested_by: support-user
"""
BOB = Reviewer(user_id="bob", display_name="Bob Brown", channel="web")
FRANK = Reviewer(user_id="frank", display_name="Frank Foster", channel="slack")


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(Path(DEFAULT_PATH).read_text() + GOVERNANCE)
    return path


@pytest.fixture
def served(settings: Settings, store: Store, policy_file: Path) -> Iterator[Service]:
    """The service with the canary policy, its intake running, a seeded coin (0.13 < 0.5)."""
    service = Service(settings.model_copy(update={"policy_path": str(policy_file)}), store=store)
    service.canaries.rng = random.Random(1)
    service.start_intake()
    yield service
    service.stop_intake()
    for consumer in service.consumers:
        consumer.close()


def _canary(r: redis.Redis) -> str:
    return wait_until(lambda: next(iter(r.smembers(Keys().canaries)), None), what="a canary")


def test_a_canary_follows_a_real_request_and_looks_like_one(
    served: Service, store: Store, r: redis.Redis
) -> None:
    """After a real refund that needs a human, a canary is queued through the intake: stored,
    routed and shown like any request; only the audit log (without its id as request) says."""
    xadd_raw(
        r, '{"id": "real-1", "action": "refund", "params": {"order_id": "A-1", "amount": 250}}'
    )
    rid = _canary(r)
    record = wait_until(lambda: store.find(rid), what="the canary stored")
    view = card_view(record)
    assert (State.PENDING, "refund", "support-bot", "Refund $900 for order A-7731") == (
        record.state,
        view.action,
        view.agent_id,
        view.title,
    )
    assert "canary" not in record.model_dump_json()
    created = [e for e in audit_entries(r) if e["kind"] == "canary_created"]
    assert [(None, rid)] == [(e["request_id"], e["details"]["canary"]) for e in created]
    assert all(e["kind"] != "canary_created" for e in audit_entries(r) if e["request_id"] == rid)


def test_a_canary_decision_reaches_no_agent(served: Service, store: Store, r: redis.Redis) -> None:
    """Approving a canary records and audits the decision but delivers it nowhere: no list for
    a blocked agent, nothing on the decision stream; the reviewer's catch rate shows the miss."""
    xadd_raw(
        r, '{"id": "real-1", "action": "refund", "params": {"order_id": "A-1", "amount": 250}}'
    )
    rid = _canary(r)
    wait_until(lambda: store.find(rid), what="the canary stored")
    result = served.decider.approve(rid, BOB)
    assert result.decision is not None and result.decision.approved
    assert (0, 0) == (r.exists(Keys().decision(rid)), r.xlen(Keys().decisions))
    approved = [e for e in audit_entries(r) if e["request_id"] == rid and e["kind"] == "approved"]
    assert [[]] == [e["details"]["delivered_to"] for e in approved]
    served.decider.approve("real-1", FRANK)
    assert 1 == r.xlen(Keys().decisions)  # a real decision is delivered as always
    assert {"bob": (1, 0)} == {k: (c.answered, c.caught) for k, c in catches(store).items()}
    figures = {f["reviewer"]: f for f in stats(store)["reviewers"]}
    assert (1, 0, 0.0) == (
        figures["bob"]["canaries"],
        figures["bob"]["canaries_caught"],
        figures["bob"]["canary_catch_rate"],
    )
    assert 1 == stats(store)["decisions"]  # the canary is in no other figure


def test_a_rejected_canary_is_caught(served: Service, store: Store, r: redis.Redis) -> None:
    """Rejecting a canary counts as a catch."""
    xadd_raw(
        r, '{"id": "real-1", "action": "refund", "params": {"order_id": "A-1", "amount": 250}}'
    )
    rid = _canary(r)
    wait_until(lambda: store.find(rid), what="the canary stored")
    served.decider.reject(rid, FRANK, "no proof of non-delivery")
    assert {"frank": (1, 1)} == {k: (c.answered, c.caught) for k, c in catches(store).items()}


def test_canary_templates_are_checked_at_load(tmp_path: Path) -> None:
    """A template with an id, or one that is not a valid request, is a policy error."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        Path(DEFAULT_PATH).read_text()
        + "governance:\n  canary:\n    rate: 0.1\n    requests:\n      - {id: x, action: refund}\n"
    )
    with pytest.raises(ConfigError, match="leave out id"):
        load_policy(path)


def test_a_bad_governance_interval_is_a_clear_error(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HITL_GOVERNANCE_S must be seconds: the service says so instead of starting."""
    monkeypatch.setenv("HITL_GOVERNANCE_S", "soon")
    with pytest.raises(ConfigError, match="HITL_GOVERNANCE_S must be seconds"):
        Service(settings, store=store)
