"""The request store: atomic changes, the pending index, delivery, and the audit chain."""

from __future__ import annotations

import json
import math
import threading
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hitl.errors import NotAuthorized, NotFound, StoreUnavailable
from hitl.models import (
    ApprovalRequest,
    CardRef,
    Decision,
    Outcome,
    RequestRecord,
    Reviewer,
    State,
    Verdict,
    VerdictKind,
)
from hitl.queue.audit import AuditEvent, verify_entries
from hitl.queue.keys import Keys
from hitl.queue.store import Change, IntakeItem, Store
from hitl.signing import verify_decision
from tests.conftest import KEYRING
from tests.redis_server import free_port
from tests.scenarios.helpers import audit_entries, audit_kinds


def _record(rid: str, deadline: float | None = None, **request: Any) -> RequestRecord:
    request.setdefault("action", "refund")
    request.setdefault("params", {"amount": 10})
    req = ApprovalRequest(id=rid, **request)
    return RequestRecord(
        request=req,
        verdict=Verdict(kind=VerdictKind.REVIEW, policy_version="pv1"),
        created_at=100.0,
        deadline=deadline,
        params=req.params,
    )


def _put(store: Store, record: RequestRecord) -> None:
    event = AuditEvent("submitted", record.id, "agent", {}, record.verdict.policy_version)
    store.update(record.id, lambda _cur: Change(record=record, events=[event]))


def _decide(store: Store, rid: str, outcome: Outcome = Outcome.APPROVED) -> Decision:
    def fn(current: RequestRecord | None) -> Change:
        assert current is not None
        decision = store.make_decision(current, outcome, reviewers=[Reviewer(user_id="bob")])
        final = current.model_copy(update={"state": outcome.state, "decision": decision})
        return Change(record=final, decision=decision, events=[AuditEvent("approved", rid, "bob")])

    change = store.update(rid, fn)
    assert change.decision is not None
    return change.decision


# -- reads -------------------------------------------------------------------------------------


def test_get_unknown_id_says_how_to_find_it(store: Store) -> None:
    """An unknown id is NotFound with a hint; find() returns None."""
    with pytest.raises(NotFound, match="check the id with `hitl pending`"):
        store.get("nope")
    assert store.find("nope") is None


def test_record_round_trips(store: Store) -> None:
    """What update() writes, get() reads back."""
    record = _record("r-1", summary="Refund", context={"ticket": "T-1"})
    _put(store, record)
    assert record == store.get("r-1")


def test_pending_is_ordered_by_deadline(store: Store) -> None:
    """Soonest deadline first; no deadline last; pages and counts agree."""
    _put(store, _record("late", deadline=300.0))
    _put(store, _record("never"))
    _put(store, _record("soon", deadline=200.0))
    assert ["soon", "late", "never"] == store.pending_ids()
    assert ["late"] == store.pending_ids(offset=1, limit=1)
    assert ["soon", "late", "never"] == [r.id for r in store.pending()]
    assert 3 == store.pending_count()


def test_pending_score_is_inf_without_deadline(store: Store, r: redis.Redis) -> None:
    """A request without a deadline sits at +inf in the pending index."""
    _put(store, _record("r-1"))
    assert math.inf == r.zscore("hitl:pending", "r-1")


def test_terminal_record_leaves_the_pending_index(store: Store) -> None:
    """Deciding a request removes it from hitl:pending."""
    _put(store, _record("r-1"))
    _decide(store, "r-1")
    assert ([], 0, State.APPROVED) == (
        store.pending_ids(),
        store.pending_count(),
        store.get("r-1").state,
    )


def test_pending_skips_a_record_deleted_under_it(store: Store, r: redis.Redis) -> None:
    """An id whose record vanished (purged) is skipped, not an error."""
    _put(store, _record("r-1"))
    _put(store, _record("r-2"))
    r.delete("hitl:req:r-1")
    assert ["r-2"] == [rec.id for rec in store.pending()]


# -- writes ------------------------------------------------------------------------------------


def test_decision_is_delivered_with_its_audit(store: Store, r: redis.Redis, settings: Any) -> None:
    """One transaction: record, LPUSH with TTL, the decisions stream, events and the audit."""
    _put(store, _record("r-1"))
    decision = _decide(store, "r-1")
    raw = r.lrange("hitl:decision:r-1", 0, -1)
    assert [decision] == [Decision.model_validate_json(x) for x in raw]
    assert 0 < r.ttl("hitl:decision:r-1") <= store.decision_ttl_s
    assert [decision.model_dump_json()] == [f["decision"] for _i, f in r.xrange("hitl:decisions")]
    assert ["submitted", "approved"] == audit_kinds(r, "r-1")
    decided = audit_entries(r)[-1]
    assert ("approved", ["list", "stream"]) == (decided["kind"], decided["details"]["delivered_to"])
    assert [("r-1", "submitted", "pending"), ("r-1", "approved", "approved")] == [
        (f["request_id"], f["kinds"], f["state"]) for _i, f in r.xrange("hitl:events")
    ]
    assert decision == verify_decision(decision, settings.verify_keys())


def test_callback_url_goes_to_the_webhook_outbox(store: Store, r: redis.Redis) -> None:
    """A decided request with a callback_url is queued for the webhook deliverer."""
    _put(store, _record("r-1", callback_url="https://hooks.example.com/h"))
    decision = _decide(store, "r-1")
    assert [{"url": "https://hooks.example.com/h", "decision": decision.model_dump_json()}] == [
        f for _i, f in r.xrange("hitl:webhooks")
    ]
    assert ["list", "stream", "webhook-outbox"] == audit_entries(r)[-1]["details"]["delivered_to"]


def test_make_decision_records_a_modification(store: Store) -> None:
    """Final params that differ from the request's are flagged with the originals."""
    record = _record("r-1", params={"amount": 100}, dry_run=True)
    d = store.make_decision(record, Outcome.APPROVED, params={"amount": 50}, now=123.0)
    assert (True, {"amount": 100}, {"amount": 50}, 123.0, 100.0, True, "pv1") == (
        d.modified,
        d.original_params,
        d.params,
        d.decided_at,
        d.requested_at,
        d.dry_run,
        d.policy_version,
    )
    same = store.make_decision(record, Outcome.REJECTED)
    assert (False, None) == (same.modified, same.original_params)


def test_error_is_raised_after_its_audit_is_committed(store: Store, r: redis.Redis) -> None:
    """A refusal is committed to the audit chain first, then raised; the record is untouched."""
    _put(store, _record("r-1"))
    refusal = Change(events=[AuditEvent("refused", "r-1", "eve")], error=NotAuthorized("no"))
    with pytest.raises(NotAuthorized):
        store.update("r-1", lambda _cur: refusal)
    assert ["submitted", "refused"] == audit_kinds(r)
    assert State.PENDING == store.get("r-1").state


def test_function_error_writes_nothing(store: Store, r: redis.Redis) -> None:
    """An exception inside the transaction function commits nothing."""

    def boom(_cur: RequestRecord | None) -> Change:
        raise ValueError("bug")

    with pytest.raises(ValueError):
        store.update("r-1", boom)
    assert ([], None) == (audit_kinds(r), r.get("hitl:audit:head"))


def test_empty_change_writes_nothing(store: Store, r: redis.Redis) -> None:
    """Change() is a no-op: no keys, no audit."""
    store.update("r-1", lambda _cur: Change())
    assert [] == r.keys("*")


def test_add_card_is_idempotent_and_audited(store: Store, r: redis.Redis) -> None:
    """The same card twice is stored once; each new card is audited."""
    _put(store, _record("r-1"))
    card = CardRef(channel="slack", conversation="C1", message="1.2")
    store.add_card("r-1", card)
    store.add_card("r-1", card)
    store.add_card("r-1", CardRef(channel="teams", conversation="T1", message="a1"))
    assert ["slack", "teams"] == [c.channel for c in store.get("r-1").cards]
    assert ["submitted", "card_posted", "card_posted"] == audit_kinds(r)


def test_add_card_to_unknown_request(store: Store) -> None:
    """A card for an unknown request is NotFound."""
    with pytest.raises(NotFound):
        store.add_card("nope", CardRef(channel="web", conversation="-", message="-"))


def test_racing_updates_all_land(store: Store) -> None:
    """Concurrent read-modify-write transactions retry; no update is lost."""
    _put(store, _record("r-1", params={"n": 0}))

    def bump(current: RequestRecord | None) -> Change:
        assert current is not None
        new = current.model_copy(update={"params": {"n": current.params["n"] + 1}})
        return Change(record=new, events=[AuditEvent("bump", "r-1", "t")])

    threads = [
        threading.Thread(target=lambda: [store.update("r-1", bump) for _ in range(10)])
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 80 == store.get("r-1").params["n"]


def test_chain_stays_valid_under_concurrent_appends(store: Store, r: redis.Redis) -> None:
    """Appends from many threads form one gapless, verifiable chain."""

    def work(i: int) -> None:
        for j in range(10):
            store.append_events([AuditEvent("x", None, f"t{i}", {"j": j})])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = audit_entries(r)
    assert list(range(1, 61)) == [e["seq"] for e in entries]
    assert verify_entries(entries, expect_head=store.head()).ok


# -- intake commits ----------------------------------------------------------------------------


def test_commit_intake_outcomes(store: Store, r: redis.Redis) -> None:
    """Stored, conflicting (same id, other params: dead) and dead, all acknowledged."""
    r.xgroup_create("hitl:requests", "g", id="0", mkstream=True)
    sids = [r.xadd("hitl:requests", {"request": str(i)}) for i in range(4)]
    r.xreadgroup("g", "c", {"hitl:requests": ">"})
    first = _record("r-1", params={"v": 1})
    items = [
        IntakeItem(sids[0], record=first),
        IntakeItem(sids[1], record=_record("r-1", params={"v": 2})),
        IntakeItem(sids[2], dead_reason="bad", payload={"request": "x"}),
        IntakeItem(sids[3], record=_record("r-2")),
    ]
    assert ["stored", "dead", "dead", "stored"] == store.commit_intake("g", items)
    assert {"v": 1} == store.get("r-1").params
    assert 0 == r.xpending("hitl:requests", "g")["pending"]
    assert ["conflicting_submission"] == [k for k in audit_kinds(r) if k.startswith("conf")]
    dead = r.xrange("hitl:dead")
    assert [sids[1], sids[2]] == [f["stream_id"] for _i, f in dead]
    assert ("bad", {"request": "x"}) == (dead[1][1]["reason"], json.loads(dead[1][1]["payload"]))


def test_prefix_keeps_deployments_apart(r: redis.Redis, settings: Any) -> None:
    """Two stores with different prefixes on one Redis never see each other's requests."""
    a = Store(r, keys=Keys("a:"), signer=KEYRING)
    b = Store(r, keys=Keys("b:"), signer=KEYRING)
    _put(a, _record("r-1"))
    assert (["r-1"], [], None) == (a.pending_ids(), b.pending_ids(), b.find("r-1"))
    chain = Keys.chain_of("r-1")
    assert r.exists(f"a:audit:{{{chain}}}") and not r.exists(f"hitl:audit:{{{chain}}}")


def test_unreachable_redis_is_store_unavailable(settings: Any) -> None:
    """With Redis down, reads and writes raise StoreUnavailable saying nothing was written."""
    no_retry = Retry(NoBackoff(), 0)  # redis-py's default retries would only make this slower
    dead = Store(
        redis.Redis(port=free_port(), decode_responses=True, retry=no_retry),
        signer=KEYRING,
    )
    with pytest.raises(StoreUnavailable, match="nothing was written") as info:
        dead.update("r-1", lambda _cur: Change(events=[AuditEvent("x", None, "y")]))
    assert not info.value.maybe_committed
    with pytest.raises(StoreUnavailable, match="Redis is unreachable"):
        dead.pending_count()


@pytest.mark.parametrize("error", [redis.ConnectionError, redis.TimeoutError])
def test_a_reply_lost_after_exec_is_not_reported_as_nothing_written(
    store: Store, r: redis.Redis, monkeypatch: pytest.MonkeyPatch, error: type[Exception]
) -> None:
    """EXEC reached Redis and committed, then the connection died before its reply: the error
    says the change may have been committed and how to check, and nothing is retried blindly."""
    _put(store, _record("r-1"))
    real = redis.client.Pipeline._execute_transaction

    def commit_then_lose_the_reply(self: Any, *args: Any, **kwargs: Any) -> Any:
        real(self, *args, **kwargs)  # the server has executed the transaction ...
        self.watching = True  # ... and the connection died while EXEC's reply was being read
        raise error("Connection closed by server.")

    monkeypatch.setattr(redis.client.Pipeline, "_execute_transaction", commit_then_lose_the_reply)
    with pytest.raises(StoreUnavailable) as info:
        _decide(store, "r-1")
    monkeypatch.undo()
    message = str(info.value)
    assert info.value.maybe_committed
    assert "may have been committed" in message
    assert "`hitl show r-1`" in message
    assert "nothing was written" not in message
    assert (State.APPROVED, 1) == (store.get("r-1").state, r.llen("hitl:decision:r-1"))
    assert ["submitted", "approved"] == audit_kinds(r)
