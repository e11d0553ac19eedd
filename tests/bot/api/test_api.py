"""The HTTP API of ``hitl serve`` through its real door: the service's aiohttp app on a port,
real Redis, the shipped policy, tokens minted by the code behind ``hitl tokens create``."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonschema
import pytest
import redis

from hitl.config import Settings
from hitl.handlers.tokens import Claims, encode, revoke
from hitl.keys import KeyRing
from hitl.models import State
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from hitl.queue.tokens import TokenRecord
from hitl.service import Service
from tests.api_server import ApiServer
from tests.conftest import KEYRING
from tests.redis_server import free_port
from tests.scenarios.helpers import audit_entries, audit_kinds, submit_raw


def _refused_tokens(r: redis.Redis) -> list[dict[str, Any]]:
    return [e for e in audit_entries(r) if e["kind"] == "token_refused"]


# -- identity ----------------------------------------------------------------------------------


def test_whoami_names_the_tokens_reviewer(api: ApiServer) -> None:
    """A reviewer token is canonicalized to the directory id and shown with the display name."""
    token = api.token("Bob@Example.com")
    status, body, _ = api.call("GET", "/whoami", token)
    assert (200, "bob", "Bob Brown", "reviewer") == (
        status,
        body["sub"],
        body["display_name"],
        body["role"],
    )


def test_no_token_is_401_with_a_bearer_challenge(api: ApiServer) -> None:
    """Without a token every route answers 401 and names the scheme to use."""
    status, body, headers = api.call("GET", "/requests")
    assert (401, "unauthenticated") == (status, body["error"]["code"])
    assert headers["WWW-Authenticate"].startswith("Bearer")


def _forged(api: ApiServer) -> str:
    other = KeyRing.generate()
    now = api.service.store.clock()
    claims = Claims(
        tid="t-forged", sub="bob", role="reviewer", iat=now, exp=now + 60, kid=other.active
    )
    return encode(claims, other)


def _edited(api: ApiServer) -> str:
    token = api.token("carol")
    body, _, sig = token.removeprefix("hitl_").partition(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["sub"] = "bob"
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "hitl_" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + sig


def _expired(api: ApiServer) -> str:
    now = api.service.store.clock()
    claims = Claims(
        tid="t-old", sub="bob", role="reviewer", iat=now - 100, exp=now - 1, kid=KEYRING.active
    )
    record = TokenRecord(tid="t-old", sub="bob", role="reviewer", iat=now - 100, exp=now - 1)
    api.records.create(record, _event("t-old"))
    return encode(claims, KEYRING)


def _revoked(api: ApiServer) -> str:
    token, record = api.issue("bob")
    revoke(api.records, record.tid, actor="test-operator")
    return token


def _planted(api: ApiServer) -> str:
    """A record written straight into Redis, with a token that carries no valid signature."""
    now = api.service.store.clock()
    record = TokenRecord(tid="t-planted", sub="bob", role="operator", iat=now, exp=now + 600)
    api.service.store.redis.set(api.service.store.keys.token("t-planted"), record.model_dump_json())
    payload = {"tid": "t-planted", "sub": "bob", "role": "operator", "iat": now, "exp": now + 600,
               "kid": KEYRING.active}  # fmt: skip
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "hitl_" + base64.urlsafe_b64encode(raw).decode().rstrip("=") + ".AAAA"


def _unknown(api: ApiServer) -> str:
    now = api.service.store.clock()
    claims = Claims(
        tid="t-never", sub="bob", role="reviewer", iat=now, exp=now + 60, kid=KEYRING.active
    )
    return encode(claims, KEYRING)


def _event(tid: str) -> Any:
    from hitl.queue.audit import AuditEvent

    return AuditEvent("token_created", None, "test-operator", {"tid": tid})


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_forged, "bad_signature"),
        (_edited, "bad_signature"),
        (_expired, "expired"),
        (_revoked, "revoked"),
        (_planted, "bad_signature"),
        (_unknown, "unknown"),
        (lambda _api: "hitl_not-a-token", "malformed"),
    ],
    ids=["forged", "edited", "expired", "revoked", "planted", "unknown", "malformed"],
)
def test_bad_tokens_are_401_audited_and_decide_nothing(
    api: ApiServer, r: redis.Redis, pintake: IntakeConsumer, store: Store, make: Any, reason: str
) -> None:
    """Forged, edited, expired, revoked, planted and unknown tokens: 401, audited, no vote."""
    submit_raw(r, pintake, "r-1")
    token = make(api)
    status, body, headers = api.call("POST", "/requests/r-1/approve", token, {"reason": "go"})
    assert (401, "unauthenticated", True) == (
        status,
        body["error"]["code"],
        headers["WWW-Authenticate"].startswith("Bearer"),
    )
    refused = _refused_tokens(r)
    assert [reason] == [e["details"]["reason"] for e in refused]
    assert (State.PENDING, []) == (store.get("r-1").state, store.get("r-1").votes)
    assert token not in json.dumps(audit_entries(r))  # the token itself is never logged


# -- deciding ----------------------------------------------------------------------------------


def test_two_person_rule_with_two_real_reviewers(
    api: ApiServer, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """A critical request needs a manager and compliance: bob's vote waits, frank's decides."""
    submit_raw(r, pintake, "r-1", action="deploy_to_production", params={"service": "api"})
    status, first, _ = api.call("POST", "/requests/r-1/approve", api.token("bob"), {})
    assert (200, "pending", None) == (status, first["state"], first["decision"])
    assert first["message"].startswith("1 of 2 approvals")
    status, again, _ = api.call("POST", "/requests/r-1/approve", api.token("bob"), {})
    assert (403, "not_authorized") == (status, again["error"]["code"])
    status, second, _ = api.call("POST", "/requests/r-1/approve", api.token("frank"), {})
    reviewers = second["decision"]["reviewers"]
    assert (200, "approved") == (status, second["state"])
    assert [("bob", "api"), ("frank", "api")] == [(v["user_id"], v["channel"]) for v in reviewers]


def test_the_requesters_own_token_cannot_approve(
    api: ApiServer, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """Bob asked; bob's token is refused (403, the policy's words) and the refusal is audited."""
    submit_raw(r, pintake, "r-1", requested_by="bob")
    status, body, _ = api.call("POST", "/requests/r-1/approve", api.token("bob"), {})
    assert (403, "Bob Brown made this request and cannot approve it") == (
        status,
        body["error"]["message"].split(" (")[0].split(";")[0],
    )
    assert "refused" == audit_kinds(r, "r-1")[-1]
    assert State.PENDING == store.get("r-1").state


def test_a_second_decision_is_409_naming_the_winner(
    api: ApiServer, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """After bob approved, frank's rejection is 409 and says who decided and when."""
    submit_raw(r, pintake, "r-1")
    assert 200 == api.call("POST", "/requests/r-1/approve", api.token("bob"), {})[0]
    status, body, _ = api.call(
        "POST", "/requests/r-1/reject", api.token("frank"), {"reason": "too late"}
    )
    assert (409, "already_decided") == (status, body["error"]["code"])
    assert "already approved by Bob Brown (bob) at " in body["error"]["message"]


def test_modify_through_the_api(api: ApiServer, r: redis.Redis, pintake: IntakeConsumer) -> None:
    """POST /modify approves changed params; the decision keeps the original ones."""
    submit_raw(r, pintake, "r-1")
    status, body, _ = api.call(
        "POST", "/requests/r-1/modify", api.token("bob"), {"params": {"amount": 50}}
    )
    assert (200, {"table": "orders", "amount": 50}, {"table": "orders", "amount": 100}) == (
        status,
        body["decision"]["params"],
        body["decision"]["original_params"],
    )


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{not json", 400, "invalid_request"),
        (b'{"reasn": "typo"}', 400, "invalid_request"),
        (b"[1, 2]", 400, "invalid_request"),
        (json.dumps({"reason": "x" * 70 * 1024}).encode(), 413, "too_large"),
    ],
    ids=["malformed", "unknown-field", "not-an-object", "70KiB"],
)
def test_bad_bodies_are_refused_and_nothing_changes(
    api: ApiServer,
    r: redis.Redis,
    pintake: IntakeConsumer,
    store: Store,
    raw: bytes,
    status: int,
    code: str,
) -> None:
    """Malformed JSON, an unknown field or a 70 KiB body: 400/413, the request still pending."""
    submit_raw(r, pintake, "r-1")
    got, body, _ = api.call("POST", "/requests/r-1/approve", api.token("bob"), raw=raw)
    assert (status, code) == (got, body["error"]["code"])
    assert (State.PENDING, []) == (store.get("r-1").state, store.get("r-1").votes)


def test_unknown_field_names_the_field(api: ApiServer, r: redis.Redis) -> None:
    """The 400 for a typo says which field is unknown."""
    status, body, _ = api.call("POST", "/requests/r-1/reject", api.token("bob"), {"reasn": "x"})
    assert (400, [["reason", "Field required"], ["reasn", "unknown field"]]) == (
        status,
        body["error"]["errors"],
    )


def test_unknown_request_is_404(api: ApiServer, r: redis.Redis) -> None:
    """An id that does not exist: 404 on read and on decide."""
    token = api.token("bob")
    assert 404 == api.call("GET", "/requests/nope", token)[0]
    assert 404 == api.call("POST", "/requests/nope/approve", token, {})[0]


def test_break_glass_and_acknowledgement(
    api: ApiServer, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """Bob (engineering manager) breaks glass alone; alice may not; carol (security) acks."""
    submit_raw(r, pintake, "r-1", action="deploy_to_production", params={"service": "api"})
    status, body, _ = api.call(
        "POST", "/requests/r-1/break-glass", api.token("carol"), {"reason": "prod down"}
    )
    assert (403, "not_authorized") == (status, body["error"]["code"])
    status, body, _ = api.call(
        "POST", "/requests/r-1/break-glass", api.token("bob"), {"reason": "prod down"}
    )
    assert (200, "approved") == (status, body["state"])
    status, body, _ = api.call("POST", "/requests/r-1/ack", api.token("carol"))
    assert (200, "carol") == (status, body["record"]["break_glass"]["acked_by"]["user_id"])
    assert ["break_glass", "break_glass_acknowledged"] == [
        k for k in audit_kinds(r, "r-1") if k.startswith("break_glass")
    ]


# -- operators ---------------------------------------------------------------------------------


def test_operator_override_is_explicit_and_audited(
    api: ApiServer, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """An operator decides a critical request alone: channel operator, operator_override audited;
    a reviewer token cannot (403, audited); a terminal request is never overridden (409)."""
    submit_raw(r, pintake, "r-1", action="deploy_to_production", params={"service": "api"})
    body = {"outcome": "approved", "reason": "incident 42: ship the fix"}
    status, refused, _ = api.call("POST", "/requests/r-1/override", api.token("frank"), body)
    assert (403, "not_authorized") == (status, refused["error"]["code"])
    operator = api.token("ops-oncall", operator=True)
    status, done, _ = api.call("POST", "/requests/r-1/override", operator, body)
    assert (200, "approved") == (status, done["state"])
    assert [("ops-oncall", "operator")] == [
        (v["user_id"], v["channel"]) for v in done["decision"]["reviewers"]
    ]
    override = next(e for e in audit_entries(r) if e["kind"] == "operator_override")
    assert ("ops-oncall", True, "approved") == (
        override["actor"],
        override["details"]["alert"],
        override["details"]["outcome"],
    )
    assert ("frank", "override") == next(
        (e["actor"], e["details"]["attempt"]) for e in audit_entries(r) if e["kind"] == "refused"
    )
    again = {"outcome": "rejected", "reason": "changed my mind"}
    assert 409 == api.call("POST", "/requests/r-1/override", operator, again)[0]


def test_override_needs_a_reason(api: ApiServer, r: redis.Redis, pintake: IntakeConsumer) -> None:
    """An override without a reason is 400 and changes nothing."""
    submit_raw(r, pintake, "r-1")
    operator = api.token("ops", operator=True)
    status, body, _ = api.call(
        "POST", "/requests/r-1/override", operator, {"outcome": "approved", "reason": " "}
    )
    assert (400, True) == (status, "needs a reason" in body["error"]["message"])


def test_cancel_is_for_operators(
    api: ApiServer, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """A reviewer token cannot cancel (403); an operator's cancel is recorded as theirs."""
    submit_raw(r, pintake, "r-1")
    assert 403 == api.call("POST", "/requests/r-1/cancel", api.token("bob"), {})[0]
    operator = api.token("ops", operator=True)
    status, body, _ = api.call("POST", "/requests/r-1/cancel", operator, {"reason": "dup"})
    assert (200, "cancelled", "operator") == (
        status,
        body["state"],
        body["decision"]["reviewers"][0]["channel"],
    )


def test_audit_head_and_checkpoint(api: ApiServer, r: redis.Redis, pintake: IntakeConsumer) -> None:
    """The heads move with the chains; an operator checkpoint signs each chain that moved (the
    request's and chain 0, where tokens are audited) and the head shows them."""
    submit_raw(r, pintake, "r-1")
    operator = api.token("ops", operator=True)
    assert 403 == api.call("POST", "/audit/checkpoint", api.token("bob"))[0]
    status, made, _ = api.call("POST", "/audit/checkpoint", operator)
    status_head, head, _ = api.call("GET", "/audit/head", operator)
    assert (200, 200) == (status, status_head)
    moved = {f"hitl:audit:{{{h['chain']}}}": (h["seq"], h["hash"]) for h in head["chains"]}
    signed = {c["chain"]: (c["seq"], c["hash"]) for c in made["checkpoints"]}
    assert ["hitl:audit:{0}", "hitl:audit:{9}"] == sorted(signed)
    assert {k: v for k, v in moved.items() if v[0]} == signed
    assert (16, made["checkpoints"][-1]) == (len(head["chains"]), head["checkpoint"])


# -- listing -----------------------------------------------------------------------------------


def test_pending_filters_and_mine(api: ApiServer, r: redis.Redis, pintake: IntakeConsumer) -> None:
    """Filters by risk and action; mine=1 keeps what the token's reviewer may decide."""
    submit_raw(r, pintake, "high-1")
    submit_raw(r, pintake, "crit-1", action="deploy_to_production", params={"service": "api"})
    submit_raw(r, pintake, "bobs", requested_by="bob")
    bob = api.token("bob")

    def ids(query: str) -> list[str]:
        status, body, _ = api.call("GET", "/requests" + query, bob)
        assert 200 == status
        return sorted(x["id"] for x in body["requests"])

    assert ["bobs", "crit-1", "high-1"] == ids("")
    assert ["crit-1"] == ids("?risk=critical")
    assert ["crit-1"] == ids("?action=deploy_to_production")
    assert ["crit-1", "high-1"] == ids("?mine=1")
    assert 400 == api.call("GET", "/requests?risk=extreme", bob)[0]
    assert 400 == api.call("GET", "/requests?limit=0", bob)[0]


def test_show_is_the_record_as_cli_json(
    api: ApiServer, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """GET /requests/{id} is the same JSON as `hitl show --json`."""
    from hitl.cli import _record_json

    submit_raw(r, pintake, "r-1")
    status, body, _ = api.call("GET", "/requests/r-1", api.token("carol"))
    assert (200, _record_json(store.get("r-1"))) == (status, body)


# -- failure modes -----------------------------------------------------------------------------


def test_redis_down_is_503(settings: Settings) -> None:
    """With Redis unreachable the API answers 503 (it cannot even check the token's record)."""
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    service = Service(down)
    now = service.store.clock()
    claims = Claims(
        tid="t-1", sub="bob", role="reviewer", iat=now, exp=now + 60, kid=KEYRING.active
    )
    try:
        with ApiServer(service) as api:
            status, body, _ = api.call("POST", "/requests/r-1/approve", encode(claims, KEYRING), {})
    finally:
        for consumer in service.consumers:
            consumer.close()
        service.store.redis.close()
    assert (503, "unavailable") == (status, body["error"]["code"])
    assert "Redis is unreachable" in body["error"]["message"]


# -- the document ------------------------------------------------------------------------------


def test_openapi_describes_every_route_and_every_answer_validates(
    api: ApiServer, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """Every route of /api/v1 is in the OpenAPI 3.1 document, and answers match its schemas."""
    status, doc, _ = api.call("GET", "/openapi.json")
    assert (200, "3.1.0") == (status, doc["openapi"])
    mounted = {
        (route.method.lower(), route.resource.canonical)
        for route in api.service.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/v1")
    }
    described = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert mounted == described

    def check(method: str, template: str, path: str, token: str | None, body: Any = None) -> int:
        got, answer, _ = api.call(method, path, token, body)
        op = doc["paths"]["/api/v1" + template][method.lower()]
        assert str(got) in op["responses"], f"{method} {template}: {got} is not documented"
        schema = op["responses"][str(got)]["content"]["application/json"]["schema"]
        root = {"components": doc["components"], **schema}
        jsonschema.Draft202012Validator(root).validate(answer)
        return got

    submit_raw(r, pintake, "r-1", action="deploy_to_production", params={"service": "api"})
    submit_raw(r, pintake, "r-2")
    bob, frank, ops = api.token("bob"), api.token("frank"), api.token("ops", operator=True)
    assert 200 == check("GET", "/whoami", "/whoami", bob)
    assert 200 == check("GET", "/requests", "/requests", bob)
    assert 401 == check("GET", "/requests", "/requests", None)
    assert 200 == check("GET", "/requests/{id}", "/requests/r-1", bob)
    assert 404 == check("GET", "/requests/{id}", "/requests/nope", bob)
    assert 200 == check("POST", "/requests/{id}/approve", "/requests/r-1/approve", bob, {})
    assert 403 == check("POST", "/requests/{id}/approve", "/requests/r-1/approve", bob, {})
    assert 200 == check("POST", "/requests/{id}/approve", "/requests/r-1/approve", frank, {})
    assert 409 == check(
        "POST", "/requests/{id}/reject", "/requests/r-1/reject", frank, {"reason": "no"}
    )
    assert 400 == check("POST", "/requests/{id}/modify", "/requests/r-2/modify", bob, {"x": 1})
    assert 403 == check("POST", "/requests/{id}/ack", "/requests/r-2/ack", bob)
    assert 403 == check(
        "POST", "/requests/{id}/break-glass", "/requests/r-2/break-glass", frank, {"reason": "x"}
    )
    assert 403 == check("POST", "/requests/{id}/cancel", "/requests/r-2/cancel", bob, {})
    params = {"params": {"amount": 5}}
    assert 200 == check("POST", "/requests/{id}/modify", "/requests/r-2/modify", bob, params)
    assert 409 == check(
        "POST",
        "/requests/{id}/override",
        "/requests/r-1/override",
        ops,
        {"outcome": "rejected", "reason": "x"},
    )
    submit_raw(r, pintake, "r-3")
    assert 200 == check(
        "POST", "/requests/{id}/reject", "/requests/r-3/reject", bob, {"reason": "n"}
    )
    submit_raw(r, pintake, "r-4")
    assert 200 == check("POST", "/requests/{id}/cancel", "/requests/r-4/cancel", ops, {})
    submit_raw(r, pintake, "r-5")
    overriding = {"outcome": "approved", "reason": "incident"}
    assert 200 == check(
        "POST", "/requests/{id}/override", "/requests/r-5/override", ops, overriding
    )
    submit_raw(r, pintake, "r-6")
    glass = {"reason": "prod down"}
    assert 200 == check(
        "POST", "/requests/{id}/break-glass", "/requests/r-6/break-glass", bob, glass
    )
    carol = api.token("carol")
    assert 200 == check("POST", "/requests/{id}/ack", "/requests/r-6/ack", carol)
    assert 404 == check(
        "POST", "/digests/{digest_id}/approve-all", "/digests/dg-none/approve-all", bob, {}
    )
    assert 200 == check("GET", "/audit/head", "/audit/head", bob)
    assert 200 == check("POST", "/audit/checkpoint", "/audit/checkpoint", ops)
