"""Properties: whatever the preferences, rules, confidence and params, high and critical requests
never end auto-approved, silence never approves them, and risk never goes down."""

from __future__ import annotations

import datetime
import json
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitl.models import ApprovalRequest, Risk, VerdictKind
from hitl.policies import Policy, default_policy, parse_policy
from tests.policies.util import DIRECTORY

DEFAULT = default_policy()
TOOLS = {"read": "low", "write": "medium", "wire": "high", "nuke": "critical"}

WHEN = st.sampled_from(
    [
        "true",
        "false",
        "has(params.amount) && params.amount < 10",
        "params.amount > 1000",
        "has(params.x)",
        "action == 'wire'",
        "action == 'nuke' || action == 'delete_volume'",
        "risk == 'critical'",
        "confidence != null && confidence > 0.1",
        "now.after_hours",
        "env == 'production'",
    ]
)
ACTIONS = st.sampled_from(sorted(TOOLS) + ["unknown_tool"])
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53 - 1), 2**53 - 1)  # a request carries no larger ones (I-JSON)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
PARAMS = st.dictionaries(
    st.sampled_from(["amount", "x", "environment", "to", "other"]), JSON_VALUES, max_size=4
)
CONFIDENCE = st.none() | st.floats(min_value=0.0, max_value=1.0)
HINT = st.none() | st.sampled_from([r.value for r in Risk])
TIMES = st.datetimes(
    min_value=datetime.datetime(2024, 1, 1), max_value=datetime.datetime(2027, 1, 1)
).map(lambda d: d.replace(tzinfo=datetime.UTC))


@st.composite
def rules(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 4))):
        rule: dict[str, Any] = {"name": f"r{i}", "when": draw(WHEN)}
        policy = draw(st.sampled_from([None, "autonomous", "conditional", "mandatory", "reject"]))
        raise_risk = draw(st.sampled_from([None, "low", "medium", "high", "critical"]))
        if policy in ("autonomous", "conditional") and raise_risk in ("high", "critical"):
            raise_risk = None  # refused at load: such a rule could never apply
        if policy is not None:
            rule["policy"] = policy
        if raise_risk is not None:
            rule["raise_risk"] = raise_risk
        if policy != "reject" and draw(st.booleans()):
            rule["on_timeout"] = "approve" if raise_risk not in ("high", "critical") else "reject"
        out.append(rule)
    return out


@st.composite
def preferences(draw: st.DrawFn) -> list[dict[str, Any]]:
    return [{"name": f"p{i}", "when": draw(WHEN)} for i in range(draw(st.integers(0, 4)))]


def build(rule_list: list[dict[str, Any]], prefs: list[dict[str, Any]]) -> Policy:
    config = {
        "tools": TOOLS,
        "risk_levels": {
            "low": {"policy": "autonomous", "on_timeout": "approve"},
            "medium": {"policy": "conditional", "on_timeout": "approve"},
            "high": {"policy": "mandatory", "roles": ["manager"]},
            "critical": {"policy": "mandatory", "roles": ["manager"], "approvals": 2},
        },
        "rules": rule_list,
        "preferences": prefs,
    }
    config.update(yaml.safe_load(DIRECTORY))
    return parse_policy(json.dumps(config), source="generated.yaml")


def request(
    action: str, params: dict[str, Any], confidence: float | None, hint: str | None
) -> ApprovalRequest:
    return ApprovalRequest.model_validate(
        {"action": action, "params": params, "confidence": confidence, "risk": hint}
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), preferences(), ACTIONS, PARAMS, CONFIDENCE, HINT, TIMES)
def test_high_and_critical_always_reach_a_human(
    rule_list: list[dict[str, Any]],
    prefs: list[dict[str, Any]],
    action: str,
    params: dict[str, Any],
    confidence: float | None,
    hint: str | None,
    at: datetime.datetime,
) -> None:
    """No preference, rule, confidence or params auto-approves a high or critical request."""
    policy = build(rule_list, prefs)
    verdict = policy.evaluate(request(action, params, confidence, hint), now=at)
    floor = Risk.max(Risk(TOOLS.get(action, "medium")), Risk(hint) if hint else None)
    assert verdict.risk.rank >= floor.rank
    if verdict.risk.rank >= Risk.HIGH.rank:
        assert VerdictKind.AUTO_APPROVE != verdict.kind
        assert "rejected" == verdict.timeout_outcome
    if verdict.kind is VerdictKind.REVIEW:
        assert verdict.escalation and verdict.escalation[-1].timeout
    if confidence is not None and confidence < 0.5:
        assert VerdictKind.AUTO_APPROVE != verdict.kind


DEFAULT_ACTIONS = st.sampled_from(sorted(DEFAULT.config.tools) + ["launch_rocket"])
DEFAULT_PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "amount": st.integers(-10, 10_000) | st.floats(-10, 10_000) | st.text(max_size=3),
        "environment": st.sampled_from(["dev", "staging", "production", "qa", ""]) | JSON_VALUES,
        "to": st.sampled_from(["a@example.com", "b@else.com"]) | JSON_VALUES,
    },
)


@settings(max_examples=300, deadline=None)
@given(DEFAULT_ACTIONS, DEFAULT_PARAMS, CONFIDENCE, HINT, TIMES)
def test_default_policy_invariants(
    action: str,
    params: dict[str, Any],
    confidence: float | None,
    hint: str | None,
    at: datetime.datetime,
) -> None:
    """On the shipped policy: high/critical never automatic, and silence never approves."""
    verdict = DEFAULT.evaluate(request(action, params, confidence, hint), now=at)
    if verdict.risk.rank >= Risk.HIGH.rank:
        assert VerdictKind.AUTO_APPROVE != verdict.kind
    assert "rejected" == verdict.timeout_outcome
    assert DEFAULT.version == verdict.policy_version
    assert verdict.rule
    assert verdict.reason.startswith(f"{action} is {verdict.risk.value} risk")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["alice", "U0BOB", "bob@example.com", "carol", "U0DAVE",
                                 "erin", "frank", "mallory"]), max_size=5),
       st.sampled_from([None, "alice", "U0CAROL", "frank@example.com"]))  # fmt: skip
def test_counted_votes_always_come_from_distinct_eligible_people(
    voters: list[str], requester: str | None
) -> None:
    """Accepting only the votes check_vote allows, a met quorum has distinct qualified people."""
    from tests.policies.util import policy_from, req, vote

    policy = policy_from(
        "tools: {d: critical}\nrules: [{name: d, action: d, roles: [security, lead_engineer], "
        "approvals: 2, distinct_roles: [security, lead_engineer]}]\n"
    )
    verdict = policy.evaluate(req("d"))
    accepted = []
    for who in voters:
        if policy.check_vote(verdict, accepted, who, requester).ok:
            accepted.append(vote(who))
    people = {policy.directory.identity(v.reviewer.user_id) for v in accepted}
    assert len(people) == len(accepted)
    if requester is not None:
        assert policy.directory.identity(requester) not in people
    if policy.quorum_met(verdict, accepted):
        roles = [policy.roles_of(v.reviewer.user_id) for v in accepted]
        assert any("security" in r for r in roles) and any("lead_engineer" in r for r in roles)
