"""The ``hitl`` command: human and ``--json`` output, and exit codes (0 ok, 1 refused,
2 bad input, 3 Redis down), against a real Redis with the shipped policy."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from hitl.cli import main, parse_param
from hitl.config import Settings
from hitl.errors import InvalidRequest
from hitl.keys import KeyRing
from hitl.models import State
from hitl.queue.audit import AuditEvent
from hitl.queue.intake import IntakeConsumer
from hitl.queue.keys import Keys
from hitl.queue.store import Store
from tests.api_server import ApiServer
from tests.conftest import KEYRING, keyring_file
from tests.redis_server import free_port
from tests.scenarios.helpers import (
    audit_entries,
    audit_kinds,
    consuming,
    drain,
    run_in_thread,
    submit_raw,
    xadd_raw,
)

WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"


@pytest.fixture
def run(env: None, capsys: pytest.CaptureFixture[str]) -> Any:
    """``run(*argv) -> (exit code, stdout, stderr)``."""

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


# -- pending -----------------------------------------------------------------------------------


def test_pending_human(run: Any, r: redis.Redis, pintake: IntakeConsumer) -> None:
    """A header with the count and one row per request: id, risk, votes, summary."""
    assert (0, "0 pending (all)\n", "") == run("pending")
    submit_raw(r, pintake, "r-1", summary="Drop the orders table")
    submit_raw(r, pintake, "r-2")
    code, out, _err = run("pending")
    lines = out.splitlines()
    assert (0, "2 pending (all)") == (code, lines[0])
    assert lines[1].split()[:2] == ["ID", "RISK"]
    row = next(line for line in lines if line.startswith("r-1"))
    assert ["r-1", "high", "0/1"] == row.split()[:3]
    assert row.endswith("Drop the orders table")


def test_pending_json_and_paging(run: Any, r: redis.Redis, pintake: IntakeConsumer) -> None:
    """--json gives total, offset and full records; --limit pages with a hint for the next."""
    for i in range(3):
        submit_raw(r, pintake, f"r-{i}")
    code, out, _err = run("pending", "--json", "--limit", "2")
    data = json.loads(out)
    assert (0, 3, 0, 2) == (code, data["total"], data["offset"], len(data["requests"]))
    assert {"id", "state", "request", "verdict", "votes"} <= set(data["requests"][0])
    _code, human, _err = run("pending", "--limit", "2")
    assert human.rstrip().endswith("... more: --offset 2")


def test_pending_as_a_reviewer(
    run: Any, r: redis.Redis, pintake: IntakeConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--as (or HITL_USER) lists only what that reviewer may decide; --all lists everything."""
    submit_raw(r, pintake, "mine", requested_by="bob")
    submit_raw(r, pintake, "theirs")
    code, out, _err = run("pending", "--as", "bob", "--json")
    assert (0, ["theirs"]) == (code, [x["id"] for x in json.loads(out)["requests"]])
    monkeypatch.setenv("HITL_USER", "alice")  # standard role: neither high-risk request
    assert "0 pending (that alice may decide)" == run("pending")[1].splitlines()[0]
    assert "2 pending (all)" == run("pending", "--all")[1].splitlines()[0]


# -- show --------------------------------------------------------------------------------------


def test_show_human_and_json(run: Any, r: redis.Redis, pintake: IntakeConsumer) -> None:
    """show prints the request for a person, or the whole record with --json."""
    submit_raw(r, pintake, "r-1", summary="Drop orders", reasoning="GDPR request", dry_run=True)
    code, out, _err = run("show", "r-1")
    assert 0 == code
    assert out.startswith("r-1  [HIGH]  Drop orders\n")
    for expected in (
        "  state      pending",
        "  action     delete_production_data   ** DRY RUN **",
        "on behalf of alice",
        "  needs      1 approval(s) from roles manager",
        "  reasoning  GDPR request",
        "    table = orders",
        "    amount = 100",
    ):
        assert expected in out
    data = json.loads(run("show", "r-1", "--json")[1])
    assert ("r-1", "pending", "delete_production_data") == (
        data["id"],
        data["state"],
        data["request"]["action"],
    )


def test_show_unknown_id_exits_1(run: Any) -> None:
    """An unknown id is a failed lookup (1) with a hint on stderr."""
    code, out, err = run("show", "nope")
    assert (1, "") == (code, out)
    assert err.startswith("hitl: no request 'nope' (check the id with `hitl pending`; ")


# -- approve / reject / cancel (through the API, with tokens) ---------------------------------


@pytest.fixture
def as_(api_env: ApiServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``as_("bob")``: the CLI runs with a token the operator issued to bob (HITL_TOKEN)."""

    def use(who: str, *, operator: bool = False) -> str:
        token = api_env.token(who, operator=operator)
        monkeypatch.setenv("HITL_TOKEN", token)
        return token

    return use


def test_approve_human_and_json(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """approve prints who decided and when; --json gives the signed decision."""
    submit_raw(r, pintake, "r-1")
    submit_raw(r, pintake, "r-2")
    as_("bob")
    code, out, err = run("approve", "r-1", "--reason", "checked")
    assert (0, "") == (code, err)
    assert re.fullmatch(rf"r-1: approved by Bob Brown \(bob\) at {WHEN}\n", out)
    code, out, _err = run("approve", "r-2", "--json")
    data = json.loads(out)
    assert (0, "r-2", "approved", "approved") == (
        code,
        data["id"],
        data["state"],
        data["decision"]["outcome"],
    )
    assert ("api", "manager") == (
        data["decision"]["reviewers"][0]["channel"],
        data["decision"]["reviewers"][0]["role"],
    )
    assert data["decision"]["signature"]


def test_approve_with_params(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """--param k=v modifies (JSON-typed values) and approves; show marks what changed."""
    submit_raw(r, pintake, "r-1")
    as_("bob")
    code, out, _err = run(
        "approve", "r-1", "--param", "amount=50", "--param", "table=refunds", "--json"
    )
    decision = json.loads(out)["decision"]
    assert (
        0,
        {"table": "refunds", "amount": 50},
        {"table": "orders", "amount": 100},
    ) == (
        code,
        decision["params"],
        decision["original_params"],
    )
    shown = run("show", "r-1")[1]
    assert "    amount = 50   (was 100)" in shown
    assert re.search(rf"  decision   approved by Bob Brown \(bob\) at {WHEN}", shown)


def test_param_typos_and_type_changes_exit_2(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """--param with an unknown name or another type is refused (exit 2) and changes nothing."""
    submit_raw(r, pintake, "r-1")
    as_("bob")
    for bad in ("amont=50", "amount=lots", "amount=1e400", 'amount="150"'):
        code, _out, err = run("approve", "r-1", "--param", bad)
        assert (2, "cannot modify") == (code, err.split(": ", 2)[1] if ": " in err else err)
    assert {"table": "orders", "amount": 100} == store.get("r-1").params


def test_param_values_follow_the_schema() -> None:
    """A string-typed param keeps "123" as text; others parse as JSON when they can."""
    schema = {"properties": {"ticket": {"type": "string"}}}
    assert [("ticket", "123"), ("amount", 12.5), ("flag", True), ("name", "bob")] == [
        parse_param(text, schema) for text in ("ticket=123", "amount=12.5", "flag=true", "name=bob")
    ]
    with pytest.raises(InvalidRequest, match="write it as name=value"):
        parse_param("amount", None)


def test_second_approval_is_refused_with_exit_1(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """A late click says who decided and when, on stderr, with exit code 1."""
    submit_raw(r, pintake, "r-1")
    as_("bob")
    run("approve", "r-1")
    as_("frank")
    code, out, err = run("approve", "r-1")
    assert (1, "") == (code, out)
    assert re.fullmatch(
        rf"hitl: refused: request r-1 is already approved by Bob Brown \(bob\) at {WHEN}\n", err
    )


def test_unauthorized_reviewer_is_refused(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """A reviewer without the role gets exit 1 and the policy's explanation."""
    submit_raw(r, pintake, "r-1")
    as_("alice")
    code, _out, err = run("approve", "r-1")
    assert 1 == code
    assert "hitl: refused: Alice Adams made this request and cannot approve it" in err
    as_("carol")
    code, _out, err = run("approve", "r-1")
    assert (1, True) == (code, "needs a reviewer with role 'manager'" in err)
    assert State.PENDING == store.get("r-1").state


def test_reject_human_and_json(run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer) -> None:
    """reject prints the outcome; --json has the state and the reason."""
    submit_raw(r, pintake, "r-1")
    submit_raw(r, pintake, "r-2")
    as_("bob")
    code, out, _err = run("reject", "r-1", "--reason", "not during the freeze")
    assert (0, True) == (code, out.startswith("r-1: rejected by Bob Brown (bob) at "))
    data = json.loads(run("reject", "r-2", "--reason", "no", "--json")[1])
    assert ("rejected", "no") == (data["state"], data["decision"]["reason"])


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["reject", "r-1", "--reason", " "], "a rejection needs a reason"),
        (["approve", "r-1", "--param", "amount"], "write it as name=value"),
        (["reject", "r-1", "--reason", "x" * 3001], "keep it under 3000"),
        (["approve", "r-1", "--as", "bob"], "identity comes from your token"),
        (["approve", "r-1", "--policy", "p.yaml"], "the server authorizes with its own policy"),
        (["approve", "r-1", "--break-glass", "--param", "amount=1"], "drop --param"),
    ],
)
def test_bad_input_exits_2(
    run: Any,
    as_: Any,
    r: redis.Redis,
    pintake: IntakeConsumer,
    store: Store,
    argv: list[str],
    words: str,
) -> None:
    """Bad input is exit code 2 with a message saying what to fix; nothing changes."""
    submit_raw(r, pintake, "r-1")
    as_("bob")
    code, out, err = run(*argv)
    assert (2, "") == (code, out)
    assert words in err
    assert State.PENDING == store.get("r-1").state


def test_deciding_without_url_or_token_says_what_to_set(
    run: Any, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """No HITL_URL / HITL_TOKEN (and no `hitl login`): exit 2 naming what to set."""
    submit_raw(r, pintake, "r-1")
    code, _out, err = run("approve", "r-1")
    assert 2 == code
    assert "HITL_URL and HITL_TOKEN not set" in err and "hitl login" in err
    assert State.PENDING == store.get("r-1").state


def test_param_against_the_schema_exits_2(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """A --param that breaks param_schema names the field."""
    schema = {"type": "object", "properties": {"amount": {"type": "number", "maximum": 100}}}
    submit_raw(r, pintake, "r-1", param_schema=schema)
    as_("bob")
    code, _out, err = run("approve", "r-1", "--param", "amount=500")
    assert 2 == code
    assert "amount: 500 is greater than the maximum of 100" in err


def test_reject_without_reason_is_a_usage_error(run: Any) -> None:
    """argparse refuses ``reject`` without --reason (exit status 2)."""
    with pytest.raises(SystemExit) as info:
        run("reject", "r-1")
    assert 2 == info.value.code


def test_cancel_needs_an_operator_token(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """cancel withdraws a pending request with an operator token; a reviewer's is refused."""
    submit_raw(r, pintake, "r-1")
    as_("bob")
    code, _out, err = run("cancel", "r-1", "--reason", "re-planned")
    assert (1, True) == (code, "needs an operator token" in err)
    as_("ops", operator=True)
    code, out, _err = run("cancel", "r-1", "--reason", "re-planned")
    assert (0, True) == (code, out.startswith("r-1: cancelled by ops at "))
    assert State.CANCELLED == store.get("r-1").state


def test_override_with_an_operator_token(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """`hitl override ID --reject --reason R` decides at once and says it was an override."""
    submit_raw(r, pintake, "r-1", action="deploy_to_production", params={"service": "api"})
    as_("frank")
    assert 1 == run("override", "r-1", "--approve", "--reason", "x")[0]
    as_("ops", operator=True)
    code, out, _err = run("override", "r-1", "--reject", "--reason", "incident 42", "--json")
    data = json.loads(out)
    assert (0, "rejected", "OPERATOR OVERRIDE: incident 42") == (
        code,
        data["state"],
        data["decision"]["reason"],
    )
    assert "operator_override" in audit_kinds(r, "r-1")


DIGEST_RULE = """
  - name: goodwill-credits
    reason: Small goodwill credits are reviewed in batches.
    action: issue_credit
    policy: mandatory
    roles: [standard]
    destination: channel:#support-approvals
    digest: true
"""


@pytest.fixture
def digest_api(
    env: None, settings: Settings, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ApiServer]:
    """`hitl serve`'s API with the shipped policy plus a digest rule for ``issue_credit``."""
    from hitl.policies import DEFAULT_PATH
    from hitl.service import Service

    text = DEFAULT_PATH.read_text().replace("\nrules:\n", "\nrules:\n" + DIGEST_RULE, 1)
    text = text.replace("\ntools:\n", "\ntools:\n  issue_credit: medium\n", 1)
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    service = Service(settings.model_copy(update={"policy_path": str(policy)}), store=store)
    service.consumers[0].ensure_group()
    with ApiServer(service) as server:
        monkeypatch.setenv("HITL_URL", server.url)
        yield server
    for consumer in service.consumers:
        consumer.close()


def test_approve_all_of_a_real_digest(
    run: Any, digest_api: ApiServer, r: redis.Redis, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hitl approve-all DIGEST` votes on each listed request through the API: each authorized
    (alice's own request is refused), decided, audited and delivered; exit 1 for the refusal."""
    service = digest_api.service
    requesters = ["dave", "dave", "alice"]
    for i, who in enumerate(requesters):
        xadd_raw(r, json.dumps({"id": f"c-{i}", "action": "issue_credit",
                                "params": {"amount": 5 + i}, "requested_by": who}))  # fmt: skip
    drain(service.consumers[0])
    assert ["c-0", "c-1", "c-2"] == sorted(service.digests.waiting("channel:#support-approvals"))
    digest = service.digests.post("channel:#support-approvals")
    assert digest is not None
    monkeypatch.setenv("HITL_TOKEN", digest_api.token("alice"))
    code, out, err = run("approve-all", digest.id, "--reason", "batch ok")
    assert (1, "") == (code, err)
    assert out.startswith(f"{digest.id}: 2 approved; 1 refused: ")
    assert [State.APPROVED, State.APPROVED, State.PENDING] == [
        store.get(f"c-{i}").state for i in range(3)
    ]
    delivered = [r.llen(f"hitl:decision:c-{i}") for i in range(3)]
    assert [1, 1, 0] == delivered
    decision = store.get("c-0").decision
    assert decision is not None
    assert ("alice", "api", "batch ok") == (
        decision.reviewers[0].user_id,
        decision.reviewers[0].channel,
        decision.reason,
    )
    kinds = [(e.get("request_id"), e["kind"]) for e in audit_entries(r)]
    assert {("c-0", "approved"), ("c-1", "approved"), ("c-2", "refused")} <= set(kinds)
    code, out, _err = run("approve-all", digest.id, "--json")
    data = json.loads(out)
    assert (1, [False, False, False]) == (code, [i["ok"] for i in data["items"]])


def test_approve_all_takes_no_as_and_an_unknown_digest_exits_1(run: Any, as_: Any) -> None:
    """Identity comes from the token (--as is refused, exit 2); an unknown digest is 404, exit 1."""
    as_("alice")
    assert 2 == run("approve-all", "dg-x", "--as", "bob")[0]
    code, _out, err = run("approve-all", "dg-none")
    assert 1 == code and "dg-none" in err


def test_break_glass_and_ack(run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer) -> None:
    """approve --break-glass approves alone and says who must ack by when; ack records it."""
    submit_raw(r, pintake, "r-1", action="deploy_to_production", params={"service": "api"})
    as_("bob")
    code, out, _err = run("approve", "r-1", "--break-glass", "--reason", "prod is down")
    assert (0, True) == (code, "BREAK-GLASS: a second person must run `hitl ack r-1` by" in out)
    as_("carol")
    code, out, _err = run("ack", "r-1")
    assert (0, "r-1: break-glass approval acknowledged by Carol Chen\n") == (code, out)


def test_pending_through_the_api(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """With HITL_URL, pending asks the service; --mine is what the token's reviewer may decide."""
    submit_raw(r, pintake, "theirs")
    submit_raw(r, pintake, "bobs", requested_by="bob")
    as_("bob")
    assert "2 pending (all)" == run("pending")[1].splitlines()[0]
    code, out, _err = run("pending", "--mine", "--json")
    assert (0, ["theirs"]) == (code, [x["id"] for x in json.loads(out)["requests"]])
    assert 2 == run("pending", "--as", "carol")[0]


def test_unreachable_service_exits_3(
    run: Any, r: redis.Redis, pintake: IntakeConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody listens at HITL_URL: exit 3, and the message says nothing was sent."""
    submit_raw(r, pintake, "r-1")
    monkeypatch.setenv("HITL_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HITL_TOKEN", "hitl_x.y")
    code, _out, err = run("approve", "r-1")
    assert (3, True) == (code, "nothing was sent" in err)


def test_a_connection_lost_after_sending_says_the_outcome_is_unknown(
    run: Any, r: redis.Redis, pintake: IntakeConsumer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service reads the request and hangs up: exit 3, the outcome is unknown, check with
    `hitl show ID` (never "nothing was written")."""
    submit_raw(r, pintake, "r-1")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def swallow() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)  # the whole request arrived ...

        monkeypatch.setenv("HITL_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
        monkeypatch.setenv("HITL_TOKEN", "hitl_x.y")
        with run_in_thread(swallow):
            code, _out, err = run("approve", "r-1")
    assert 3 == code
    assert "the outcome is unknown" in err and "`hitl show r-1`" in err
    assert "nothing was written" not in err


def test_login_checks_the_token_and_saves_it_privately(
    run: Any, api_env: ApiServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """login calls /whoami, saves URL + token with mode 0600; later commands use it; logout."""
    token = api_env.token("bob")
    monkeypatch.delenv("HITL_URL")
    code, out, _err = run("login", "--url", api_env.url, "--token", token)
    path = tmp_path / "config" / "hitl" / "credentials.json"
    assert (0, True) == (code, "as Bob Brown (bob, reviewer)" in out)
    assert (0o600, {"url": api_env.url, "token": token}) == (
        path.stat().st_mode & 0o777,
        json.loads(path.read_text()),
    )
    assert 1 == run("approve", "r-nope")[0]  # authenticated with the saved token: 404 is exit 1
    assert (0, "0 pending (that you may decide)\n") == run("pending", "--mine")[:2]
    assert 1 == run("login", "--url", api_env.url, "--token", "hitl_bad.x")[0]
    assert (0, f"removed {path}\n") == run("logout")[:2]
    assert 2 == run("approve", "r-nope")[0]


def test_tokens_create_list_revoke(
    run: Any, api_env: ApiServer, r: redis.Redis, pintake: IntakeConsumer, store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """An operator issues a token (printed once), lists it (never the token), revokes it; the
    revoked token is refused (exit 1) and nothing is decided with it."""
    submit_raw(r, pintake, "r-1")
    code, out, _err = run("tokens", "create", "BOB@example.com", "--label", "laptop", "--json")
    made = json.loads(out)
    assert (0, "bob", "reviewer", "laptop") == (code, made["sub"], made["role"], made["label"])
    listed = run("tokens", "list")[1]
    assert made["tid"] in listed and made["token"] not in listed
    assert (0, True) == (lambda c: (c[0], "revoked" in c[1]))(run("tokens", "revoke", made["tid"]))
    monkeypatch.setenv("HITL_TOKEN", made["token"])
    code, _out, err = run("approve", "r-1")
    assert (1, True) == (code, "the token was revoked" in err)
    assert State.PENDING == store.get("r-1").state
    assert ["token_created", "token_revoked", "token_refused"] == [
        k for k in audit_kinds(r) if k.startswith("token_")
    ]


def test_tokens_create_refuses_a_name_outside_the_directory(run: Any, r: redis.Redis) -> None:
    """A reviewer token for a name the server's policy does not know is refused (exit 2);
    an operator token may name a service account."""
    code, _out, err = run("tokens", "create", "eve1")
    assert (2, True) == (code, "'eve1' is not in the server policy's reviewer directory" in err)
    assert 0 == run("tokens", "create", "eve1", "--operator")[0]
    assert ["token_created"] == [k for k in audit_kinds(r) if k.startswith("token_")]


# -- submit ------------------------------------------------------------------------------------


def test_submit_file(
    run: Any, tmp_path: Path, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """submit --json FILE queues the request; --json after it prints the id as JSON."""
    path = tmp_path / "req.json"
    path.write_text(json.dumps({"id": "r-1", "action": "delete_production_data"}))
    assert (0, "submitted r-1\n", "") == run("submit", "--json", str(path))
    path.write_text(json.dumps({"id": "r-2", "action": "delete_production_data"}))
    code, out, _err = run("submit", "--json-file", str(path), "--json")
    assert (0, {"id": "r-2"}) == (code, json.loads(out))
    drain(pintake)
    assert ["r-1", "r-2"] == sorted(store.pending_ids())


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{oops", "is not JSON"),
        ('{"action": "x", "risk": "extreme"}', "risk: Input should be"),
        ('{"action": "x", "parms": {}}', "parms: unknown field"),
    ],
)
def test_submit_bad_file_exits_2(
    run: Any, tmp_path: Path, r: redis.Redis, content: str, words: str
) -> None:
    """A file that is not a valid request is exit 2 naming the problem; nothing is queued."""
    path = tmp_path / "req.json"
    path.write_text(content)
    code, _out, err = run("submit", "--json", str(path))
    assert (2, True) == (code, words in err)
    assert 0 == r.xlen("hitl:requests")


def test_submit_and_wait(run: Any, tmp_path: Path, pintake: IntakeConsumer) -> None:
    """--wait prints the outcome; an auto-approval exits 0, a still-pending request exits 1."""
    auto = tmp_path / "auto.json"
    auto.write_text(json.dumps({"id": "r-1", "action": "list_instances"}))
    pending = tmp_path / "pending.json"
    pending.write_text(json.dumps({"id": "r-2", "action": "delete_production_data"}))
    with consuming(pintake):
        code, out, _err = run("submit", "--json", str(auto), "--wait", "10")
        assert (0, True) == (code, out.startswith("r-1: auto_approved "))
        code, _out, err = run("submit", "--json", str(pending), "--wait", "0.3")
    assert 1 == code
    assert "no decision for r-2 within 0.3s; it is still pending" in err


# -- dead --------------------------------------------------------------------------------------


def test_dead_human_and_json(run: Any, r: redis.Redis, pintake: IntakeConsumer) -> None:
    """dead lists dead-lettered input with its reason; --json adds the payload."""
    xadd_raw(r, "{not json")
    xadd_raw(r, '{"action": "x", "parms": 1}')
    drain(pintake)
    code, out, _err = run("dead")
    lines = out.splitlines()
    assert (0, "2 dead-lettered") == (code, lines[0])
    assert "invalid request: parms: unknown field" in lines[1]
    assert "request is not valid JSON" in lines[2]
    data = json.loads(run("dead", "--json")[1])
    assert {"request": "{not json"} == data[1]["payload"]
    assert {"id", "reason", "errors", "payload", "stream_id", "at"} <= set(data[0])


def test_dead_shows_the_digest_of_an_oversized_entry(
    run: Any, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """An oversized dead letter is listed with its size, digest and prefix (and in --json)."""
    text = '{"action": "x", "params": {"blob": "' + "y" * 300_000 + '"}}'
    xadd_raw(r, text)
    drain(pintake)
    line = run("dead")[1].splitlines()[1]
    assert f"[request: {len(text)} bytes, sha256 " in line
    assert 'starts \'{"action": "x"' in line
    [data] = json.loads(run("dead", "--json")[1])
    assert (text[:1024], str(len(text))) == (data["payload_prefix"], data["payload_bytes"])


def test_dead_letter_cap_is_a_setting(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """HITL_DEAD_MAXLEN sets how many dead letters are kept (default 10,000)."""
    from hitl.queue.connection import open_store

    assert 10_000 == settings.dead_maxlen
    monkeypatch.setenv("HITL_DEAD_MAXLEN", "123")
    configured = Settings.from_env(redis_url=settings.redis_url, keyring=KEYRING)
    store = open_store(configured)
    store.redis.close()
    assert 123 == store.dead_maxlen


# -- audit -------------------------------------------------------------------------------------


def test_audit_verify_and_export(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer, tmp_path: Path
) -> None:
    """verify checks every chain in Redis against its head (the token's creation is in chain 0,
    the request's entries in its own); export writes a file that verifies offline."""
    as_("bob")  # the token's creation is the first entry
    submit_raw(r, pintake, "r-1")
    assert 0 == run("approve", "r-1")[0]
    code, out, _err = run("audit", "verify")
    assert (0, True) == (code, out.startswith("OK: 3 entries in 16 chains, root seq 3 hash "))
    data = json.loads(run("audit", "verify", "--json")[1])
    assert (True, 3, None) == (data["ok"], data["entries"], data["first_bad_seq"])

    code, out, _err = run("audit", "checkpoint")
    lines = out.splitlines()
    assert (0, 3) == (code, len(lines))
    assert lines[0].startswith("checkpoint hitl:audit:{0} seq 1 hash ")
    assert lines[1].startswith(f"checkpoint hitl:audit:{{{Keys.chain_of('r-1')}}} seq 2 hash ")
    assert (0, "the chain has not moved since the last checkpoint\n") == run("audit", "checkpoint")[
        :2
    ]
    path = tmp_path / "audit.jsonl"
    code, out, _err = run("audit", "export", str(path))
    head = f"{data['head']['seq']}:{data['head']['hash']}"
    assert (0, f"check it offline (public key only) with: hitl audit verify {path}") == (
        code,
        out.splitlines()[1],
    )
    assert 5 == len(path.read_text().splitlines())  # 3 entries and their 2 chains' checkpoints
    code, out, _err = run("audit", "verify", str(path), "--head", head)
    assert (0, True) == (code, "anchored by 2 signed checkpoints covering 3 entries" in out)
    code, out, _err = run("audit", "verify", str(path), "--head", f"2:{'0' * 64}")
    assert (1, True) == (code, "not at the expected seq 2" in out)


def test_audit_verify_pages_through_long_chains(run: Any, store: Store) -> None:
    """Chains longer than one XRANGE page (5000) are read and verified completely."""
    store.append_events([AuditEvent("x", None, "t", {"i": i}) for i in range(5003)])
    code, out, _err = run("audit", "verify")
    assert (0, True) == (code, out.startswith("OK: 5003 entries in 16 chains, root seq 5003 "))


def test_audit_verify_with_other_public_keys_fails(
    run: Any, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints that do not verify with the trusted public keys cannot vouch for the chain."""
    store.append_events([AuditEvent("x", None, "t")])
    assert 0 == run("audit", "checkpoint")[0]
    monkeypatch.setenv("HITL_PUBLIC_KEY", KeyRing.generate().public().to_env())
    code, out, _err = run("audit", "verify")
    assert (1, True) == (
        code,
        out.startswith("BROKEN at seq 1 of chain 0: the checkpoint for seq 1 does not"),
    )


# -- Redis down --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["pending"],
        ["show", "r-1"],
        ["audit", "verify"],
        ["dead"],
    ],
)
def test_redis_down_exits_3(
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """With Redis unreachable every command exits 3 and says so."""
    monkeypatch.setenv("HITL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("HITL_SIGNING_KEY_FILE", str(keyring_file(tmp_path)))
    code = main(argv)
    err = capsys.readouterr().err
    assert 3 == code
    assert "unreachable" in err and "Connection refused" in err


def test_server_status_does_not_start_a_server(run: Any, tmp_path: Path) -> None:
    """``hitl server status`` reports without starting anything."""
    code, out, _err = run("server", "status")
    assert (0, True) == (code, out.startswith("stopped (data in "))


def test_configuration_errors_exit_2(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad setting is exit 2 with a message naming it."""
    monkeypatch.setenv("HITL_SIGNING_KEY_FILE", "/nonexistent/keys.json")
    code, _out, err = run("tokens", "create", "bob")
    assert (
        2,
        "hitl: configuration: signing key file /nonexistent/keys.json: No such file or directory\n",
    ) == (code, err)
    monkeypatch.setenv("HITL_PUBLIC_KEY", "k-1:not base64!")
    code, _out, err = run("pending")
    assert (2, "hitl: configuration: HITL_PUBLIC_KEY key k-1 is not base64\n") == (code, err)
    monkeypatch.delenv("HITL_PUBLIC_KEY")
    monkeypatch.setenv("HITL_DECISION_TTL", "a week")
    code, _out, err = run("pending")
    assert (2, True) == (code, "HITL_DECISION_TTL must be whole seconds" in err)


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "--json", "/nonexistent/request.json"],
        ["audit", "verify", "/nonexistent/audit.jsonl"],
        ["audit", "export", "/nonexistent/dir/audit.jsonl"],
        ["audit", "verify", "__FILE__", "--head", "not-a-head"],
    ],
)
def test_bad_paths_and_heads_exit_2(run: Any, tmp_path: Path, argv: list[str]) -> None:
    """A file that cannot be read or written, or a malformed --head, is bad input (exit 2)."""
    existing = tmp_path / "audit.jsonl"
    existing.write_text("")
    code, _out, err = run(*[str(existing) if a == "__FILE__" else a for a in argv])
    assert 2 == code
    assert err.startswith("hitl: ")


# -- input checks found by QA ------------------------------------------------------------------


def test_bad_limits_and_waits_exit_2_and_submit_nothing(
    run: Any, r: redis.Redis, tmp_path: Any
) -> None:
    """--limit 0, --offset -1 and --wait -1 are refused before anything is sent."""
    path = tmp_path / "req.json"
    path.write_text(json.dumps({"id": "w-1", "action": "refund"}))
    assert 2 == run("dead", "--limit", "0")[0]
    assert 2 == run("pending", "--all", "--offset", "-1")[0]
    assert 2 == run("submit", "--json", str(path), "--wait", "-1")[0]
    assert 0 == r.xlen("hitl:requests")


def test_a_url_that_is_not_redis_is_a_configuration_error(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HITL_REDIS_URL=bogus://x says what is wrong (exit 2), no traceback."""
    monkeypatch.setenv("HITL_REDIS_URL", "bogus://x")
    code, _out, err = run("pending", "--all")
    assert (2, True) == (code, "HITL_REDIS_URL 'bogus://x'" in err)


def test_online_verify_also_checks_a_given_head(
    run: Any, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """`hitl audit verify --head SEQ:HASH` on Redis fails when the chain does not end there."""
    submit_raw(r, pintake, "r-1")
    assert 0 == run("audit", "verify")[0]
    code, out, _err = run("audit", "verify", "--head", "1:" + "a" * 64)
    assert (1, True) == (code, "BROKEN" in out)


def test_stats_reports_the_articles_metrics(
    run: Any, as_: Any, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """stats: escalation rate (needed a human), approval rate and review latency, as JSON."""
    submit_raw(r, pintake, "auto-1", action="list_instances", params={"region": "eu"})
    submit_raw(r, pintake, "r-1")
    submit_raw(r, pintake, "r-2")
    as_("bob")
    assert 0 == run("approve", "r-1")[0]
    assert 0 == run("reject", "r-2", "--reason", "no")[0]
    code, out, _err = run("stats", "--json")
    figures = json.loads(out)
    assert (0, 3, 1, 2) == (code, figures["decisions"], figures["auto"], figures["needed_a_human"])
    assert (0.5, 0.6667) == (figures["approval_rate"], figures["escalation_rate"])
    assert figures["latency"]["decision_p50_s"] is not None
    assert "escalation rate 66.7%" in run("stats")[1]


# -- the attack: a local policy and an invented identity ---------------------------------------


def _attacker_policy(tmp_path: Path) -> Path:
    """The shipped policy with two invented compliance officers, as an attacker would write it."""
    import hitl.policies

    text = (Path(hitl.policies.__file__).parent / "default.yaml").read_text(encoding="utf-8")
    eves = "".join(
        f"  - id: {who}\n    display_name: {who}\n    roles: [compliance, manager]\n"
        for who in ("eve1", "eve2")
    )
    path = tmp_path / "attacker.yaml"
    path.write_text(text.replace("reviewers:\n", "reviewers:\n" + eves, 1), encoding="utf-8")
    return path


def test_a_local_policy_and_invented_reviewers_cannot_approve(
    run: Any, r: redis.Redis, pintake: IntakeConsumer, store: Store, tmp_path: Path
) -> None:
    """`approve ID --policy attacker.yaml --as eve1`, then eve2, on a critical two-person request:
    exit 2 each time, and the request is still pending with no votes."""
    path = _attacker_policy(tmp_path)
    submit_raw(r, pintake, "r-1", action="deploy_to_production", params={"service": "api"})
    for eve in ("eve1", "eve2"):
        code, out, err = run("approve", "r-1", "--policy", str(path), "--as", eve)
        assert (2, "") == (code, out)
        assert "identity comes from your token (HITL_TOKEN or `hitl login`), not --as" in err
    assert (State.PENDING, []) == (store.get("r-1").state, store.get("r-1").votes)


def test_policy_check_exit_codes_match_the_readme(run: Any, tmp_path: Path) -> None:
    """`hitl policy check`: 0 for a valid file, 2 (bad input) for an invalid one, as documented."""
    from hitl.policies import DEFAULT_PATH

    assert 0 == run("policy", "check", str(DEFAULT_PATH))[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {name: x, aprovals: 2}\n")
    code, _out, err = run("policy", "check", str(bad))
    assert (2, True) == (code, "bad.yaml:2" in err)
    assert "| 2 | bad input or configuration, **including an invalid policy file**" in (
        Path(__file__).resolve().parent.parent / "README.md"
    ).read_text(encoding="utf-8")


def test_claim_idle_is_a_setting(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """HITL_CLAIM_IDLE_MS reaches `hitl serve`'s intake; a bad value says what it must be."""
    from hitl.errors import ConfigError
    from hitl.service import Service

    monkeypatch.setenv("HITL_CLAIM_IDLE_MS", "1500")
    configured = Settings.from_env(redis_url=settings.redis_url, keyring=KEYRING)
    service = Service(configured)
    try:
        assert [1500] == [c.claim_idle_ms for c in service.consumers]
    finally:
        for consumer in service.consumers:
            consumer.close()
        service.store.redis.close()
    monkeypatch.setenv("HITL_CLAIM_IDLE_MS", "soon")
    with pytest.raises(ConfigError, match="HITL_CLAIM_IDLE_MS must be whole milliseconds"):
        Settings.from_env()


def test_card_sweep_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """HITL_CARD_SWEEP_S / HITL_CARD_SWEEP_MIN_AGE_S set the dispatcher's sweep; bad ones say so."""
    from hitl.bot.dispatch import DispatchSettings
    from hitl.errors import ConfigError

    assert (60.0, 30.0) == (DispatchSettings.from_env().sweep_s, DispatchSettings().sweep_min_age_s)
    monkeypatch.setenv("HITL_CARD_SWEEP_S", "2")
    monkeypatch.setenv("HITL_CARD_SWEEP_MIN_AGE_S", "0.5")
    configured = DispatchSettings.from_env()
    assert (2.0, 0.5) == (configured.sweep_s, configured.sweep_min_age_s)
    monkeypatch.setenv("HITL_CARD_SWEEP_S", "often")
    with pytest.raises(ConfigError, match="HITL_CARD_SWEEP_S must be seconds"):
        DispatchSettings.from_env()
