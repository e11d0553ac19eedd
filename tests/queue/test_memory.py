"""Bounded memory: what a decided request costs in Redis (MEMORY USAGE of its own keys), how
long a decided record is kept, and the caps of the streams hitl writes."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from hitl.client import Client
from hitl.config import Settings
from hitl.errors import ConfigError
from hitl.handlers import Decider, OpenAuthority
from hitl.models import Reviewer, State
from hitl.queue import store as store_module
from hitl.queue.audit import verify_entries
from hitl.queue.intake import IntakeConsumer
from hitl.queue.memory import measure, used_memory
from hitl.queue.store import Store, record_json
from tests.scenarios.helpers import audit_entries, drain, wait_until, xadd_raw

MAX_BYTES_PER_DECIDED_REQUEST = 2048


def _bench_request(i: int, **fields: object) -> str:
    """The request bench_core and bench_scale push (a 34-character id)."""
    body = {
        "id": f"b-{uuid.uuid4().hex}",
        "action": "refund",
        "params": {"order_id": f"A-{i}", "amount": 25.0 + i % 400},
        "summary": f"Refund order A-{i}",
        "reasoning": "Customer reports the parcel arrived damaged; photo attached.",
        "agent_id": "support-bot",
        "requested_by": "U0CUSTOMER",
        "confidence": 0.8,
        **fields,
    }
    return json.dumps(body)


def test_a_decided_request_costs_at_most_2_kib(
    r: redis.Redis,
    store: Store,
    pintake: IntakeConsumer,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Auto-approved by the shipped policy, or reviewed and approved by a person: once its
    agent has the decision, a request's own keys take at most 2 KiB (MEMORY USAGE, exact).
    Until then its decision list adds its JSON, for at most HITL_DECISION_TTL."""
    before = used_memory(r)
    for i in range(200):
        xadd_raw(r, _bench_request(i, confidence=0.8 if i % 2 else 0.1))
    drain(pintake)
    reviewed = store.pending_ids(limit=1000)
    for rid in reviewed:
        Decider(store, OpenAuthority()).approve(rid, Reviewer(user_id="bob", role="support"))
    ids = [e["request_id"] for e in audit_entries(r) if e["kind"] == "submitted"]
    assert (200, True, []) == (len(ids), 0 < len(reviewed) < 200, store.pending_ids())
    undelivered = measure(store, ids)
    ttls = {0 < r.ttl(store.keys.decision(rid)) <= store.decision_ttl_s for rid in ids}
    with Client(settings=settings) as agent:
        assert {True} == {agent.wait(rid, timeout=5).approved for rid in ids}
    delivered = measure(store, ids, used_before=before)
    with capsys.disabled():
        print(f"\nbytes per decided request, delivered: {delivered}; not yet: {undelivered}")
    assert delivered.max <= MAX_BYTES_PER_DECIDED_REQUEST, str(delivered)
    assert ({True}, 0) == (ttls, sum(r.exists(store.keys.decision(rid)) for rid in ids))


def test_the_stored_record_leaves_out_defaults_and_reads_back_the_same(
    r: redis.Redis, store: Store, intake: IntakeConsumer, decider: Decider
) -> None:
    """hitl:req:<id> omits fields at their defaults; parsing gives back the same record, and
    its decision still verifies (the agent SDK reads it from there)."""
    xadd_raw(r, _bench_request(1, id="r-1"))
    drain(intake)
    decider.approve("r-1", Reviewer(user_id="bob"))
    record = store.get("r-1")
    raw = r.get(store.keys.req("r-1"))
    assert raw == record_json(record)
    assert '"dry_run"' not in raw and '"cards"' not in raw
    assert (record, State.APPROVED) == (type(record).model_validate_json(raw), record.state)
    full = json.loads(r.lindex(store.keys.decision("r-1"), 0) or "")
    assert None is full["original_params"]  # the list keeps the complete signed JSON


def test_decided_records_expire_after_the_retention_and_the_audit_keeps_the_facts(
    r: redis.Redis, store: Store, intake: IntakeConsumer
) -> None:
    """A pending record never expires; once decided it is kept HITL_RETENTION_S, then only
    the audit chain (which still verifies) remembers who decided what."""
    short = Store(r, signer=store.signer, retention_s=1)
    for rid in ("r-1", "r-2"):
        xadd_raw(r, _bench_request(1, id=rid))
    drain(intake)
    Decider(short, OpenAuthority()).approve("r-1", Reviewer(user_id="bob"))
    assert (-1, True) == (r.ttl(short.keys.req("r-2")), 0 < r.ttl(short.keys.req("r-1")) <= 1)
    wait_until(lambda: not r.exists(short.keys.req("r-1")), what="the record to expire")
    facts = [(e["kind"], e["actor"]) for e in audit_entries(r) if e["request_id"] == "r-1"]
    assert [("submitted", "support-bot"), ("approved", "bob")] == facts
    assert verify_entries(audit_entries(r), expect_head=store.head()).ok
    assert State.PENDING == short.get("r-2").state


def test_retention_zero_keeps_decided_records(
    r: redis.Redis, store: Store, intake: IntakeConsumer
) -> None:
    """HITL_RETENTION_S=0 keeps decided records forever (no TTL)."""
    xadd_raw(r, _bench_request(1, id="r-1"))
    drain(intake)
    Decider(Store(r, signer=store.signer, retention_s=0), OpenAuthority()).approve(
        "r-1", Reviewer(user_id="bob")
    )
    assert -1 == r.ttl(store.keys.req("r-1"))


def test_retention_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """HITL_RETENTION_S sets the retention (default 7 days); a bad value says what it wants."""
    assert 7 * 24 * 3600 == Settings.from_env().retention_s
    monkeypatch.setenv("HITL_RETENTION_S", "3600")
    assert 3600 == Settings.from_env().retention_s
    monkeypatch.setenv("HITL_RETENTION_S", "a week")
    with pytest.raises(ConfigError, match="HITL_RETENTION_S must be whole seconds"):
        Settings.from_env()


def test_the_notification_streams_are_trimmed_to_their_cap(
    r: redis.Redis, store: Store, intake: IntakeConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hitl:decisions and hitl:events are capped (approximately: whole stream nodes of 100
    entries go) at DECISIONS_MAXLEN; records and the audit chain keep every decision."""
    monkeypatch.setattr(store_module, "DECISIONS_MAXLEN", 50)
    for i in range(400):
        xadd_raw(r, _bench_request(i, id=f"r-{i}"))
    drain(intake)
    decider = Decider(store, OpenAuthority())
    for i in range(400):
        decider.approve(f"r-{i}", Reviewer(user_id="bob"))
    assert r.xlen(store.keys.decisions) <= 150
    assert r.xlen(store.keys.events) <= 150
    approved = [e for e in audit_entries(r) if e["kind"] == "approved"]
    assert 400 == len(approved)
