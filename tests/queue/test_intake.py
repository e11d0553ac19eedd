"""The intake consumer: raw XADDs in, validated and classified requests (or dead letters) out."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from hitl.handlers import Decider, review_everything
from hitl.models import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    ApprovalRequest,
    Decision,
    EscalationStep,
    RequestRecord,
    State,
    Verdict,
    VerdictKind,
)
from hitl.queue.audit import verify_entries
from hitl.queue.intake import DEAD_PREFIX_BYTES, IntakeConsumer
from hitl.queue.store import Store
from hitl.signing import verify_decision
from tests.redis_server import RedisServer
from tests.scenarios.helpers import (
    audit_entries,
    audit_kinds,
    consuming,
    drain,
    wait_until,
    xadd_raw,
)


def _valid(rid: str, **fields: Any) -> str:
    return json.dumps({"id": rid, "action": "refund", "params": {"amount": 5}, **fields})


def _consumer(store: Store, classify: Any = review_everything, **kw: Any) -> IntakeConsumer:
    consumer = IntakeConsumer(store, classify, block_ms=0, **kw)
    consumer.ensure_group()
    return consumer


@pytest.fixture
def raw(redis_server: RedisServer, r: redis.Redis) -> Iterator[redis.Redis]:
    """A client that returns bytes (to send and read what is not UTF-8)."""
    client = redis_server.client(decode=False)
    yield client
    client.close()


# -- the happy path ----------------------------------------------------------------------------


def test_raw_xadd_is_processed(intake: IntakeConsumer, store: Store, r: redis.Redis) -> None:
    """A hand-written JSON string XADDed by any client becomes a pending request."""
    sid = xadd_raw(
        r,
        '{"id": "r-1", "action": "delete_volume", "params": {"volume_id": "vol-1"},'
        ' "requested_by": "alice", "risk": "high", "summary": "Delete vol-1"}',
    )
    assert 1 == drain(intake)
    record = store.get("r-1")
    assert (State.PENDING, {"volume_id": "vol-1"}, "alice", "open") == (
        record.state,
        record.params,
        record.request.requested_by,
        record.verdict.rule,
    )
    assert ["r-1"] == store.pending_ids()
    submitted = audit_entries(r)[0]
    assert ("submitted", "r-1", sid, "review") == (
        submitted["kind"],
        submitted["request_id"],
        submitted["details"]["stream_id"],
        submitted["details"]["verdict"],
    )
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]


def test_request_without_id_gets_one_from_its_stream_id(
    intake: IntakeConsumer, store: Store, r: redis.Redis
) -> None:
    """No id: the request is stored as ``x-<stream id>``."""
    sid = xadd_raw(r, '{"action": "refund"}')
    drain(intake)
    assert "refund" == store.get(f"x-{sid}").request.action


def test_same_id_twice_is_one_request(intake: IntakeConsumer, store: Store, r: redis.Redis) -> None:
    """An identical resubmission (a retry) keeps the first request and is audited as a duplicate."""
    xadd_raw(r, _valid("r-1", summary="first"))
    drain(intake)
    xadd_raw(r, _valid("r-1", summary="first"))
    xadd_raw(r, _valid("r-1", summary="first"))
    drain(intake)
    assert ["submitted", "duplicate_submission", "duplicate_submission"] == audit_kinds(r, "r-1")
    assert (1, 2) == (intake.stats.stored, intake.stats.duplicate)
    assert 1 == store.pending_count()


def test_same_id_other_content_is_dead_lettered(
    intake: IntakeConsumer, store: Store, r: redis.Redis
) -> None:
    """A different request under a used id keeps the first and dead-letters the other, loudly."""
    xadd_raw(r, _valid("r-1", summary="first"))
    drain(intake)
    xadd_raw(r, _valid("r-1", summary="second"))
    drain(intake)
    assert "first" == store.get("r-1").request.summary
    assert ["submitted", "conflicting_submission"] == audit_kinds(r, "r-1")
    [(_id, dead)] = r.xrange("hitl:dead")
    assert "already names a different request" in dead["reason"]
    assert "second" == json.loads(json.loads(dead["payload"])["request"])["summary"]
    assert (1, 0, 1) == (intake.stats.stored, intake.stats.duplicate, intake.stats.dead)


def test_same_id_twice_in_one_batch(intake: IntakeConsumer, store: Store, r: redis.Redis) -> None:
    """Two copies read in the same batch are still one request."""
    xadd_raw(r, _valid("r-1", summary="first"))
    xadd_raw(r, _valid("r-1", summary="first"))
    xadd_raw(r, _valid("r-1", summary="second"))
    assert 3 == intake.run_once(block_ms=0)
    assert "first" == store.get("r-1").request.summary
    assert ["submitted", "duplicate_submission", "conflicting_submission"] == audit_kinds(r, "r-1")


def test_duplicate_of_a_decided_request_leaves_it_decided(
    intake: IntakeConsumer, store: Store, decider: Decider, r: redis.Redis
) -> None:
    """Resubmitting an already-approved id does not reopen it or deliver a second decision."""
    from hitl.models import Reviewer

    xadd_raw(r, _valid("r-1"))
    drain(intake)
    decider.approve("r-1", Reviewer(user_id="bob"))
    xadd_raw(r, _valid("r-1"))
    drain(intake)
    assert (State.APPROVED, 1, 1) == (
        store.get("r-1").state,
        r.llen("hitl:decision:r-1"),
        r.xlen("hitl:decisions"),
    )


def test_auto_verdicts_decide_at_intake(store: Store, r: redis.Redis) -> None:
    """Auto-approve and auto-reject are decided, signed and delivered at once."""
    verdicts = {
        "yes": Verdict(kind=VerdictKind.AUTO_APPROVE, rule="ok", reason="low risk"),
        "no": Verdict(kind=VerdictKind.AUTO_REJECT, rule="deny", reason="forbidden"),
    }
    consumer = _consumer(store, lambda req: verdicts[req.id])
    xadd_raw(r, _valid("yes"))
    xadd_raw(r, _valid("no"))
    drain(consumer)
    consumer.close()
    got = {rid: Decision.model_validate_json(r.lpop(f"hitl:decision:{rid}")) for rid in verdicts}
    assert (("auto_approved", "low risk"), ("auto_rejected", "forbidden")) == (
        (got["yes"].outcome.value, got["yes"].reason),
        (got["no"].outcome.value, got["no"].reason),
    )
    for decision in got.values():
        verify_decision(decision, store.signer.public())
    assert (State.APPROVED, State.REJECTED, 0) == (
        store.get("yes").state,
        store.get("no").state,
        store.pending_count(),
    )
    assert (["submitted"], ["submitted"]) == (audit_kinds(r, "yes"), audit_kinds(r, "no"))
    entry = next(e for e in audit_entries(r) if e["request_id"] == "yes")
    facts = {k: entry["details"][k] for k in ("outcome", "decided_by", "rule", "delivered_to")}
    assert {
        "outcome": "auto_approved",
        "decided_by": "policy",
        "rule": "ok",
        "delivered_to": ["list", "stream"],
    } == facts


def test_deadline_from_timeout_or_escalation(store: Store, r: redis.Redis) -> None:
    """timeout_s sets the deadline; else the first escalation step; else none."""
    escalating = Verdict(kind=VerdictKind.REVIEW, escalation=[EscalationStep(after_s=600)])
    consumer = _consumer(
        store, lambda req: escalating if req.id != "plain" else review_everything(req)
    )
    xadd_raw(r, _valid("timed", timeout_s=60))
    xadd_raw(r, _valid("escalated"))
    xadd_raw(r, _valid("plain"))
    drain(consumer)
    consumer.close()
    rec = {rid: store.get(rid) for rid in ("timed", "escalated", "plain")}
    assert 60.0 == pytest.approx(rec["timed"].deadline - rec["timed"].created_at)
    assert 600.0 == pytest.approx(rec["escalated"].deadline - rec["escalated"].created_at)
    assert rec["plain"].deadline is None
    assert ["timed", "escalated", "plain"] == store.pending_ids()


def test_on_stored_sees_only_new_records(store: Store, r: redis.Redis) -> None:
    """The on_stored hook (card posting) gets new records, never duplicates or dead letters."""
    seen: list[list[str]] = []
    consumer = _consumer(store, on_stored=lambda recs: seen.append([x.id for x in recs]))
    xadd_raw(r, _valid("r-1"))
    xadd_raw(r, "not json")
    xadd_raw(r, _valid("r-1"))
    xadd_raw(r, _valid("r-2"))
    drain(consumer)
    xadd_raw(r, _valid("r-2"))
    drain(consumer)
    consumer.close()
    assert [["r-1", "r-2"]] == seen


def test_policy_failure_dead_letters_that_request_only(store: Store, r: redis.Redis) -> None:
    """A classifier that throws dead-letters its request with the error; others go on."""

    def classify(req: ApprovalRequest) -> Verdict:
        if req.action == "explode":
            raise RuntimeError("CEL blew up")
        return review_everything(req)

    consumer = _consumer(store, classify)
    xadd_raw(r, _valid("a"))
    xadd_raw(r, json.dumps({"id": "boom", "action": "explode"}))
    xadd_raw(r, _valid("b"))
    drain(consumer)
    consumer.close()
    assert ["a", "b"] == sorted(store.pending_ids())
    [(_id, dead)] = r.xrange("hitl:dead")
    assert "policy evaluation failed: CEL blew up" == dead["reason"]
    assert ["invalid_request"] == audit_kinds(r, "boom")


def test_any_error_building_one_entry_dead_letters_only_that_entry(
    store: Store, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception while building one item is its dead letter; the batch goes on."""
    consumer = _consumer(store)
    accepted = consumer._accepted

    def fragile(stream_id: str, request: ApprovalRequest, verdict: Verdict) -> Any:
        if request.id == "boom":
            raise KeyError("no such thing")
        return accepted(stream_id, request, verdict)

    monkeypatch.setattr(consumer, "_accepted", fragile)
    xadd_raw(r, _valid("a"))
    sid = xadd_raw(r, _valid("boom"))
    xadd_raw(r, _valid("b"))
    assert 3 == drain(consumer)
    consumer.close()
    assert ["a", "b"] == sorted(store.pending_ids())
    [(_id, dead)] = r.xrange("hitl:dead")
    assert ("internal error while validating: KeyError: 'no such thing'", sid) == (
        dead["reason"],
        dead["stream_id"],
    )
    assert {"request": _valid("boom")} == json.loads(dead["payload"])
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]


def test_a_record_that_cannot_be_stored_does_not_sink_its_batch(
    store: Store, r: redis.Redis
) -> None:
    """A batch whose commit fails (one unserializable record) is retried entry by entry: the
    bad entry is dead-lettered with the error, its neighbours are stored."""

    def classify(req: ApprovalRequest) -> Verdict:
        if req.id == "bad":  # a policy bug: a verdict that cannot be written
            return Verdict.model_construct(kind=VerdictKind.REVIEW, rule=object())
        return review_everything(req)

    consumer = _consumer(store, classify)
    xadd_raw(r, _valid("a"))
    sid = xadd_raw(r, _valid("bad"))
    xadd_raw(r, _valid("b"))
    assert 3 == drain(consumer)
    consumer.close()
    assert ["a", "b"] == sorted(store.pending_ids())
    assert store.find("bad") is None
    [(_id, dead)] = r.xrange("hitl:dead")
    assert sid == dead["stream_id"]
    assert dead["reason"].startswith("internal error while storing: "), dead["reason"]
    assert (2, 1) == (consumer.stats.stored, consumer.stats.dead)
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]
    assert verify_entries(audit_entries(r), expect_head=store.head()).ok


def test_unexpected_errors_in_the_loop_are_survived(
    store: Store, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run() logs an unexpected exception, records it, backs off and carries on consuming."""
    consumer = _consumer(store)
    real = consumer.run_once
    failures = iter([RuntimeError("first"), RuntimeError("second")])

    def flaky(block_ms: int | None = None) -> int:
        error = next(failures, None)
        if error is not None:
            raise error
        return real(block_ms)

    monkeypatch.setattr(consumer, "run_once", flaky)
    xadd_raw(r, _valid("r-1"))
    with consuming(consumer) as thread:
        wait_until(lambda: store.find("r-1"), what="r-1 stored after two failures")
        assert thread.is_alive()
        health = consumer.health()
    consumer.close()
    assert (True, "RuntimeError: second", 0) == (
        health["alive"],
        health["last_error"],
        health["failures"],
    )
    assert not consumer.health()["alive"]


def test_a_cancel_handler_bug_does_not_stop_intake(store: Store, r: redis.Redis) -> None:
    """A cancel handler that raises something unexpected dead-letters that cancel only."""

    def broken(rid: str, actor: str, reason: str) -> None:
        raise ZeroDivisionError("oops")

    consumer = _consumer(store, on_cancel=broken)
    r.xadd("hitl:requests", {"cancel": json.dumps({"id": "r-1"})})
    xadd_raw(r, _valid("r-2"))
    assert 2 == drain(consumer)
    consumer.close()
    assert ["r-2"] == store.pending_ids()
    [(_id, dead)] = r.xrange("hitl:dead")
    assert "internal error while cancelling: ZeroDivisionError: oops" == dead["reason"]
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]


def test_two_consumers_share_the_work(store: Store, r: redis.Redis) -> None:
    """Two members of the group split the stream; every request is stored exactly once."""
    a = _consumer(store, batch=7)
    b = _consumer(store, batch=7)
    for i in range(40):
        xadd_raw(r, _valid(f"r-{i}"))
    while a.run_once(block_ms=0) + b.run_once(block_ms=0):
        pass
    a.close()
    b.close()
    assert 40 == a.stats.stored + b.stats.stored
    assert a.stats.stored > 0 and b.stats.stored > 0
    assert 40 == store.pending_count()
    assert 40 == audit_kinds(r).count("submitted")


def test_dead_consumer_entries_are_reclaimed(store: Store, r: redis.Redis) -> None:
    """Entries read but never acknowledged are taken over once idle, and stored once."""
    for i in range(5):
        xadd_raw(r, _valid(f"r-{i}"))
    r.xgroup_create("hitl:requests", "hitl-intake", id="0", mkstream=True)
    r.xreadgroup("hitl-intake", "crashed", {"hitl:requests": ">"})  # read, then "died"
    rescuer = _consumer(store, claim_idle_ms=50)
    assert 0 == rescuer.run_once(block_ms=0)
    time.sleep(0.1)
    assert 5 == rescuer.run_once(block_ms=0)
    assert 0 == rescuer.run_once(block_ms=0)
    rescuer.close()
    assert (5, 5, 0) == (
        rescuer.stats.reclaimed,
        rescuer.stats.stored,
        r.xpending("hitl:requests", "hitl-intake")["pending"],
    )


def test_trimmed_pending_entries_are_acknowledged(store: Store, r: redis.Redis) -> None:
    """An entry trimmed from the stream while pending is acknowledged, not retried forever."""
    sid = xadd_raw(r, _valid("gone"))
    r.xgroup_create("hitl:requests", "hitl-intake", id="0", mkstream=True)
    r.xreadgroup("hitl-intake", "crashed", {"hitl:requests": ">"})
    r.xdel("hitl:requests", sid)
    rescuer = _consumer(store, claim_idle_ms=0)
    rescuer.run_once(block_ms=0)
    rescuer.close()
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]


# -- dead letters ------------------------------------------------------------------------------


def _deep_params(depth: int) -> str:
    """A request whose params nest ``depth`` levels (the request itself adds one)."""
    return '{"action": "x", "params": ' + '{"a": ' * (depth - 1) + "{}" + "}" * depth


BIG = "x" * (1024 * 1024)
BIG_REQUEST = json.dumps({"action": "x", "params": {"blob": BIG}})
MEDIUM = "x" * (100 * 1024)

MALFORMED: list[tuple[str, dict[str, Any], str, str | None]] = [
    # (case, stream fields, words the reason must contain, field named in `errors`)
    ("not json", {"request": "{not json"}, "request is not valid JSON", None),
    ("empty", {"request": ""}, "request is not valid JSON", None),
    ("no action", {"request": '{"params": {}}'}, "action: Field required", "action"),
    ("params list", {"request": '{"action": "x", "params": [1, 2]}'}, "params:", "params"),
    (
        "1 MiB params",
        {"request": BIG_REQUEST},
        f"request is {len(BIG_REQUEST)} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes",
        None,
    ),
    (
        "100 KiB params",
        {"request": json.dumps({"action": "x", "params": {"blob": MEDIUM}})},
        "params: params serialize to",
        "params",
    ),
    ("unknown risk", {"request": '{"action": "x", "risk": "extreme"}'}, "risk:", "risk"),
    (
        "confidence type",
        {"request": '{"action": "x", "confidence": "very"}'},
        "confidence:",
        "confidence",
    ),
    ("dry_run type", {"request": '{"action": "x", "dry_run": "maybe"}'}, "dry_run:", "dry_run"),
    ("timeout type", {"request": '{"action": "x", "timeout_s": -5}'}, "timeout_s:", "timeout_s"),
    ("action type", {"request": '{"action": 42}'}, "action:", "action"),
    ("unknown field", {"request": '{"action": "x", "parms": {}}'}, "parms: unknown field", "parms"),
    ("bad id", {"request": '{"id": "has space", "action": "x"}'}, "id:", "id"),
    (
        "schema mismatch",
        {
            "request": json.dumps(
                {
                    "action": "x",
                    "params": {"amount": "lots"},
                    "param_schema": {"properties": {"amount": {"type": "number"}}},
                }
            )
        },
        "params do not match param_schema at amount",
        None,
    ),
    (
        "json array",
        {"request": '[{"action": "x"}]'},
        "request must be a JSON object, got list",
        None,
    ),
    ("json string", {"request": '"approve me"'}, "request must be a JSON object, got str", None),
    ("no request field", {"req": '{"action": "x"}'}, "entry has no 'request' field", None),
    ("700 brackets", {"request": "[" * 700}, f"nests deeper than {MAX_DEPTH} levels", None),
    (
        "params 256 deep",
        {"request": _deep_params(256)},
        f"nests deeper than {MAX_DEPTH} levels",
        None,
    ),
    (
        "params 210 deep",
        {"request": _deep_params(210)},
        f"nests deeper than {MAX_DEPTH} levels",
        None,
    ),
    (
        "params 33 deep",
        {"request": _deep_params(MAX_DEPTH + 1)},
        f"nests deeper than {MAX_DEPTH} levels",
        None,
    ),
    (
        "1e999",
        {"request": '{"action": "x", "params": {"amount": 1e999}}'},
        "request is not valid JSON: 1e999 is not a finite number",
        None,
    ),
    (
        "-1e999",
        {"request": '{"action": "x", "params": {"amount": -1e999}}'},
        "request is not valid JSON: -1e999 is not a finite number",
        None,
    ),
    (
        "2**53",
        {"request": '{"action": "x", "params": {"n": 9007199254740992}}'},
        "params.n: integer outside ±(2**53-1)",
        "params",
    ),
    (
        "5000-digit integer",
        {"request": '{"action": "x", "context": {"n": -' + "9" * 5000 + "}}"},
        "integer outside ±(2**53-1) cannot be signed exactly (I-JSON, RFC 7493): send large",
        None,
    ),
]


@pytest.mark.parametrize(
    ("fields", "reason", "field"),
    [pytest.param(f, reason, fld, id=case) for case, f, reason, fld in MALFORMED],
)
def test_malformed_input_is_dead_lettered(
    intake: IntakeConsumer,
    store: Store,
    r: redis.Redis,
    fields: dict[str, Any],
    reason: str,
    field: str | None,
) -> None:
    """Bad input lands in hitl:dead with a reason naming the problem and the original payload;
    the valid requests around it are processed, and nothing stays unacknowledged."""
    xadd_raw(r, _valid("before"))
    sid = str(r.xadd("hitl:requests", fields))
    xadd_raw(r, _valid("after"))
    assert 3 == drain(intake)

    assert ["after", "before"] == sorted(store.pending_ids())
    [(_id, dead)] = r.xrange("hitl:dead")
    assert reason in dead["reason"], dead["reason"]
    assert sid == dead["stream_id"]
    if "payload_sha256" in dead:  # over 8 KiB: a digest and a prefix stand for the payload
        assert hashlib.sha256(fields["request"].encode()).hexdigest() == dead["payload_sha256"]
    else:
        assert fields == json.loads(dead["payload"])
    if field is not None:
        assert field in [f for f, _m in json.loads(dead["errors"])]
    invalid = [e for e in audit_entries(r) if e["kind"] == "invalid_request"]
    assert [(dead["reason"], sid)] == [
        (e["details"]["reason"], e["details"]["stream_id"]) for e in invalid
    ]
    assert (2, 1) == (intake.stats.stored, intake.stats.dead)
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]
    assert verify_entries(audit_entries(r), expect_head=store.head()).ok


def test_invalid_utf8_is_dead_lettered_losslessly(
    intake: IntakeConsumer, store: Store, r: redis.Redis, raw: redis.Redis
) -> None:
    """Bytes that are not UTF-8 are dead-lettered as such, kept as base64; the requests around
    them go on."""
    original = b'{"action": "x", "summary": "\xff\xfe"}'
    xadd_raw(r, _valid("before"))
    sid = raw.xadd("hitl:requests", {b"request": original, b"note": b"plain"})
    xadd_raw(r, _valid("after"))
    assert 3 == drain(intake)
    assert ["after", "before"] == sorted(store.pending_ids())
    [(_id, dead)] = r.xrange("hitl:dead")
    assert ("request is not UTF-8 text", sid.decode()) == (dead["reason"], dead["stream_id"])
    payload = json.loads(dead["payload"])
    assert (original, "plain") == (base64.b64decode(payload["request"]["base64"]), payload["note"])
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]


def test_oversized_dead_letter_keeps_a_digest_and_a_prefix(
    intake: IntakeConsumer, store: Store, r: redis.Redis
) -> None:
    """A dead letter over 8 KiB keeps the sha256, the size and the first 1 KiB, not the data;
    its neighbours are stored."""
    text = json.dumps({"action": "x", "params": {"blob": BIG}})
    xadd_raw(r, _valid("before"))
    r.xadd("hitl:requests", {"request": text, "note": "small"})
    xadd_raw(r, _valid("after"))
    assert 3 == drain(intake)
    assert ["after", "before"] == sorted(store.pending_ids())
    [(_id, dead)] = r.xrange("hitl:dead")
    assert (
        "request",
        hashlib.sha256(text.encode()).hexdigest(),
        str(len(text)),
        text[:DEAD_PREFIX_BYTES],
        {"note": "small"},
    ) == (
        dead["payload_field"],
        dead["payload_sha256"],
        dead["payload_bytes"],
        json.loads(dead["payload_prefix"]),
        json.loads(dead["payload"]),
    )
    [invalid] = [e for e in audit_entries(r) if e["kind"] == "invalid_request"]
    assert len(text) + len("small") == invalid["details"]["bytes"]


def test_oversized_binary_dead_letter_prefix_is_base64(
    intake: IntakeConsumer, r: redis.Redis, raw: redis.Redis
) -> None:
    """The kept prefix of bytes that are not UTF-8 is base64, so it stays lossless."""
    blob = b"\xff" * (20 * 1024)
    raw.xadd("hitl:requests", {b"request": blob})
    drain(intake)
    [(_id, dead)] = r.xrange("hitl:dead")
    prefix = base64.b64decode(json.loads(dead["payload_prefix"])["base64"])
    assert (blob[:DEAD_PREFIX_BYTES], hashlib.sha256(blob).hexdigest()) == (
        prefix,
        dead["payload_sha256"],
    )


def test_acknowledged_entries_leave_the_stream(
    intake: IntakeConsumer, store: Store, decider: Decider, r: redis.Redis
) -> None:
    """Stored, dead-lettered and cancel entries are deleted with their XACK; an entry another
    consumer holds unacknowledged stays."""
    held = xadd_raw(r, _valid("held"))
    r.xreadgroup("hitl-intake", "other", {"hitl:requests": ">"})
    xadd_raw(r, _valid("r-1"))
    xadd_raw(r, "not json")
    r.xadd("hitl:requests", {"cancel": json.dumps({"id": "r-1"})})
    assert 3 == drain(intake)
    assert State.CANCELLED == store.get("r-1").state
    assert [held] == [i for i, _f in r.xrange("hitl:requests")]
    assert 1 == r.xpending("hitl:requests", "hitl-intake")["pending"]


def test_dead_letters_are_capped(store: Store, r: redis.Redis) -> None:
    """hitl:dead is trimmed (approximately) to the store's dead_maxlen."""
    capped = Store(r, signer=store.signer, dead_maxlen=100)
    consumer = _consumer(capped)
    for _ in range(500):
        xadd_raw(r, "not json")
    xadd_raw(r, _valid("r-1"))
    drain(consumer)
    consumer.close()
    assert 100 <= r.xlen("hitl:dead") < 300
    assert ["r-1"] == store.pending_ids()


def test_after_a_huge_read_the_consumer_reads_one_entry_at_a_time(
    intake: IntakeConsumer, store: Store, r: redis.Redis
) -> None:
    """Over ~16 MB in one read: the next reads take one entry until entries are small again."""
    for _ in range(3):
        r.xadd("hitl:requests", {"request": "x" * (8 * 1024 * 1024)})
    for i in range(3):
        xadd_raw(r, _valid(f"r-{i}"))
    assert 6 == intake.run_once(block_ms=0)
    assert 1 == intake.read_count
    for i in range(3, 6):
        xadd_raw(r, _valid(f"r-{i}"))
    assert 1 == intake.run_once(block_ms=0)
    assert intake.batch == intake.read_count
    assert 2 == intake.run_once(block_ms=0)
    assert (6, 3) == (store.pending_count(), r.xlen("hitl:dead"))


def test_many_errors_are_all_listed(intake: IntakeConsumer, r: redis.Redis) -> None:
    """Every invalid field is in ``errors``; the reason summarises them."""
    xadd_raw(r, '{"action": "a b", "risk": "x", "confidence": 7, "parms": 1}')
    drain(intake)
    [(_id, dead)] = r.xrange("hitl:dead")
    assert {"action", "risk", "confidence", "parms"} == {f for f, _ in json.loads(dead["errors"])}
    assert dead["reason"].startswith("invalid request: ")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_is_not_json(store: Store, r: redis.Redis, constant: str) -> None:
    """NaN and Infinity are not JSON: dead-lettered, never signed over a value it cannot carry."""
    consumer = _consumer(store, lambda req: Verdict(kind=VerdictKind.AUTO_APPROVE))
    xadd_raw(r, '{"id": "n-1", "action": "x", "params": {"amount": ' + constant + "}}")
    drain(consumer)
    consumer.close()
    [(_id, dead)] = r.xrange("hitl:dead")
    assert f"request is not valid JSON: {constant} is not a JSON number" in dead["reason"]
    assert (None, 0) == (store.find("n-1"), r.llen("hitl:decision:n-1"))


# -- cancellations on the stream ---------------------------------------------------------------


def test_cancel_entry_reaches_the_handler(
    intake: IntakeConsumer, store: Store, r: redis.Redis
) -> None:
    """``cancel`` = {"id", "reason", "agent_id"} cancels the agent's own pending request."""
    xadd_raw(r, _valid("r-1", agent_id="bot-7"))
    drain(intake)
    r.xadd(
        "hitl:requests",
        {"cancel": json.dumps({"id": "r-1", "reason": "re-planned", "agent_id": "bot-7"})},
    )
    drain(intake)
    decision = store.get("r-1").decision
    assert decision is not None
    assert ("cancelled", "re-planned", "bot-7") == (
        decision.outcome.value,
        decision.reason,
        decision.reviewers[0].user_id,
    )
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]


@pytest.mark.parametrize(
    ("owner", "canceller"),
    [
        ("bot-7", "bot-8"),
        ("bot-7", None),
        (None, "bot-7"),
        ("bot-7", "bot-7x"),
    ],
)
def test_cancel_by_another_agent_is_refused(
    intake: IntakeConsumer, store: Store, r: redis.Redis, owner: str | None, canceller: str | None
) -> None:
    """Only the submitting agent may cancel: another agent's cancel is refused, audited and
    acknowledged; the request stays pending and the next entry is processed."""
    xadd_raw(r, _valid("r-1", **({"agent_id": owner} if owner else {})))
    drain(intake)
    cancel = {"id": "r-1", **({"agent_id": canceller} if canceller else {})}
    r.xadd("hitl:requests", {"cancel": json.dumps(cancel)})
    xadd_raw(r, _valid("r-2"))
    assert 2 == drain(intake)
    assert (State.PENDING, ["r-1", "r-2"]) == (store.get("r-1").state, sorted(store.pending_ids()))
    refused = [e for e in audit_entries(r) if e["kind"] == "refused"]
    assert [("cancel", canceller or "agent")] == [
        (e["details"]["attempt"], e["actor"]) for e in refused
    ]
    assert "does not own request r-1" in refused[0]["details"]["reason"]
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]


@pytest.mark.parametrize("spelling", ["BOT-7", " bot-7 ", "bot\u200b-7", "ｂｏｔ-７"])
def test_cancel_matches_the_agent_in_any_spelling(
    intake: IntakeConsumer, store: Store, r: redis.Redis, spelling: str
) -> None:
    """The owner check compares canonical ids (case, width, spaces, invisible characters)."""
    xadd_raw(r, _valid("r-1", agent_id="bot-7"))
    r.xadd("hitl:requests", {"cancel": '{"id": "r-1", "agent_id": "' + spelling + '"}'})
    drain(intake)
    assert State.CANCELLED == store.get("r-1").state


def test_cancel_of_a_decided_request_is_refused_and_acknowledged(
    intake: IntakeConsumer, store: Store, decider: Decider, r: redis.Redis
) -> None:
    """A late cancel is refused (audited) and the approval stands."""
    from hitl.models import Reviewer

    xadd_raw(r, _valid("r-1"))
    drain(intake)
    decider.approve("r-1", Reviewer(user_id="bob"))
    r.xadd("hitl:requests", {"cancel": json.dumps({"id": "r-1"})})
    drain(intake)
    assert State.APPROVED == store.get("r-1").state
    assert "refused" == audit_kinds(r, "r-1")[-1]
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]


@pytest.mark.parametrize("payload", ["not json", '{"reason": "no id"}', "[1]", "[" * 700])
def test_malformed_cancel_is_dead_lettered(
    intake: IntakeConsumer, r: redis.Redis, payload: str
) -> None:
    """A cancel that does not say which request goes to hitl:dead, explaining the format."""
    r.xadd("hitl:requests", {"cancel": payload})
    drain(intake)
    [(_id, dead)] = r.xrange("hitl:dead")
    assert 'cancel must be JSON {"id": ..., "reason": ...}' == dead["reason"]
    assert {"cancel": payload} == json.loads(dead["payload"])
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]


def test_cancel_without_a_handler_is_dead_lettered(store: Store, r: redis.Redis) -> None:
    """A consumer that cannot cancel says so in hitl:dead instead of dropping the cancel."""
    consumer = _consumer(store)
    r.xadd("hitl:requests", {"cancel": json.dumps({"id": "r-1"})})
    drain(consumer)
    consumer.close()
    [(_id, dead)] = r.xrange("hitl:dead")
    assert "this consumer has no cancel handler" == dead["reason"]


def test_cancel_right_after_submit_in_one_batch(
    intake: IntakeConsumer, store: Store, r: redis.Redis
) -> None:
    """A cancel queued behind its own request (same batch) cancels that request."""
    xadd_raw(r, _valid("r-1"))
    r.xadd("hitl:requests", {"cancel": json.dumps({"id": "r-1", "reason": "user gave up"})})
    assert 2 == intake.run_once(block_ms=0)
    assert State.CANCELLED == store.get("r-1").state
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]


def test_record_is_what_the_agent_sent(
    intake: IntakeConsumer, store: Store, r: redis.Redis
) -> None:
    """Every field of the request survives intake unchanged."""
    request = ApprovalRequest(
        id="r-1",
        action="refund",
        params={"order": "A-1", "amount": 120.5, "note": "ünï"},
        param_schema={"type": "object"},
        summary="Refund",
        reasoning="late",
        context={"ticket": "T-1"},
        agent_id="bot",
        session_id="s-1",
        requested_by="alice",
        risk="high",
        confidence=0.7,
        plan=["one", "two"],
        dry_run=True,
        timeout_s=600,
        callback_url="https://hooks.example.com/x",
    )
    xadd_raw(r, request.model_dump_json())
    drain(intake)
    record: RequestRecord = store.get("r-1")
    assert (request, request.params) == (record.request, record.params)
