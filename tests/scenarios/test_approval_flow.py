"""End to end: an agent asks (SDK or raw XADD), a human answers on the CLI, the agent acts."""

from __future__ import annotations

import base64
import json

import pytest
import redis
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hitl.cli import main
from hitl.client import Client, require_approval
from hitl.errors import ApprovalRejected
from hitl.models import Decision, Outcome, State
from hitl.queue.audit import verify_entries
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.api_server import ApiServer
from tests.conftest import KEYRING
from tests.scenarios.helpers import (
    audit_entries,
    audit_kinds,
    consuming,
    drain,
    run_in_thread,
    wait_until,
)


def _as(monkeypatch: pytest.MonkeyPatch, api: ApiServer, who: str) -> None:
    """The CLI decides with ``who``'s personal token (issued as `hitl tokens create` does)."""
    monkeypatch.setenv("HITL_TOKEN", api.token(who))


def _pending(store: Store) -> str:
    return wait_until(lambda: (store.pending_ids() or [None])[0], what="a pending request")


def test_sdk_request_cli_modify_agent_gets_the_params(
    api_env: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
    pintake: IntakeConsumer,
    store: Store,
    r: redis.Redis,
) -> None:
    """submit -> pending -> `hitl approve --param amount=50` -> the blocked call gets amount 50."""
    with Client(agent_id="ops-agent") as client:

        def ask() -> Decision:
            return client.request_approval(
                "delete_production_data",
                {"table": "orders", "amount": 100},
                summary="Purge 100 old orders",
                requested_by="alice",
                timeout=30,
            )

        with consuming(pintake), run_in_thread(ask) as agent:
            rid = _pending(store)
            assert State.PENDING == store.get(rid).state
            _as(monkeypatch, api_env, "bob")
            assert 0 == main(["approve", rid, "--param", "amount=50"])
        decision: Decision = agent.value
        assert decision == client.verify(decision)
    assert (Outcome.APPROVED, {"table": "orders", "amount": 50}, True) == (
        decision.outcome,
        decision.params,
        decision.modified,
    )
    assert ({"table": "orders", "amount": 100}, "bob", "Bob Brown", "api") == (
        decision.original_params,
        decision.reviewers[0].user_id,
        decision.reviewers[0].display_name,
        decision.reviewers[0].channel,
    )
    assert ["submitted", "modified", "approved"] == audit_kinds(r, rid)
    assert verify_entries(audit_entries(r), expect_head=store.head()).ok


def test_cli_rejection_raises_from_the_decorator(
    api_env: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
    pintake: IntakeConsumer,
    store: Store,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`hitl reject --reason` -> the decorated tool raises ApprovalRejected (reason, reviewer)."""
    ran: list[str] = []
    with Client() as client:

        @require_approval(client, action="delete_production_data", requested_by="alice")
        def purge(table: str) -> None:
            ran.append(table)

        with consuming(pintake), run_in_thread(lambda: purge("orders")) as agent:
            rid = _pending(store)
            _as(monkeypatch, api_env, "bob")
            assert 0 == main(["reject", rid, "--reason", "not during the freeze"])
    err = agent.error
    assert isinstance(err, ApprovalRejected)
    assert err.reviewer is not None
    assert ("not during the freeze", "bob", "Bob Brown", Outcome.REJECTED, []) == (
        err.reason,
        err.reviewer.user_id,
        err.reviewer.display_name,
        err.outcome,
        ran,
    )
    assert f"request {rid} rejected by Bob Brown: not during the freeze" == str(err)
    assert f"{rid}: rejected by Bob Brown (bob)" in capsys.readouterr().out


def test_raw_xadd_without_the_sdk(
    api_env: ApiServer, monkeypatch: pytest.MonkeyPatch, pintake: IntakeConsumer, r: redis.Redis
) -> None:
    """Another language: XADD hand-written JSON, BLPOP the answer, check the HMAC by the formula."""
    r.xadd(
        "hitl:requests",
        {
            "request": '{"id": "raw-1", "action": "delete_production_data",'
            ' "params": {"table": "logs"}, "requested_by": "alice"}'
        },
    )
    drain(pintake)
    _as(monkeypatch, api_env, "bob")
    assert 0 == main(["approve", "raw-1"])
    _key, raw = r.blpop(["hitl:decision:raw-1"], timeout=5)
    decision = json.loads(raw)
    signature = base64.b64decode(decision.pop("signature"))
    message = b"hitl-decision/1\n" + rfc8785.dumps(decision)
    public = base64.b64decode(KEYRING.public().to_env().split(":", 1)[1])
    Ed25519PublicKey.from_public_bytes(public).verify(signature, message)  # raises if forged
    assert ("approved", {"table": "logs"}) == (decision["outcome"], decision["params"])


def test_auto_approved_request_never_waits(
    env: None, pintake: IntakeConsumer, store: Store
) -> None:
    """A low-risk tool is approved by the policy; the agent's call returns without a human."""
    with Client() as client, consuming(pintake):
        decision = client.request_approval("list_instances", {"region": "eu-west-1"}, timeout=10)
    assert (Outcome.AUTO_APPROVED, [], 0) == (
        decision.outcome,
        decision.reviewers,
        store.pending_count(),
    )
    assert "Listing instances is read-only" in decision.reason


def test_two_person_rule_end_to_end(
    api_env: ApiServer,
    monkeypatch: pytest.MonkeyPatch,
    pintake: IntakeConsumer,
    store: Store,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """delete_volume needs security AND a lead engineer: one approval waits, the second decides."""
    with (
        Client() as client,
        consuming(pintake),
        run_in_thread(
            lambda: client.request_approval(
                "delete_volume", {"volume_id": "vol-1"}, requested_by="alice", timeout=30
            )
        ) as agent,
    ):
        rid = _pending(store)
        _as(monkeypatch, api_env, "carol")
        assert 0 == main(["approve", rid])
        assert "1 of 2 approvals" in capsys.readouterr().out
        _as(monkeypatch, api_env, "carol")
        assert 1 == main(["approve", rid])
        assert "has already voted" in capsys.readouterr().err
        _as(monkeypatch, api_env, "dave")
        assert 0 == main(["approve", rid])
    assert ["carol", "dave"] == [rv.user_id for rv in agent.value.reviewers]
