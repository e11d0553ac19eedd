"""The shipped default.yaml: every row of the article's risk table and of the case study."""

from __future__ import annotations

import datetime
import re

import pytest

from hitl.models import Risk, VerdictKind
from hitl.policies import DEFAULT_PATH, default_policy, load_policy, run_tests
from tests.policies.util import SATURDAY_11, TUESDAY_10, TUESDAY_22, req, vote

POLICY = default_policy()

# (action, params, confidence) -> (kind, risk, roles, approvals, distinct roles)
RISK_TABLE = [
    # Low: read-only, no side effects, low cost -> fully autonomous.
    ("search_database", {"query": "x"}, None, VerdictKind.AUTO_APPROVE, Risk.LOW, [], 1, []),
    ("read_weather", {"city": "Oslo"}, None, VerdictKind.AUTO_APPROVE, Risk.LOW, [], 1, []),
    ("get_current_time", {}, 0.6, VerdictKind.AUTO_APPROVE, Risk.LOW, [], 1, []),
    # Medium: modifies data but reversible -> auto if confidence high, otherwise a human.
    (
        "create_draft_email",
        {"to": "c@customer.com"},
        0.95,
        VerdictKind.AUTO_APPROVE,
        Risk.MEDIUM,
        [],
        1,
        [],
    ),  # noqa: E501 (a table row)
    (
        "create_draft_email",
        {"to": "c@customer.com"},
        0.7,
        VerdictKind.REVIEW,
        Risk.MEDIUM,
        ["standard"],
        1,
        [],
    ),  # noqa: E501 (a table row)
    ("update_task_status", {"task": "T-1"}, 0.91, VerdictKind.AUTO_APPROVE, Risk.MEDIUM, [], 1, []),
    (
        "update_task_status",
        {"task": "T-1"},
        None,
        VerdictKind.REVIEW,
        Risk.MEDIUM,
        ["standard"],
        1,
        [],
    ),  # noqa: E501 (a table row)
    # High: irreversible, financial, compliance-sensitive -> mandatory human approval (manager).
    (
        "delete_production_data",
        {"table": "t"},
        0.99,
        VerdictKind.REVIEW,
        Risk.HIGH,
        ["manager"],
        1,
        [],
    ),  # noqa: E501 (a table row)
    ("execute_refund", {"amount": 250.0}, 0.99, VerdictKind.REVIEW, Risk.HIGH, ["manager"], 1, []),
    (
        "send_mass_email",
        {"segment": "all"},
        None,
        VerdictKind.REVIEW,
        Risk.HIGH,
        ["manager"],
        1,
        [],
    ),
    # Critical: potentially catastrophic -> human + second reviewer (compliance).
    (
        "deploy_to_production",
        {},
        0.99,
        VerdictKind.REVIEW,
        Risk.CRITICAL,
        ["manager"],
        2,
        ["compliance"],
    ),  # noqa: E501 (a table row)
    (
        "modify_firewall_rules",
        {},
        None,
        VerdictKind.REVIEW,
        Risk.CRITICAL,
        ["manager"],
        2,
        ["compliance"],
    ),  # noqa: E501 (a table row)
]


@pytest.mark.parametrize(
    ("action", "params", "confidence", "kind", "risk", "roles", "approvals", "distinct"),
    RISK_TABLE,
    ids=[f"{row[0]}-{row[2]}" for row in RISK_TABLE],
)
def test_risk_table_row(
    action: str,
    params: dict[str, object],
    confidence: float | None,
    kind: VerdictKind,
    risk: Risk,
    roles: list[str],
    approvals: int,
    distinct: list[str],
) -> None:
    """Each row of the article's risk table gives its level's policy."""
    verdict = POLICY.evaluate(req(action, params=params, confidence=confidence), now=TUESDAY_10)
    actual = (verdict.kind, verdict.risk, verdict.roles, verdict.approvals, verdict.distinct_roles)
    assert (kind, risk, roles, approvals, distinct) == actual


# action, params, time -> kind, risk, rule, roles, approvals, who is notified
CASE_STUDY = [
    (
        "list_instances",
        {},
        TUESDAY_22,
        VerdictKind.AUTO_APPROVE,
        Risk.LOW,
        "list-instances",
        [],
        1,
        [],
    ),  # noqa: E501 (a table row)
    (
        "stop_instance",
        {"environment": "dev"},
        TUESDAY_22,
        VerdictKind.AUTO_APPROVE,
        Risk.LOW,
        "stop-instance-dev",
        [],
        1,
        [],
    ),  # noqa: E501 (a table row)
    (
        "stop_instance",
        {"environment": "staging"},
        TUESDAY_10,
        VerdictKind.AUTO_APPROVE,
        Risk.MEDIUM,
        "stop-instance-staging-business-hours",
        [],
        1,
        [],
    ),  # noqa: E501 (a table row)
    (
        "stop_instance",
        {"environment": "staging"},
        TUESDAY_22,
        VerdictKind.REVIEW,
        Risk.MEDIUM,
        "stop-instance-staging-after-hours",
        ["engineer", "engineering_manager"],
        1,
        ["carol"],
    ),  # noqa: E501 (a table row)
    (
        "stop_instance",
        {"environment": "staging"},
        SATURDAY_11,
        VerdictKind.REVIEW,
        Risk.MEDIUM,
        "stop-instance-staging-after-hours",
        ["engineer", "engineering_manager"],
        1,
        ["carol"],
    ),  # noqa: E501 (a table row)
    (
        "stop_instance",
        {"environment": "production"},
        TUESDAY_10,
        VerdictKind.REVIEW,
        Risk.HIGH,
        "stop-instance-production",
        ["engineering_manager"],
        1,
        ["bob"],
    ),  # noqa: E501 (a table row)
    (
        "stop_instance",
        {"environment": "production"},
        TUESDAY_22,
        VerdictKind.REVIEW,
        Risk.HIGH,
        "stop-instance-production",
        ["engineering_manager"],
        1,
        ["bob"],
    ),  # noqa: E501 (a table row)
    (
        "delete_volume",
        {"volume_id": "vol-1"},
        TUESDAY_10,
        VerdictKind.REVIEW,
        Risk.CRITICAL,
        "delete-volume",
        ["security", "lead_engineer"],
        2,
        [],
    ),  # noqa: E501 (a table row)
    (
        "modify_security_group",
        {"group": "sg-1"},
        TUESDAY_10,
        VerdictKind.REVIEW,
        Risk.HIGH,
        "modify-security-group",
        ["network_engineer"],
        1,
        [],
    ),  # noqa: E501 (a table row)
]


@pytest.mark.parametrize(
    ("action", "params", "at", "kind", "risk", "rule", "roles", "approvals", "notify"),
    CASE_STUDY,
    ids=[f"{row[0]}-{row[1].get('environment', '')}-{row[2]:%a%H}" for row in CASE_STUDY],
)
def test_case_study_row(
    action: str,
    params: dict[str, object],
    at: datetime.datetime,
    kind: VerdictKind,
    risk: Risk,
    rule: str,
    roles: list[str],
    approvals: int,
    notify: list[str],
) -> None:
    """Each approval checkpoint of the IT-operations case study, exactly as the article says."""
    verdict = POLICY.evaluate(req(action, params=params), now=at)
    who = POLICY.resolve(verdict.destination, at) if verdict.destination else []
    actual = (verdict.kind, verdict.risk, verdict.rule, verdict.roles, verdict.approvals, who)
    assert (kind, risk, rule, roles, approvals, notify) == actual


def test_case_study_escalation_chain() -> None:
    """On-call: 10m -> secondary on-call, 20m -> engineering manager, 60m -> rejected."""
    verdict = POLICY.evaluate(
        req("stop_instance", params={"environment": "staging"}), now=TUESDAY_22
    )
    chain = [
        (s.after_s, s.target.kind if s.target else None, s.target.target if s.target else None)
        for s in verdict.escalation
    ]
    assert [(600, "oncall", "secondary"), (1200, "oncall", "managers"), (3600, None, None)] == chain
    assert verdict.escalation[-1].timeout
    assert "rejected" == verdict.timeout_outcome
    assert ["dave"] == POLICY.resolve(verdict.escalation[0].target, TUESDAY_22)  # type: ignore[arg-type]
    assert ["bob"] == POLICY.resolve(verdict.escalation[1].target, TUESDAY_22)  # type: ignore[arg-type]


def test_delete_volume_needs_security_and_lead_engineer() -> None:
    """delete_volume: one security AND one lead engineer, two different people."""
    verdict = POLICY.evaluate(req("delete_volume", params={"volume_id": "v"}), now=TUESDAY_10)
    assert ["security", "lead_engineer"] == verdict.distinct_roles
    assert POLICY.check_vote(verdict, [], "carol", None).ok
    assert not POLICY.quorum_met(verdict, [vote("carol")])
    assert POLICY.quorum_met(verdict, [vote("carol"), vote("U0DAVE")])
    assert not POLICY.check_vote(verdict, [], "bob", None).ok


@pytest.mark.parametrize(
    ("amount", "kind", "risk", "rule"),
    [
        (100.01, VerdictKind.REVIEW, Risk.HIGH, "refund-over-100"),
        (101, VerdictKind.REVIEW, Risk.HIGH, "refund-over-100"),
        (100, VerdictKind.AUTO_APPROVE, Risk.MEDIUM, "refund-up-to-100"),
        (9.99, VerdictKind.AUTO_APPROVE, Risk.MEDIUM, "refund-up-to-100"),
        (0, VerdictKind.AUTO_APPROVE, Risk.MEDIUM, "refund-up-to-100"),
    ],
)
def test_refunds_over_100_go_to_a_manager(
    amount: float, kind: VerdictKind, risk: Risk, rule: str
) -> None:
    """Refunds over $100 need a manager; $100 or less is automatic."""
    verdict = POLICY.evaluate(req("refund", params={"amount": amount}), now=TUESDAY_10)
    assert (kind, risk, rule) == (verdict.kind, verdict.risk, verdict.rule)


@pytest.mark.parametrize(
    ("confidence", "kind"),
    [(0.95, VerdictKind.AUTO_APPROVE), (0.9, VerdictKind.REVIEW), (0.5, VerdictKind.REVIEW),
     (0.49, VerdictKind.REVIEW), (None, VerdictKind.REVIEW)],
)  # fmt: skip
def test_confidence_thresholds_on_a_medium_request(
    confidence: float | None, kind: VerdictKind
) -> None:
    """> 0.9 autonomous; 0.5-0.9 ask; < 0.5 escalate (the thresholds are strict)."""
    verdict = POLICY.evaluate(req("update_task_status", confidence=confidence), now=TUESDAY_10)
    assert kind == verdict.kind


def test_unsure_agent_goes_straight_to_escalation_target() -> None:
    """Below 0.5 the request skips the first reviewer and goes to the escalation target."""
    verdict = POLICY.evaluate(req("update_task_status", confidence=0.49), now=TUESDAY_10)
    assert ("oncall", "managers") == (verdict.destination.kind, verdict.destination.target)  # type: ignore[union-attr]
    assert "below 0.5" in verdict.reason


def test_shipped_test_cases_pass() -> None:
    """Every case in default_test.yaml passes."""
    results = run_tests(POLICY)
    assert [] == [(r.name, r.failures) for r in results if not r.passed]
    assert len(results) >= 25


def test_default_policy_identity() -> None:
    """The shipped policy reports '<default>' and a hash version with its declared version."""
    assert "<default>" == POLICY.source
    assert re.fullmatch(r"sha256:[0-9a-f]{16}\+2025\.1", POLICY.version)
    assert POLICY.version == load_policy(DEFAULT_PATH).version


def test_every_verdict_is_stamped_with_the_version() -> None:
    """Verdict.policy_version is the policy's version, for every kind of verdict."""
    for action in ("list_instances", "delete_volume", "launch_rocket"):
        assert POLICY.version == POLICY.evaluate(req(action), now=TUESDAY_10).policy_version


def test_default_env_override() -> None:
    """load_policy(env=...) overrides the file's environment (HITL_ENV is read by callers)."""
    assert "production" == POLICY.env
    assert "staging" == load_policy(None, env="staging").env


def test_break_glass_in_the_default_policy() -> None:
    """The engineering manager may break glass; a security reviewer acknowledges in 15m."""
    assert 900 == POLICY.ack_window_s
    assert POLICY.break_glass_allowed("U0BOB").ok
    assert not POLICY.break_glass_allowed("alice").ok
    assert POLICY.break_glass_ack_allowed("bob", "carol").ok
    assert not POLICY.break_glass_ack_allowed("bob", "bob@example.com").ok
