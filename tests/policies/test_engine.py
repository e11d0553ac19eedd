"""How the engine decides: risk, rule order, policies, thresholds, preferences, time, env."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from hitl.models import Risk, VerdictKind
from tests.policies.util import TUESDAY_10, TUESDAY_22, policy_from, req

BASE = """
thresholds: {autonomous: 0.9, escalate: 0.5}
tools:
  read: low
  write: medium
  wire: high
  nuke: critical
risk_levels:
  low: {policy: autonomous}
  medium: {policy: conditional, roles: [standard], destination: "channel:#ask"}
  high: {policy: mandatory, roles: [manager], destination: "user:bob"}
  critical: {policy: mandatory, roles: [manager], approvals: 2, distinct_roles: [compliance]}
"""


def test_risk_is_the_max_of_tool_hint_and_rules() -> None:
    """Risk = max(tool level, agent hint, every matching rule's raise_risk)."""
    policy = policy_from(
        BASE
        + """
rules:
  - {name: big, action: write, when: "params.n > 10", raise_risk: high}
  - {name: bigger, action: write, when: "params.n > 100", raise_risk: critical}
"""
    )
    assert Risk.MEDIUM == policy.evaluate(req("write", params={"n": 1})).risk
    assert Risk.HIGH == policy.evaluate(req("write", params={"n": 11})).risk
    assert Risk.CRITICAL == policy.evaluate(req("write", params={"n": 101})).risk
    assert Risk.HIGH == policy.evaluate(req("write", params={"n": 1}, risk="high")).risk


def test_hint_and_rules_never_lower_the_risk() -> None:
    """A low hint on a critical tool stays critical; raise_risk: low does nothing."""
    policy = policy_from(BASE + "\nrules: [{name: calm, action: nuke, raise_risk: low}]\n")
    verdict = policy.evaluate(req("nuke", risk="low", confidence=1.0))
    assert (Risk.CRITICAL, VerdictKind.REVIEW) == (verdict.risk, verdict.kind)


def test_unknown_tool_gets_unknown_tool_risk() -> None:
    """A tool that is not registered is reviewed at unknown_tool_risk (medium by default)."""
    policy = policy_from(BASE)
    verdict = policy.evaluate(req("mystery"))
    assert (VerdictKind.REVIEW, Risk.MEDIUM) == (verdict.kind, verdict.risk)
    assert "not in the tool registry" in verdict.reason
    strict = policy_from(BASE + "\nunknown_tool_risk: high\n")
    assert Risk.HIGH == strict.evaluate(req("mystery")).risk


def test_first_matching_routing_rule_decides() -> None:
    """Rules are read top to bottom; the first matching rule that routes decides."""
    policy = policy_from(
        BASE
        + """
rules:
  - {name: first, action: write, when: "params.n > 5", policy: mandatory, destination: "channel:#a"}
  - {name: second, action: write, policy: mandatory, destination: "channel:#b"}
"""
    )
    assert "first" == policy.evaluate(req("write", params={"n": 6})).rule
    assert "second" == policy.evaluate(req("write", params={"n": 1})).rule
    assert "#b" == policy.evaluate(req("write", params={"n": 1})).destination.target  # type: ignore[union-attr]


def test_rule_fields_override_level_defaults_field_by_field() -> None:
    """What a rule leaves out comes from its risk level's defaults."""
    policy = policy_from(BASE + "\nrules: [{name: r, action: wire, destination: 'channel:#x'}]\n")
    verdict = policy.evaluate(req("wire"))
    assert ("r", ["manager"], "#x") == (verdict.rule, verdict.roles, verdict.destination.target)  # type: ignore[union-attr]


def test_reject_wins_over_an_earlier_rule() -> None:
    """A matching reject rule rejects even when an earlier rule would approve."""
    policy = policy_from(
        BASE
        + """
rules:
  - {name: ok, action: write, policy: autonomous}
  - {name: no-interns, when: 'agent_id == "intern"', policy: reject, reason: Interns may not write.}
"""
    )
    verdict = policy.evaluate(req("write", agent_id="intern"))
    assert (VerdictKind.AUTO_REJECT, "no-interns") == (verdict.kind, verdict.rule)
    assert "Interns may not write." in verdict.reason
    assert VerdictKind.AUTO_APPROVE == policy.evaluate(req("write", agent_id="bot")).kind


def test_rule_for_lower_risk_gives_way_to_stricter_defaults() -> None:
    """An autonomous rule for a medium tool does not apply once another rule raised the risk."""
    policy = policy_from(
        BASE
        + """
rules:
  - {name: small-writes, action: write, policy: autonomous}
  - {name: vip, when: 'has(context.vip) && context.vip', raise_risk: high}
"""
    )
    verdict = policy.evaluate(req("write", context={"vip": True}))
    assert (VerdictKind.REVIEW, Risk.HIGH, "risk_levels.high") == (
        verdict.kind,
        verdict.risk,
        verdict.rule,
    )
    assert "written for lower risk" in verdict.reason


def test_high_and_critical_never_auto_approve_even_when_confident() -> None:
    """Confidence 1.0 does not approve a high or critical request."""
    policy = policy_from(BASE)
    for action in ("wire", "nuke"):
        assert VerdictKind.REVIEW == policy.evaluate(req(action, confidence=1.0)).kind


def test_level_policy_reject() -> None:
    """A risk level may reject outright (human-only execution)."""
    text = BASE.replace(
        "critical: {policy: mandatory, roles: [manager], approvals: 2, "
        "distinct_roles: [compliance]}",
        "critical: {policy: reject, description: Humans do this themselves.}",
    )
    verdict = policy_from(text).evaluate(req("nuke"))
    assert (VerdictKind.AUTO_REJECT, "risk_levels.critical") == (verdict.kind, verdict.rule)


@pytest.mark.parametrize(
    ("confidence", "kind"),
    [(None, VerdictKind.REVIEW), (0.2, VerdictKind.REVIEW), (0.5, VerdictKind.REVIEW),
     (0.9, VerdictKind.REVIEW), (0.91, VerdictKind.AUTO_APPROVE)],
)  # fmt: skip
def test_conditional_needs_confidence_above_threshold(
    confidence: float | None, kind: VerdictKind
) -> None:
    """Conditional: automatic only above thresholds.autonomous."""
    assert kind == policy_from(BASE).evaluate(req("write", confidence=confidence)).kind


def test_custom_thresholds() -> None:
    """Thresholds come from the file."""
    policy = policy_from(
        BASE.replace("autonomous: 0.9, escalate: 0.5", "autonomous: 0.7, escalate: 0.2")
    )
    assert VerdictKind.AUTO_APPROVE == policy.evaluate(req("write", confidence=0.75)).kind
    assert VerdictKind.AUTO_APPROVE == policy.evaluate(req("read", confidence=0.3)).kind
    assert VerdictKind.REVIEW == policy.evaluate(req("read", confidence=0.1)).kind


def test_low_confidence_escalates_at_once() -> None:
    """Below escalate: never automatic; the destination is escalate_to or the chain's first step."""
    policy = policy_from(
        BASE
        + """
rules:
  - name: chained
    action: write
    policy: mandatory
    destination: "channel:#first"
    escalation: ["10m -> user:bob", "20m -> user:frank", "1h -> timeout"]
  - {name: direct, action: wire, escalate_to: "user:frank"}
"""
    )
    chained = policy.evaluate(req("write", confidence=0.1))
    assert ("user", "bob") == (chained.destination.kind, chained.destination.target)  # type: ignore[union-attr]
    assert [1200, 3600] == [s.after_s for s in chained.escalation]
    direct = policy.evaluate(req("wire", confidence=0.1))
    assert "frank" == direct.destination.target  # type: ignore[union-attr]
    low = policy.evaluate(req("read", confidence=0.1))
    assert (VerdictKind.REVIEW, Risk.LOW) == (low.kind, low.risk)


def test_failed_condition_means_a_human_decides() -> None:
    """A condition that errors (missing param) never auto-approves; the reason says why."""
    policy = policy_from(
        BASE + "\nrules: [{name: small, action: write, when: 'params.amount < 10', "
        "policy: autonomous}]\n"
    )
    verdict = policy.evaluate(req("write", params={}, confidence=0.99))
    assert VerdictKind.REVIEW == verdict.kind
    assert "could not be evaluated" in verdict.reason and "amount" in verdict.reason
    assert VerdictKind.AUTO_APPROVE == policy.evaluate(req("write", params={"amount": 5})).kind


def test_type_mismatch_in_condition_fails_safe() -> None:
    """A string where a number is compared is an evaluation error, not a match or a crash."""
    policy = policy_from(
        BASE + "\nrules: [{name: small, action: write, when: 'params.amount < 10', "
        "policy: autonomous}]\n"
    )
    assert VerdictKind.REVIEW == policy.evaluate(req("write", params={"amount": "5"})).kind


def test_conditions_see_the_request() -> None:
    """action, params, context, agent_id, requested_by, risk, confidence, dry_run are visible."""
    expr = (
        'action == "write" && params.x == 1 && context.y == "z" && agent_id == "a" && '
        'requested_by == "alice" && risk == "medium" && confidence > 0.1 && dry_run'
    )
    policy = policy_from(BASE + f"\nrules: [{{name: all, when: '{expr}', policy: reject}}]\n")
    matching = req(
        "write",
        params={"x": 1},
        context={"y": "z"},
        agent_id="a",
        requested_by="alice",
        risk="medium",
        confidence=0.2,
        dry_run=True,
    )
    assert VerdictKind.AUTO_REJECT == policy.evaluate(matching).kind
    assert VerdictKind.AUTO_REJECT != policy.evaluate(req("write", params={"x": 1})).kind


def test_env_is_the_deployment_environment() -> None:
    """env comes from `environment:`, overridable when the policy is built."""
    text = (
        BASE
        + "\nenvironment: staging\n"
        + "rules: [{name: lab, when: 'env == \"staging\"', policy: autonomous}]\n"
    )
    assert VerdictKind.AUTO_APPROVE == policy_from(text).evaluate(req("write")).kind
    assert VerdictKind.REVIEW == policy_from(text, env="production").evaluate(req("write")).kind
    assert "production" == policy_from(text).with_env("production").env


def test_business_hours_in_the_policy_time_zone() -> None:
    """now.business_hours uses the policy's zone, days, start and end."""
    policy = policy_from(
        BASE
        + """
timezone: America/New_York
business_hours: {days: [mon, tue, wed, thu, fri], start: "09:00", end: "17:00"}
rules: [{name: office, action: write, when: now.business_hours, policy: autonomous}]
"""
    )
    ny = ZoneInfo("America/New_York")
    assert (
        VerdictKind.AUTO_APPROVE
        == policy.evaluate(req("write"), now=datetime.datetime(2025, 3, 4, 9, 0, tzinfo=ny)).kind
    )
    assert (
        VerdictKind.REVIEW
        == policy.evaluate(req("write"), now=datetime.datetime(2025, 3, 4, 8, 59, tzinfo=ny)).kind
    )
    assert (
        VerdictKind.REVIEW
        == policy.evaluate(req("write"), now=datetime.datetime(2025, 3, 4, 17, 0, tzinfo=ny)).kind
    )
    # 10:00 UTC is 05:00 in New York
    assert VerdictKind.REVIEW == policy.evaluate(req("write"), now=TUESDAY_10).kind
    # a naive time is read in the policy's zone
    assert (
        VerdictKind.AUTO_APPROVE
        == policy.evaluate(req("write"), now=datetime.datetime(2025, 3, 4, 12, 0)).kind
    )


def test_holidays_are_after_hours() -> None:
    """A listed holiday is after hours all day."""
    policy = policy_from(
        BASE
        + """
business_hours: {start: "09:00", end: "18:00", holidays: [2025-03-04]}
rules: [{name: office, action: write, when: now.after_hours, policy: reject}]
"""
    )
    assert VerdictKind.AUTO_REJECT == policy.evaluate(req("write"), now=TUESDAY_10).kind


def test_now_fields() -> None:
    """now exposes hour, minute, time, weekday, isoweekday and date."""
    expr = (
        'now.hour == 22 && now.minute == 0 && now.time == "22:00" && now.weekday == "tuesday" '
        '&& now.isoweekday == 2 && now.date == "2025-03-04" && now.after_hours'
    )
    policy = policy_from(BASE + f"\nrules: [{{name: t, when: '{expr}', policy: reject}}]\n")
    assert VerdictKind.AUTO_REJECT == policy.evaluate(req("read"), now=TUESDAY_22).kind
    assert VerdictKind.AUTO_APPROVE == policy.evaluate(req("read"), now=TUESDAY_10).kind


def test_preference_approves_conditional_medium_only() -> None:
    """A learned preference turns a conditional medium review into an automatic approval."""
    policy = policy_from(
        BASE
        + """
preferences:
  - {name: small-writes, when: 'has(params.n) && params.n < 10', learned_from: alice}
"""
    )
    verdict = policy.evaluate(req("write", params={"n": 3}))
    assert (VerdictKind.AUTO_APPROVE, "preference:small-writes") == (verdict.kind, verdict.rule)
    assert "learned from alice" in verdict.reason
    assert VerdictKind.REVIEW == policy.evaluate(req("write", params={"n": 30})).kind
    assert VerdictKind.REVIEW == policy.evaluate(req("wire", params={"n": 3})).kind
    assert VerdictKind.REVIEW == policy.evaluate(req("nuke", params={"n": 3})).kind


def test_preference_never_bypasses_a_mandatory_rule_or_an_unsure_agent() -> None:
    """Mandatory means a human every time; an unsure agent escalates."""
    policy = policy_from(
        BASE
        + """
rules: [{name: always-ask, action: write, when: 'has(params.strict)', policy: mandatory}]
preferences: [{name: yes, when: "true"}]
"""
    )
    assert VerdictKind.REVIEW == policy.evaluate(req("write", params={"strict": 1})).kind
    assert VerdictKind.REVIEW == policy.evaluate(req("write", confidence=0.1)).kind
    assert VerdictKind.AUTO_APPROVE == policy.evaluate(req("write", confidence=0.6)).kind


def test_preference_can_be_limited_to_actions() -> None:
    """A preference with action: applies to those tools only."""
    policy = policy_from(
        BASE.replace("  nuke: critical\n", "  nuke: critical\n  edit: medium\n")
        + "\npreferences: [{name: edits, action: edit, when: 'true'}]\n"
    )
    assert VerdictKind.AUTO_APPROVE == policy.evaluate(req("edit")).kind
    assert VerdictKind.REVIEW == policy.evaluate(req("write")).kind


def test_action_globs() -> None:
    """A rule's action may be a glob such as db.*."""
    policy = policy_from(BASE + "\nrules: [{name: db, action: 'db.*', raise_risk: high}]\n")
    assert Risk.HIGH == policy.evaluate(req("db.drop")).risk
    assert Risk.MEDIUM == policy.evaluate(req("dbx")).risk


def test_timeout_appended_and_agent_timeout_shortens() -> None:
    """Every review ends in a timeout; the agent's timeout_s can only shorten the chain."""
    policy = policy_from(BASE + "\ntimeout: 2h\n")
    verdict = policy.evaluate(req("wire"))
    assert [(7200, True)] == [(s.after_s, s.timeout) for s in verdict.escalation]
    short = policy.evaluate(req("wire", timeout_s=60))
    assert [(60, True)] == [(s.after_s, s.timeout) for s in short.escalation]
    long = policy.evaluate(req("wire", timeout_s=99999))
    assert [(7200, True)] == [(s.after_s, s.timeout) for s in long.escalation]


def test_timeout_outcome_is_reject_unless_a_rule_says_otherwise() -> None:
    """on_timeout: approve is honoured for low/medium only; high and critical are rejected."""
    policy = policy_from(
        BASE
        + """
rules:
  - {name: lenient, action: write, policy: mandatory, on_timeout: approve}
  - {name: vip, when: 'has(context.vip)', raise_risk: high}
"""
    )
    assert "approved" == policy.evaluate(req("write")).timeout_outcome
    assert "rejected" == policy.evaluate(req("write", context={"vip": 1})).timeout_outcome
    assert "rejected" == policy.evaluate(req("write", confidence=0.1)).timeout_outcome
    assert "rejected" == policy.evaluate(req("wire")).timeout_outcome


def test_digest_eligibility() -> None:
    """digest: true marks a review as eligible for batching."""
    policy = policy_from(BASE + "\nrules: [{name: batch, action: write, digest: true}]\n")
    assert policy.evaluate(req("write")).digest
    assert not policy.evaluate(req("wire")).digest


def test_reason_explains_risk_and_rule_in_words() -> None:
    """The reason names where the risk came from and the rule that decided."""
    policy = policy_from(
        BASE
        + "\nrules: [{name: big, action: write, when: 'params.n > 1', raise_risk: high,"
        + " reason: Big writes.}]\n"
    )
    verdict = policy.evaluate(req("write", params={"n": 2}))
    assert "write is high risk" in verdict.reason
    assert "rule 'big' raised it to high" in verdict.reason
    assert "Needs 1 approval with role 'manager'" in verdict.reason


def test_evaluation_is_deterministic() -> None:
    """The same request at the same time gives the same verdict."""
    policy = policy_from(BASE)
    request = req("nuke", params={"a": [1, 2, {"b": None}]})
    assert policy.evaluate(request, now=TUESDAY_10) == policy.evaluate(request, now=TUESDAY_10)


def test_odd_param_values_do_not_crash() -> None:
    """The largest integers a request may carry, nested lists and nulls evaluate without raising."""
    policy = policy_from(
        BASE + "\nrules: [{name: r, when: 'has(params.x) && params.x > 1', raise_risk: high}]\n"
    )
    for value in (2**53 - 1, -(2**53 - 1), [1, [2]], None, {"k": "v"}, "text", 1.5):
        verdict = policy.evaluate(req("write", params={"x": value}))
        assert verdict.kind in (VerdictKind.REVIEW, VerdictKind.AUTO_APPROVE)


def test_plan_is_as_risky_as_its_riskiest_step() -> None:
    """A plan-level request cannot hide a critical step behind a harmless action."""
    policy = policy_from(
        BASE + "\nrules: [{name: big, action: write, when: 'params.n > 9', raise_risk: high}]\n"
    )
    plan = [{"action": "read"}, {"action": "nuke", "params": {}}]
    verdict = policy.evaluate(req("read", plan=plan, confidence=1.0))
    assert (VerdictKind.REVIEW, Risk.CRITICAL) == (verdict.kind, verdict.risk)
    assert "plan step 2 (nuke) raised it to critical" in verdict.reason
    stepped = policy.evaluate(req("read", plan=[{"action": "write", "params": {"n": 10}}]))
    assert Risk.HIGH == stepped.risk
    prose = policy.evaluate(req("read", plan=["look around", "write a summary"]))
    assert (VerdictKind.AUTO_APPROVE, Risk.LOW) == (prose.kind, prose.risk)


def test_plan_step_rejected_rejects_the_plan() -> None:
    """A step that a rule rejects rejects the whole plan, and the reason names the step."""
    policy = policy_from(
        BASE + "\nrules: [{name: never, action: nuke, policy: reject, reason: No.}]\n"
    )
    verdict = policy.evaluate(req("read", plan=[{"action": "read"}, {"action": "nuke"}]))
    assert (VerdictKind.AUTO_REJECT, "plan") == (verdict.kind, verdict.rule)
    assert "plan step 2 (nuke) is rejected by rule 'never': No." in verdict.reason


def test_plan_step_condition_error_needs_a_human() -> None:
    """A step whose condition cannot be evaluated stops the plan from being automatic."""
    policy = policy_from(
        BASE + "\nrules: [{name: cheap, action: write, when: 'params.n < 9', policy: autonomous}]\n"
    )
    verdict = policy.evaluate(req("read", plan=[{"action": "write"}], confidence=1.0))
    assert VerdictKind.REVIEW == verdict.kind
    assert "rule 'cheap' for plan step 1 (write) could not be evaluated" in verdict.reason
