"""``hitl inbox passwd|login``, ``hitl label`` (through the API) and ``hitl stats`` with labels."""

from __future__ import annotations

import io
import json
import urllib.parse
from typing import Any

import pytest
import redis

from hitl.cli import main
from hitl.queue.intake import IntakeConsumer
from tests.api_server import ApiServer
from tests.bot.inbox.client import Browser
from tests.scenarios.helpers import audit_kinds, submit_raw


@pytest.fixture
def run(env: None, capsys: pytest.CaptureFixture[str]) -> Any:
    """``run(*argv) -> (exit code, stdout, stderr)``."""

    def call(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


def test_login_prints_a_one_time_link(run: Any, api_env: ApiServer, r: redis.Redis) -> None:
    """The printed link signs bob in once; it is audited as created."""
    code, out, _ = run("inbox", "login", "Bob@Example.com", "--url", api_env.url + "/")
    url = out.splitlines()[0]
    assert (0, True) == (code, url.startswith(api_env.url + "/inbox/login/link?t=hitll_"))
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["t"][0]
    assert 303 == Browser(api_env.url).sign_in_with_link(token)
    assert 401 == Browser(api_env.url).sign_in_with_link(token)
    assert "login_link_created" in audit_kinds(r)


def test_passwd_from_stdin(
    run: Any, api_env: ApiServer, monkeypatch: pytest.MonkeyPatch, r: redis.Redis
) -> None:
    """A password set from stdin signs the reviewer in; a short one is refused with the rule."""
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = run("inbox", "passwd", "bob", "--password-stdin")
    assert (2, True) == (code, "10 to 1024 characters" in err)
    monkeypatch.setattr("sys.stdin", io.StringIO("correct horse battery\n"))
    assert 0 == run("inbox", "passwd", "bob", "--password-stdin")[0]
    assert 303 == Browser(api_env.url).sign_in("bob", "correct horse battery")[0]
    assert "password_set" in audit_kinds(r)


def test_unknown_reviewer_gets_no_link(run: Any, api_env: ApiServer) -> None:
    """A name outside the directory is refused, saying where reviewers come from."""
    code, _, err = run("inbox", "login", "mallory")
    assert (2, True) == (code, "reviewer directory" in err)


def test_label_through_the_api_feeds_the_false_positive_rate(
    run: Any, api_env: ApiServer, monkeypatch: pytest.MonkeyPatch, r: redis.Redis,
    pintake: IntakeConsumer,
) -> None:  # fmt: skip
    """`hitl label ID incorrect` on a rejection: stats count a false positive; a pending request
    cannot be labelled."""
    submit_raw(r, pintake, "r-1")
    submit_raw(r, pintake, "r-2")
    monkeypatch.setenv("HITL_TOKEN", api_env.token("bob"))
    assert 0 == run("reject", "r-1", "--reason", "not now")[0]
    code, out, _ = run("label", "r-1", "incorrect", "--note", "it was fine")
    assert (0, "r-1 (rejected) labelled incorrect by bob\n") == (code, out)
    code, _, err = run("label", "r-2", "correct")
    assert (2, True) == (code, "still pending" in err)
    figures = json.loads(run("stats", "--json")[1])
    assert (1.0, {"correct": 0, "incorrect": 1}) == (
        figures["false_positive_rate"],
        figures["labels"],
    )
    assert "labeled" in audit_kinds(r, "r-1")
