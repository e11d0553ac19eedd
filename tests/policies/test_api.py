"""The public surface of hitl.policies, pinned; and the small pieces behind it."""

from __future__ import annotations

import datetime

import pytest

import hitl.policies
from hitl.handlers.authority import Authority
from hitl.policies import Policy, default_policy, format_duration, parse_duration
from tests.policies.util import TUESDAY_22, policy_from, req, vote


def test_exported_names_are_pinned() -> None:
    """__all__ lists exactly the supported names, and each exists."""
    expected = {
        "DEFAULT_PATH",
        "CaseResult",
        "DirectoryEntry",
        "Expectation",
        "GovernanceConfig",
        "Policy",
        "PolicyConfig",
        "PolicyHolder",
        "PolicyKind",
        "PolicyTestCase",
        "VoteCheck",
        "default_policy",
        "describe_destination",
        "format_duration",
        "load_policy",
        "parse_duration",
        "parse_policy",
        "parse_tests",
        "policy_version",
        "run_tests",
        "test_file_for",
    }
    assert expected == set(hitl.policies.__all__)
    assert all(hasattr(hitl.policies, name) for name in expected)


def test_policy_satisfies_the_handlers_authority_protocol() -> None:
    """The handlers can use a Policy wherever they take an Authority."""
    authority: Authority = default_policy()
    assert authority.version.startswith("sha256:")


def test_policy_is_immutable() -> None:
    """A loaded policy cannot be changed in place."""
    policy = default_policy()
    with pytest.raises(AttributeError):
        policy.version = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        policy.extra = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("1w", 604800),
     (45, 45)],
)  # fmt: skip
def test_durations(text: str | int, seconds: int) -> None:
    """Durations read like 10m and print back the same way."""
    assert seconds == parse_duration(text)
    if isinstance(text, str):
        assert text == format_duration(seconds)


@pytest.mark.parametrize("bad", ["", "10", "ten", "5 minutes", 0, -1, True])
def test_bad_durations(bad: object) -> None:
    """Anything else is a ValueError that shows the accepted forms."""
    with pytest.raises(ValueError, match="10m"):
        parse_duration(bad if not isinstance(bad, str) or bad else "")


def test_reviewer_lookup() -> None:
    """reviewer() finds a person by id, Slack id, Teams id or email, in any case."""
    policy = default_policy()
    for alias in (
        "bob",
        "U0BOB",
        "u0bob",
        "Bob@Example.com",
        "9a6b1c2d-0000-4000-8000-000000000b0b",
    ):
        entry = policy.reviewer(alias)
        assert entry is not None and "bob" == entry.id
    assert frozenset({"manager", "standard", "engineering_manager"}) == policy.roles_of("U0BOB")
    assert "compliance" in policy.roles_of("frank") and "manager" in policy.roles_of("frank")


def test_vote_after_quorum_is_refused() -> None:
    """Once the quorum is met, no further vote is taken."""
    policy = policy_from(
        "tools: {x: high}\n"
        "risk_levels: {low: {policy: autonomous}, medium: {}, high: {roles: [manager]},"
        " critical: {}}\n"
    )
    verdict = policy.evaluate(req("x"))
    check = policy.check_vote(verdict, [vote("bob")], "frank", None)
    assert not check.ok and "already has the 1 approval it needs" in check.reason


def test_describe_names_people() -> None:
    """describe() explains a verdict in words and names who is on call."""
    policy = default_policy()
    verdict = policy.evaluate(
        req("stop_instance", params={"environment": "staging"}), now=TUESDAY_22
    )
    text = "\n".join(policy.describe(verdict, at=TUESDAY_22))
    assert "Carol Chen" in text and "Dave Davis" in text and "Bob Brown" in text
    assert policy.version in text


def test_describe_warns_when_the_requester_is_needed() -> None:
    """When the requester is the only holder of a needed role, describe() says so."""
    policy = default_policy()
    verdict = policy.evaluate(req("delete_volume", requested_by="U0CAROL"))
    text = "\n".join(policy.describe(verdict, requested_by="U0CAROL"))
    assert "cannot approve their own request" in text
    assert "nobody else can complete the approvals" in text


def test_evaluate_defaults_to_now() -> None:
    """Without now=, evaluation uses the current time (and still works)."""
    policy: Policy = default_policy()
    verdict = policy.evaluate(req("stop_instance", params={"environment": "staging"}))
    assert verdict.rule in (
        "stop-instance-staging-after-hours",
        "stop-instance-staging-business-hours",
    )


def test_time_variables() -> None:
    """The now map conditions see."""
    values = default_policy().time_variables(
        datetime.datetime(2025, 3, 8, 11, 5, tzinfo=datetime.UTC)
    )
    assert {
        "hour": 11,
        "minute": 5,
        "time": "11:05",
        "weekday": "saturday",
        "isoweekday": 6,
        "date": "2025-03-08",
        "business_hours": False,
        "after_hours": True,
    } == values
