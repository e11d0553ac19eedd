"""Policy test cases, written next to the policy, the way ``opa test`` runs ``*_test.rego``.

For ``policy.yaml`` the cases live in ``policy_test.yaml``::

    defaults:
      at: "2025-03-04T10:00:00Z"       # when the requests are made (naive: policy time zone)
    tests:
      - name: stopping a production instance needs the engineering manager
        request: {action: stop_instance, params: {environment: production}}
        expect:
          kind: review
          risk: high
          rule: stop-instance-production
          roles: [engineering_manager]
          notify: [bob]                 # who the destination means at `at`
          can_decide: [bob]
          cannot_decide: [alice]

Only the fields under ``expect`` are compared. ``hitl policy test FILE`` runs them.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from hitl.models import ApprovalRequest, Reviewer, Risk, Verdict, VerdictKind, Vote
from hitl.policies._compile import validate_model
from hitl.policies._config import DestinationConfig, EscalationStepConfig
from hitl.policies._policy import format_duration
from hitl.policies._source import parse_yaml

if TYPE_CHECKING:
    from hitl.policies._policy import Policy

__all__ = ["CaseResult", "Expectation", "PolicyTestCase", "parse_tests", "run_tests"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expectation(_Model):
    """What a case expects of the verdict; fields left out are not checked."""

    kind: VerdictKind | None = None
    risk: Risk | None = None
    rule: str | None = None
    roles: list[str] | None = None
    distinct_roles: list[str] | None = None
    approvals: int | None = None
    destination: DestinationConfig | None = None
    notify: list[str] | None = None
    escalation: list[EscalationStepConfig] | None = None
    timeout_outcome: Literal["rejected", "approved"] | None = None
    digest: bool | None = None
    reason_contains: list[str] | None = None
    can_decide: list[str] | None = None
    cannot_decide: list[str] | None = None
    quorum_with: list[str] | None = None
    """These people approve in this order: every vote must be accepted and the quorum met."""

    @field_validator("reason_contains", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class PolicyTestCase(_Model):
    """One request in, the expected verdict out."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    request: ApprovalRequest
    at: datetime.datetime | None = None
    env: str | None = None
    expect: Expectation


class _Defaults(_Model):
    at: datetime.datetime | None = None
    env: str | None = None


class _TestFile(_Model):
    defaults: _Defaults = Field(default_factory=_Defaults)
    tests: list[PolicyTestCase] = Field(default_factory=list)


def parse_tests(text: str, source: str) -> list[PolicyTestCase]:
    """The cases in a test file; ConfigError with ``file:line`` when it is malformed."""
    doc = parse_yaml(text, source)
    parsed = validate_model(_TestFile, doc, "policy test file")
    d = parsed.defaults
    return [
        case.model_copy(update={"at": case.at or d.at, "env": case.env or d.env})
        for case in parsed.tests
    ]


@dataclass
class CaseResult:
    """The outcome of one case: ``failures`` says what differed, in words."""

    name: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    verdict: Verdict | None = None


def run_tests(policy: Policy, cases: Sequence[PolicyTestCase] | None = None) -> list[CaseResult]:
    """Run ``cases`` (default: the policy's own) and report each."""
    results = []
    for case in policy.tests if cases is None else cases:
        subject = policy.with_env(case.env) if case.env else policy
        at = case.at or datetime.datetime(2025, 1, 6, 12, 0, tzinfo=datetime.UTC)
        verdict = subject.evaluate(case.request, now=at)
        failures = _compare(subject, case, verdict, at)
        results.append(CaseResult(case.name, not failures, failures, verdict))
    return results


def _compare(
    policy: Policy, case: PolicyTestCase, verdict: Verdict, at: datetime.datetime
) -> list[str]:
    e = case.expect
    out: list[str] = []

    def check(what: str, expected: object, actual: object) -> None:
        if expected is not None and expected != actual:
            out.append(f"{what}: expected {expected!r}, got {actual!r}")

    check("kind", e.kind.value if e.kind else None, verdict.kind.value)
    check("risk", e.risk.value if e.risk else None, verdict.risk.value)
    check("rule", e.rule, verdict.rule)
    check("roles", sorted(e.roles) if e.roles is not None else None, sorted(verdict.roles))
    check(
        "distinct_roles",
        sorted(e.distinct_roles) if e.distinct_roles is not None else None,
        sorted(verdict.distinct_roles),
    )
    check("approvals", e.approvals, verdict.approvals)
    dest = verdict.destination
    check(
        "destination",
        str(e.destination) if e.destination else None,
        f"{dest.kind}:{dest.target}" if dest else None,
    )
    if e.notify is not None:
        people = policy.resolve(dest, at) if dest is not None else []
        expected = sorted(policy.directory.identity(p) for p in e.notify)
        check("notify", expected, sorted(people))
    if e.escalation is not None:
        want = [_step_words(s.after, str(s.notify) if s.notify else None) for s in e.escalation]
        got = [
            _step_words(s.after_s, f"{s.target.kind}:{s.target.target}" if s.target else None)
            for s in verdict.escalation
        ]
        check("escalation", want, got)
    check("timeout_outcome", e.timeout_outcome, verdict.timeout_outcome)
    check("digest", e.digest, verdict.digest)
    for text in e.reason_contains or ():
        if text.lower() not in verdict.reason.lower():
            out.append(f"reason: expected it to mention {text!r}, got {verdict.reason!r}")
    requester = case.request.requested_by
    for who in e.can_decide or ():
        if not policy.can_decide(verdict, who, requester):
            why = policy.check_vote(verdict, [], who, requester).reason
            out.append(f"can_decide: expected {who} to be allowed, but: {why}")
    for who in e.cannot_decide or ():
        if policy.can_decide(verdict, who, requester):
            out.append(f"cannot_decide: expected {who} to be refused, but they may decide")
    if e.quorum_with is not None:
        votes: list[Vote] = []
        for who in e.quorum_with:
            result = policy.check_vote(verdict, votes, who, requester)
            if not result.ok:
                out.append(f"quorum_with: the vote of {who} was refused: {result.reason}")
                break
            votes.append(Vote(reviewer=Reviewer(user_id=who, role=result.role)))
        else:
            if not policy.quorum_met(verdict, votes):
                out.append(
                    f"quorum_with: {', '.join(e.quorum_with)} approved but the quorum is not met"
                )
    return out


def _step_words(after_s: int, target: str | None) -> str:
    return f"{format_duration(after_s)} -> {target or 'timeout'}"
