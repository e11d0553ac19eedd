"""`hitl acl`: the ACL SETUSER rules for each kind of process, as printed."""

from __future__ import annotations

import hashlib

import pytest

from hitl.acl import ROLES, acl_rules, acl_users
from hitl.cli import main
from hitl.errors import ConfigError
from hitl.queue.keys import Keys


def printed(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert 0 == main(["acl", *argv])
    return capsys.readouterr().out.splitlines()


def test_one_user_per_role_with_placeholder_passwords(capsys: pytest.CaptureFixture[str]) -> None:
    """Four users, each line idempotent (reset first), passwords left for the operator to set."""
    lines = printed(capsys)
    users = [line.split()[2] for line in lines if " reset on " in line]
    assert ["hitl-service", "hitl-worker", "hitl-agent", "hitl-auditor"] == users
    for role in ROLES:
        assert f"ACL SETUSER hitl-{role} reset on >CHANGE_ME_{role} " in "\n".join(lines)
    assert 8 == len(lines)


def test_the_agent_may_only_add_requests_and_read_its_decisions() -> None:
    """Write-only on the requests stream, pop on decisions, read on records and feedback."""
    agent = acl_users(Keys("acme:hitl:"), "acme-hitl")["agent"]
    assert (
        "%W~acme:hitl:requests",
        "~acme:hitl:decision:*",
        "%R~acme:hitl:req:*",
        "%R~acme:hitl:feedback:*",
        "%R~acme:hitl:control:*",
    ) == agent.keys
    granted = {c for c in agent.commands if c.startswith("+")}
    assert {
        "+xadd",
        "+blpop",
        "+lpop",
        "+get",
        "+exists",
        "+lrange",
        "+mget",
        "+ping",
        "+hello",
        "+auth",
        "+select",
        "+client|setname",
    } == granted
    assert "resetchannels" in agent.rule(">x").split()


def test_service_and_worker_have_no_admin_or_dangerous_commands() -> None:
    """Both drop @admin and @dangerous after granting data commands; only INFO comes back."""
    users = acl_users(Keys(), "hitl")
    for role in ("service", "worker"):
        commands = list(users[role].commands)
        after = commands[commands.index("-@dangerous") + 1 :]
        assert "-@admin" in commands
        assert not [c for c in after if c.startswith("+@")]
        assert ("~hitl:*", "~rq:*") == users[role].keys


def test_the_auditor_reads_only() -> None:
    """Every key pattern is read-only, and the only category granted is @read."""
    auditor = acl_users(Keys(), "ops")["auditor"]
    assert all(k.startswith("%R~") for k in auditor.keys)
    assert "%R~rq:queue:ops" in auditor.keys
    assert ["+@read"] == [c for c in auditor.commands if c.startswith("+@")]


def test_prefix_queue_and_role_options(capsys: pytest.CaptureFixture[str]) -> None:
    """--prefix and --queue shape the patterns; --role picks users (repeatable)."""
    lines = printed(
        capsys, "--prefix", "acme:", "--queue", "q1", "--role", "auditor", "--role", "agent"
    )
    assert ["hitl-auditor", "hitl-auditor", "hitl-agent", "hitl-agent"] == [
        line.split()[2] for line in lines
    ]
    assert "%R~acme:* %R~rq:queue:q1 %R~rq:*:q1" in lines[0]
    assert "%W~acme:requests" in lines[2]


def test_passwords_from_the_environment_are_printed_hashed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--password-from-env reads HITL_ACL_<ROLE>_PASSWORD and prints only its SHA-256."""
    monkeypatch.setenv("HITL_ACL_AGENT_PASSWORD", "s3cret agent")
    line = printed(capsys, "--role", "agent", "--password-from-env")[0]
    digest = hashlib.sha256(b"s3cret agent").hexdigest()
    assert f"hitl-agent reset on #{digest} " in line
    assert "s3cret" not in line


def test_a_missing_password_variable_is_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the variable, nothing is printed and the error says what to set."""
    monkeypatch.setenv("HITL_ACL_AGENT_PASSWORD", "x")
    assert 2 == main(["acl", "--role", "agent", "--role", "worker", "--password-from-env"])
    out = capsys.readouterr()
    assert ("", "hitl: --password-from-env: set HITL_ACL_WORKER_PASSWORD\n") == (out.out, out.err)


@pytest.mark.parametrize("prefix", ["", "my app:", "hitl*:", "a[b]:"])
def test_a_prefix_that_cannot_be_a_pattern_is_refused(prefix: str) -> None:
    """Spaces and glob characters would widen or break the key patterns: refused."""
    with pytest.raises(ConfigError, match="cannot go into an ACL key pattern"):
        acl_rules(Keys(prefix), "hitl")


def test_unknown_role_is_refused() -> None:
    """A role outside the four is an error naming the choices."""
    with pytest.raises(ConfigError, match="choose from service, worker, agent, auditor"):
        acl_rules(Keys(), "hitl", ["admin"])
