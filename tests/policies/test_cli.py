"""``hitl policy check | explain | test``: exit codes, words and JSON."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hitl.cli_policy import add_subparser
from hitl.policies import DEFAULT_PATH
from tests.policies.util import DIRECTORY

GOOD = textwrap.dedent(
    """\
    tools: {refund: medium}
    rules:
      - {name: big, action: refund, when: "params.amount > 100", raise_risk: high,
         policy: mandatory, roles: [manager]}
    """
) + textwrap.dedent(DIRECTORY)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Parse ``argv`` with a parser like the hitl CLI's, run it, return (code, out, err)."""
    parser = argparse.ArgumentParser(prog="hitl")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "ops.yaml"
    path.write_text(GOOD)
    return path


def test_check_default_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """check with no FILE checks the shipped default and exits 0."""
    code, out, _ = run(["policy", "check"], capsys)
    assert 0 == code
    assert "ok: <default> is a valid policy" in out and "sha256:" in out


def test_check_bad_file_exits_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad file prints file:line: field: problem and exits 2."""
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("params.amount > 100", "params.amount >"))
    code, _, err = run(["policy", "check", str(path)], capsys)
    assert 2 == code
    assert f"{path}:3: rules[0].when: not a valid CEL expression" in err


def test_check_json(tmp_path: Path, policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--json gives ok, version and counts, or the error lines."""
    code, out, _ = run(["policy", "check", str(policy_file), "--json"], capsys)
    data = json.loads(out)
    assert (0, True, 1) == (code, data["ok"], data["rules"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("tools: {x: severe}\n")
    code, out, _ = run(["policy", "check", str(bad), "--json"], capsys)
    data = json.loads(out)
    assert (2, False) == (code, data["ok"])
    assert data["errors"][0].startswith(f"{bad}:1: tools.x.risk:")


def test_check_uses_hitl_policy_env(
    policy_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without FILE, $HITL_POLICY names the policy."""
    monkeypatch.setenv("HITL_POLICY", str(policy_file))
    code, out, _ = run(["policy", "check"], capsys)
    assert 0 == code and str(policy_file) in out


def test_explain_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    """explain prints the verdict, the rule, why, who may approve and where it goes."""
    request = json.dumps({"action": "stop_instance", "params": {"environment": "staging"}})
    code, out, _ = run(
        ["policy", "explain", "--request", request, "--at", "2025-03-04T22:00:00Z"], capsys
    )
    assert 0 == code
    assert "Verdict:     a human must decide" in out
    assert "Rule:        stop-instance-staging-after-hours" in out
    assert "Posted to:   whoever is on call for 'primary' (now: Carol Chen)" in out
    assert "After   10m: escalate to whoever is on call for 'secondary' (now: Dave Davis)" in out
    assert "After    1h: nobody answered -> rejected" in out


def test_explain_json_and_request_file(
    tmp_path: Path, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--request @FILE reads the request from a file; --json prints the verdict as JSON."""
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"action": "refund", "params": {"amount": 500}}))
    code, out, _ = run(
        ["policy", "explain", str(policy_file), "--request", f"@{request}", "--json"], capsys
    )
    data = json.loads(out)
    assert (0, "review", "high", "big") == (
        code,
        data["verdict"]["kind"],
        data["verdict"]["risk"],
        data["verdict"]["rule"],
    )
    assert data["verdict"]["policy_version"].startswith("sha256:")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--request", "{not json"], "not valid JSON"),
        (["--request", '{"action": "x", "parms": {}}'], "not a valid approval request: parms"),
        (["--request", "@/nonexistent/req.json"], "cannot read the request"),
        (["--request", '{"action": "x"}', "--at", "yesterday"], "--at is not an ISO time"),
    ],
)
def test_explain_bad_input_exits_2(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad request or time exits 2 with a message that says what is wrong."""
    code, _, err = run(["policy", "explain", *extra], capsys)
    assert 2 == code
    assert message in err


def test_test_default_policy_passes(capsys: pytest.CaptureFixture[str]) -> None:
    """test runs default_test.yaml: every case passes, exit 0."""
    code, out, _ = run(["policy", "test", str(DEFAULT_PATH)], capsys)
    assert 0 == code
    assert out.startswith("PASS: ") and "cases passed" in out


def test_test_reports_failures_and_exits_1(
    tmp_path: Path, policy_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failing case is listed with what differed; the exit code is 1."""
    (tmp_path / "ops_test.yaml").write_text(
        textwrap.dedent(
            """\
            tests:
              - name: big refund needs a manager
                request: {action: refund, params: {amount: 500}}
                expect: {kind: review, risk: high, roles: [manager]}
              - name: wrong on purpose
                request: {action: refund, params: {amount: 500}}
                expect: {kind: auto_approve, rule: small}
            """
        )
    )
    code, out, _ = run(["policy", "test", str(policy_file)], capsys)
    assert 1 == code
    assert "FAIL: wrong on purpose" in out
    assert "kind: expected 'auto_approve', got 'review'" in out
    assert "rule: expected 'small', got 'big'" in out
    assert "FAIL: 1/2 cases passed" in out
    assert "big refund needs a manager" not in out
    code, out, _ = run(["policy", "test", str(tmp_path / "ops_test.yaml"), "-v", "--json"], capsys)
    data = json.loads(out)
    assert (1, 1, 1) == (code, data["passed"], data["failed"])


def test_test_without_cases_exits_1(policy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No test file: say where it was expected, exit 1 (a test run that runs nothing is no pass)."""
    code, _, err = run(["policy", "test", str(policy_file)], capsys)
    assert 1 == code
    assert "no test cases found" in err


def test_module_runs_alone(policy_file: Path) -> None:
    """python -m hitl.cli_policy works without the main CLI."""
    done = subprocess.run(
        [sys.executable, "-m", "hitl.cli_policy", "policy", "check", str(policy_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert 0 == done.returncode, done.stderr
    assert "is a valid policy" in done.stdout
