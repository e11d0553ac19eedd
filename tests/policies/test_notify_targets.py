"""Notifier targets (email:, sms:, pagerduty:, jira:) in destinations and escalation steps."""

from __future__ import annotations

import textwrap

import pytest

from hitl.errors import ConfigError
from hitl.models import Destination, NotifyTarget, Risk
from hitl.policies import Policy, parse_policy
from tests.policies.util import req

BASE = """
roles: {engineer: "", manager: ""}
reviewers:
  - {id: erin, slack_id: U0ERIN, email: erin@example.com, phone: "+15550000001", roles: [engineer]}
  - {id: bob, slack_id: U0BOB, email: bob@example.com, phone: "+15550000002", roles: [manager]}
  - {id: dave, slack_id: U0DAVE, roles: [engineer]}
schedules:
  managers: {members: [bob]}
  engineers: {members: [erin, dave]}
tools: {stop_instance: high}
"""


def policy(text: str) -> Policy:
    return parse_policy(textwrap.dedent(BASE) + textwrap.dedent(text), source="p.yaml")


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        policy(text)
    return str(info.value)


def test_destination_list_splits_chat_and_notifiers() -> None:
    """A destination list keeps one chat destination and tells the notifier targets beside it."""
    p = policy(
        """
        rules:
          - name: ops
            action: stop_instance
            destination: [oncall:engineers, jira:OPS, "email:bob"]
        """
    )
    verdict = p.evaluate(req("stop_instance"))
    assert Destination(kind="oncall", target="engineers") == verdict.destination
    assert [
        NotifyTarget(kind="jira", target="OPS"),
        NotifyTarget(kind="email", target="user:bob"),
    ] == verdict.notify


def test_notifier_alone_and_in_escalation_steps() -> None:
    """A step may name notifier targets beside a chat target, or alone."""
    p = policy(
        """
        rules:
          - name: ops
            action: stop_instance
            notify: [pagerduty:ops]
            escalation:
              - "10m -> oncall:managers, sms:oncall:managers, pagerduty:ops"
              - {after: 20m, notify: "email:user:bob"}
              - 60m -> timeout
        """
    )
    verdict = p.evaluate(req("stop_instance"))
    assert [NotifyTarget(kind="pagerduty", target="ops")] == verdict.notify
    first, second, _ = verdict.escalation
    assert Destination(kind="oncall", target="managers") == first.target
    assert ["sms:oncall:managers", "pagerduty:ops"] == [str(n) for n in first.notify]
    assert (None, ["email:user:bob"]) == (second.target, [str(n) for n in second.notify])
    assert Risk.HIGH == verdict.risk
    text = "\n".join(p.describe(verdict))
    assert "escalate to whoever is on call for 'managers' (now: bob), sms:oncall:managers" in text


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("fax:bob", "'fax:bob' is not a notifier target"),
        ("sms:", "'sms:' is not a notifier target"),
        ("sms:group:x", "sms:group:x names nobody"),
        ("pagerduty:a b", "pagerduty:a b is not a service name"),
        ("jira:ops", "jira:ops is not a Jira project key"),
        ("sms:dave", "sms:user:dave: dave has no phone; add a phone (phone:)"),
        ("email:oncall:engineers", "dave has no email"),
        ("sms:oncall:nobody", "no on-call schedule named 'nobody'"),
        ("email:zed", "'zed' is not in the reviewer directory"),
    ],
)
def test_malformed_targets_are_refused_with_the_line(target: str, expected: str) -> None:
    """Each malformed or unusable target is an error naming its line and what to write."""
    text = problems(
        f"""
        rules:
          - name: ops
            action: stop_instance
            escalation: ["10m -> oncall:managers, {target}", "60m -> timeout"]
        """
    )
    assert "p.yaml:" in text and expected in text


def test_two_chat_destinations_are_refused() -> None:
    """Only one chat destination: the others must be notifier targets."""
    text = problems(
        """
        rules:
          - {name: ops, action: stop_instance, destination: "channel:#a, channel:#b"}
        """
    )
    assert "one chat destination at most" in text


def test_phone_must_be_e164() -> None:
    """A reviewer's phone is E.164, refused with its line otherwise."""
    with pytest.raises(ConfigError) as info:
        parse_policy("reviewers:\n  - {id: x, phone: '555-1234'}\n", source="p.yaml")
    assert "p.yaml:2" in str(info.value) and "phone" in str(info.value)
