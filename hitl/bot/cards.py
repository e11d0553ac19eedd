"""The channel-neutral view of an approval card: what every renderer (Slack, Teams, web) shows.

A renderer turns a :class:`CardView` into its own markup; the facts, their order and their
wording live here once, so that a Slack card and a Teams card never disagree::

    view = card_view(record)
    view.status          # "1 of 2 approvals (alice)" / "Approved by Bob Brown at 2025-03-04 10:00Z"
    view.changes         # [ParamChange("amount", 250.0, 150.0)] once a reviewer modified params

Nothing here knows a chat platform or does I/O.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from hitl.models import Outcome, PlanStep, RequestRecord, Risk, State

__all__ = [
    "RISK_EMOJI",
    "USER_REQUEST_KEYS",
    "CardView",
    "ParamChange",
    "age_words",
    "card_view",
    "format_time",
    "format_value",
    "outcome_words",
    "param_changes",
    "who",
]

RISK_EMOJI = {Risk.LOW: "🟢", Risk.MEDIUM: "🟡", Risk.HIGH: "🟠", Risk.CRITICAL: "🔴"}
"""The risk badge: colour carries the level at a glance, the word says it for everyone."""

OUTCOME_EMOJI = {
    Outcome.APPROVED: "✅",
    Outcome.AUTO_APPROVED: "✅",
    Outcome.REJECTED: "⛔",
    Outcome.AUTO_REJECTED: "⛔",
    Outcome.EXPIRED: "⌛",
    Outcome.CANCELLED: "↩️",
}

USER_REQUEST_KEYS = ("user_request", "original_request", "user_message", "prompt", "request")
"""Context keys that hold what the agent's user originally asked for (shown first)."""


@dataclass(frozen=True)
class ParamChange:
    """One parameter a reviewer changed: ``before`` is ``None`` for a parameter they added."""

    name: str
    before: Any
    after: Any


@dataclass(frozen=True)
class CardView:
    """Everything a card shows, already worded; renderers only lay it out and shorten it."""

    request_id: str
    title: str
    action: str
    risk: Risk
    badge: str
    state: State
    open: bool
    """Pending: the card has buttons."""
    critical: bool
    dry_run: bool
    agent_id: str
    session_id: str
    requested_by: str
    confidence: str
    rule: str
    rule_reason: str
    reasoning: str
    user_request: str
    context: dict[str, Any]
    """The context without the user's request (shown separately)."""
    params: dict[str, Any]
    """The params under review now (modified ones once a reviewer changed them)."""
    plan: list[PlanStep]
    created_at: float
    deadline: float | None
    escalation_level: int
    escalation_steps: int
    approvals_needed: int
    approvers: list[str]
    roles: list[str]
    status: str
    """One line: what is being waited for, or the outcome with who and when."""
    outcome: Outcome | None = None
    decided_by: list[str] = field(default_factory=list)
    decided_at: float | None = None
    reason: str = ""
    changes: list[ParamChange] = field(default_factory=list)
    modified_by: list[str] = field(default_factory=list)
    policy_version: str = ""

    @property
    def escalation(self) -> str:
        """Where the escalation chain stands: ``level 2 of 3``, ``not yet (3 levels)``, ``none``."""
        if self.escalation_level:
            of = f" of {self.escalation_steps}" if self.escalation_steps else ""
            return f"level {self.escalation_level}{of}"
        if self.escalation_steps:
            plural = "s" if self.escalation_steps > 1 else ""
            return f"not yet ({self.escalation_steps} level{plural})"
        return "none"


def format_time(ts: float) -> str:
    """``2025-03-04 10:00Z``: UTC, to the minute (cards are read by people in many zones)."""
    at = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return f"{at:%Y-%m-%d %H:%M}Z"


def format_value(value: Any) -> str:
    """A parameter value as a person reads it: strings bare, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def age_words(seconds: float) -> str:
    """How long something has waited, briefly: ``45s``, ``12m``, ``3h05m``, ``4d``."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d"


def who(display_name: str, user_id: str) -> str:
    """``Bob Brown`` (or the id when there is no name)."""
    return display_name or user_id


def outcome_words(outcome: Outcome) -> str:
    return {
        Outcome.APPROVED: "Approved",
        Outcome.AUTO_APPROVED: "Approved by policy",
        Outcome.REJECTED: "Rejected",
        Outcome.AUTO_REJECTED: "Rejected by policy",
        Outcome.EXPIRED: "Expired",
        Outcome.CANCELLED: "Withdrawn by the agent",
    }[outcome]


def param_changes(before: dict[str, Any], after: dict[str, Any]) -> list[ParamChange]:
    """The parameters whose value differs, in the order of ``after`` then removed ones."""
    out = [
        ParamChange(name, before.get(name), value)
        for name, value in after.items()
        if name not in before or before[name] != value
    ]
    out += [ParamChange(name, value, None) for name, value in before.items() if name not in after]
    return out


def _user_request(context: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    for key in USER_REQUEST_KEYS:
        value = context.get(key)
        if isinstance(value, str) and value.strip():
            rest = {k: v for k, v in context.items() if k != key}
            return value, rest
    return "", dict(context)


def _status(record: RequestRecord) -> str:
    decision = record.decision
    if record.state is not State.PENDING:
        if decision is None:
            return record.state.value.capitalize()
        names = ", ".join(who(r.display_name, r.user_id) for r in decision.reviewers)
        by = f" by {names}" if names and not decision.outcome.name.startswith("AUTO") else ""
        emoji = OUTCOME_EMOJI[decision.outcome]
        return (
            f"{emoji} {outcome_words(decision.outcome)}{by} at {format_time(decision.decided_at)}"
        )
    approvals = record.approvals
    needed = record.verdict.approvals
    names = ", ".join(who(v.reviewer.display_name, v.reviewer.user_id) for v in approvals)
    if approvals:
        return f"⏳ {len(approvals)} of {needed} approvals ({names})"
    roles = record.verdict.roles
    from_whom = f" from {' or '.join(roles)}" if roles else ""
    plural = "approval" if needed == 1 else "approvals from different people"
    return f"⏳ Waiting for {needed} {plural}{from_whom}"


def card_view(record: RequestRecord) -> CardView:
    """The view of ``record`` as it stands (pending, part-approved or decided)."""
    request = record.request
    verdict = record.verdict
    risk = verdict.risk
    user_request, context = _user_request(request.context)
    decision = record.decision
    original = request.params
    final = decision.params if decision is not None else record.params
    confidence = "" if request.confidence is None else f"{request.confidence:.0%}"
    steps = [s for s in verdict.escalation if not s.timeout]
    return CardView(
        request_id=record.id,
        title=request.title,
        action=request.action,
        risk=risk,
        badge=RISK_EMOJI[risk],
        state=record.state,
        open=record.state is State.PENDING,
        critical=risk is Risk.CRITICAL,
        dry_run=request.dry_run,
        agent_id=request.agent_id or "",
        session_id=request.session_id or "",
        requested_by=request.requested_by or "",
        confidence=confidence,
        rule=verdict.rule or "",
        rule_reason=verdict.reason,
        reasoning=request.reasoning,
        user_request=user_request,
        context=context,
        params=final,
        plan=list(request.plan),
        created_at=record.created_at,
        deadline=record.deadline,
        escalation_level=record.escalation_level,
        escalation_steps=len(steps),
        approvals_needed=verdict.approvals,
        approvers=[who(v.reviewer.display_name, v.reviewer.user_id) for v in record.approvals],
        roles=list(verdict.roles),
        status=_status(record),
        outcome=decision.outcome if decision is not None else None,
        decided_by=[who(r.display_name, r.user_id) for r in decision.reviewers]
        if decision is not None
        else [],
        decided_at=decision.decided_at if decision is not None else None,
        reason=decision.reason if decision is not None else "",
        changes=param_changes(original, final),
        modified_by=[who(r.display_name, r.user_id) for r in record.modified_by],
        policy_version=verdict.policy_version,
    )
