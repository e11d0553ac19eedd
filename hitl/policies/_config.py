"""The policy file's schema, as pydantic models (the YAML is validated against these).

Only the shape is checked here; cross-references (a role nobody holds, an unknown schedule, an
escalation loop, a CEL expression that does not compile) are checked by :mod:`._compile`, which
knows where each value came from in the file. Every model forbids unknown fields so that a typo
(``aprovals: 2``) is an error instead of a silently ignored line.

Shorthands a person writes by hand are accepted and normalised here:

- durations: ``30s``, ``10m``, ``1h``, ``2d``, ``1w``, ``1h30m`` or a number of seconds;
- destinations: ``"channel:#ops"``, ``"oncall:primary"``, ``"user:bob"`` or ``{oncall: primary}``;
  ``"teams:Approvals"`` / ``"slack:#ops"`` name one platform's channel (``channel:teams:...``);
- notifier targets beside (or instead of) a chat destination: ``"sms:oncall:managers"``,
  ``"email:bob"``, ``"pagerduty:ops"``, ``"jira:OPS"`` (a destination may be a list, or several
  targets separated by commas: ``"channel:#ops, jira:OPS"``);
- escalation steps: ``"10m -> oncall:secondary"``, ``"60m -> timeout"``,
  ``"20m -> oncall:managers, sms:oncall:managers"`` or the mapping form;
- tools: ``stop_instance: low`` or ``stop_instance: {risk: low, description: ...}``;
- roles: ``standard: "Level 1 ..."`` or ``manager: {description: ..., includes: [standard]}``.
"""

from __future__ import annotations

import datetime
import enum
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from hitl.models import ACTION_PATTERN, Risk

__all__ = [
    "BreakGlassConfig",
    "BusinessHours",
    "DestinationConfig",
    "Duration",
    "EscalationRef",
    "EscalationStepConfig",
    "LevelConfig",
    "NotifyTargetConfig",
    "Override",
    "PolicyConfig",
    "PolicyKind",
    "PreferenceConfig",
    "ReviewerConfig",
    "RoleConfig",
    "RouteFields",
    "RuleConfig",
    "ScheduleConfig",
    "ToolConfig",
    "parse_duration",
    "parse_local_time",
]

_DURATION = re.compile(
    r"^\s*(?:(\d+)\s*w)?\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$"
)
_UNITS = (7 * 86400, 86400, 3600, 60, 1)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_ALIASES = {d[:3]: d for d in WEEKDAYS}


def parse_duration(value: Any) -> int:
    """``"1h30m"`` -> 5400. A bare number is seconds. Raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("a duration such as 30s, 10m, 1h or 2d is needed, not true/false")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.match(value)) and any(m.groups()):
        seconds = sum(int(g) * unit for g, unit in zip(m.groups(), _UNITS, strict=True) if g)
    else:
        raise ValueError(
            f"{value!r} is not a duration; write it like 30s, 10m, 1h, 1h30m, 2d or 1w"
        )
    if seconds <= 0:
        raise ValueError(f"a duration must be longer than zero, like 10m, not {value!r}")
    return seconds


def parse_local_time(value: Any) -> datetime.time:
    """``"09:00"`` -> 09:00. Also accepts ``"9:30"``."""
    if isinstance(value, str) and (m := re.match(r"^\s*(\d{1,2}):(\d{2})\s*$", value)):
        hour, minute = int(m.group(1)), int(m.group(2))
        if hour < 24 and minute < 60:
            return datetime.time(hour, minute)
        if hour == 24 and minute == 0:
            return datetime.time.max
    raise ValueError(f'{value!r} is not a time of day; write it as HH:MM, e.g. "09:00"')


Duration = Annotated[int, BeforeValidator(parse_duration)]
LocalTime = Annotated[datetime.time, BeforeValidator(parse_local_time)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
RoleName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")]


WeekdayName = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


def _weekday(value: Any) -> Any:
    """``Mon``, ``monday``, ``MONDAY`` -> ``monday``."""
    if isinstance(value, str):
        key = value.strip().lower()
        return _DAY_ALIASES.get(key[:3], key) if len(key) >= 3 else key
    return value


def _workdays() -> list[WeekdayName]:
    return ["monday", "tuesday", "wednesday", "thursday", "friday"]


Weekday = Annotated[WeekdayName, BeforeValidator(_weekday)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyKind(enum.StrEnum):
    """How a request is handled once its risk is known (the "HITL policy" column)."""

    AUTONOMOUS = "autonomous"
    """Approved without a human (low and medium risk only)."""
    CONDITIONAL = "conditional"
    """Approved without a human when the agent's confidence is above the threshold or a learned
    preference covers it; otherwise a human reviews it."""
    MANDATORY = "mandatory"
    """A human must approve, every time."""
    REJECT = "reject"
    """Refused outright, with the rule's reason."""


class DestinationConfig(_Model):
    """Where a review goes: ``channel:#ops``, ``oncall:primary`` or ``user:bob``."""

    kind: Literal["channel", "oncall", "user"]
    target: Name

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            kind, sep, target = value.partition(":")
            if kind.strip() in ("slack", "teams") and target.strip():
                # teams:Approvals is shorthand for channel:teams:Approvals (one platform's channel)
                return {"kind": "channel", "target": f"{kind.strip()}:{target.strip()}"}
            if not sep or kind.strip() not in ("channel", "oncall", "user") or not target.strip():
                raise ValueError(
                    f"{value!r} is not a destination; write channel:#name, oncall:<schedule> "
                    "or user:<reviewer id> (or a notifier: email:, sms:, pagerduty:, jira:)"
                )
            return {"kind": kind.strip(), "target": target.strip()}
        if isinstance(value, dict) and "kind" not in value and len(value) == 1:
            ((kind, target),) = value.items()
            if kind in ("channel", "oncall", "user"):
                return {"kind": kind, "target": target}
            raise ValueError(f"unknown destination kind {kind!r}; use channel, oncall or user")
        return value

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


NOTIFIERS = ("email", "sms", "pagerduty", "jira")
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_PROJECT = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")


class NotifyTargetConfig(_Model):
    """A notifier target: ``email:<who>``, ``sms:<who>`` (who: ``user:<id>``, ``oncall:<schedule>``
    or a reviewer id), ``pagerduty:<service>`` or ``jira:<PROJECT>``. Credentials never go here:
    they come from the settings (docs/notifications.md)."""

    kind: Literal["email", "sms", "pagerduty", "jira"]
    target: Name

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            kind, sep, target = (p.strip() for p in value.partition(":"))
            if not sep or kind not in NOTIFIERS or not target:
                raise ValueError(
                    f"{value!r} is not a notifier target; write email:<who>, sms:<who>, "
                    "pagerduty:<service> or jira:<PROJECT>"
                )
            value = {"kind": kind, "target": target}
        if isinstance(value, dict) and value.get("kind") in ("email", "sms"):
            target = str(value.get("target", "")).strip()
            kind, sep, who = (p.strip() for p in target.partition(":"))
            if not sep:
                kind, who = "user", target
            if kind not in ("user", "oncall") or not who:
                raise ValueError(
                    f"{value['kind']}:{target} names nobody; write {value['kind']}:<reviewer id>, "
                    f"{value['kind']}:user:<reviewer id> or {value['kind']}:oncall:<schedule>"
                )
            value = {**value, "target": f"{kind}:{who}"}
        return value

    @model_validator(mode="after")
    def _well_formed(self) -> NotifyTargetConfig:
        if self.kind == "pagerduty" and not _SERVICE.match(self.target):
            raise ValueError(
                f"pagerduty:{self.target} is not a service name (letters, digits, . _ -); its "
                "routing key goes in HITL_PAGERDUTY_ROUTING_KEYS, never in the policy"
            )
        if self.kind == "jira" and not _PROJECT.match(self.target):
            raise ValueError(
                f"jira:{self.target} is not a Jira project key (upper-case letters and digits, "
                "starting with a letter, like OPS)"
            )
        return self

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


def split_targets(value: Any) -> tuple[Any, list[Any]]:
    """A destination as written (one, a list, or comma-separated) -> (the chat destination or
    None, the notifier targets). More than one chat destination is left for validation to
    refuse."""
    items = value if isinstance(value, list) else None
    if items is None and isinstance(value, str) and "," in value:
        items = [part.strip() for part in value.split(",") if part.strip()]
    if items is None:
        if isinstance(value, str) and value.partition(":")[0].strip() in NOTIFIERS:
            return None, [value]
        return value, []
    chat = [
        i
        for i in items
        if not isinstance(i, str) or i.partition(":")[0].strip() in ("channel", "oncall", "user")
    ]
    others = [i for i in items if i not in chat]
    if len(chat) > 1:
        raise ValueError(
            f"{', '.join(map(str, chat))}: one chat destination at most (channel:, oncall: or "
            "user:); add email:, sms:, pagerduty: or jira: targets beside it"
        )
    return (chat[0] if chat else None), others


class EscalationStepConfig(_Model):
    """``after`` (time since the request was created) -> notify someone, or time out.

    ``notify`` is the chat destination; ``also`` the notifier targets told at the same time
    (written beside it: ``"20m -> oncall:managers, sms:oncall:managers, pagerduty:ops"``).
    """

    after: Duration
    notify: DestinationConfig | None = None
    also: list[NotifyTargetConfig] = Field(default_factory=list)
    timeout: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            left, sep, right = value.partition("->")
            if not sep:
                raise ValueError(
                    f'{value!r} is not an escalation step; write "10m -> oncall:secondary" '
                    'or "60m -> timeout"'
                )
            right = right.strip()
            if right == "timeout":
                return {"after": left.strip(), "timeout": True}
            value = {"after": left.strip(), "notify": right}
        if isinstance(value, dict) and "notify" in value:
            chat, others = split_targets(value["notify"])
            value = {**value, "notify": chat, "also": [*value.get("also", []), *others]}
        return value

    @model_validator(mode="after")
    def _one_of(self) -> EscalationStepConfig:
        if self.timeout == (self.notify is not None or bool(self.also)):
            raise ValueError(
                "an escalation step either notifies someone (notify:) or times out "
                "(timeout: true), not both and not neither"
            )
        return self


class EscalationRef(_Model):
    """A rule's escalation chain: the name of one under ``escalations:`` or the steps inline."""

    name: Name | None = None
    steps: list[EscalationStepConfig] | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, list):
            return {"steps": value}
        raise ValueError(
            "escalation must be the name of a chain under escalations: or a list of steps"
        )


class RouteFields(_Model):
    """What a rule or a risk level says about handling: every field optional, rules win."""

    policy: PolicyKind | None = None
    roles: list[RoleName] | None = None
    approvals: Annotated[int, Field(ge=1, le=10)] | None = None
    distinct_roles: list[RoleName] | None = None
    destination: DestinationConfig | None = None
    notify: list[NotifyTargetConfig] | None = None
    """Notifier targets told when the request is stored (also written inside ``destination``)."""
    escalation: EscalationRef | None = None
    escalate_to: DestinationConfig | None = None
    on_timeout: Literal["reject", "approve"] | None = None
    digest: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _notifiers_in_destination(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("destination") is not None:
            chat, others = split_targets(value["destination"])
            if others:
                also = [*(value.get("notify") or []), *others]
                value = {**value, "destination": chat, "notify": also}
        return value

    @field_validator("roles", "distinct_roles")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a role is listed twice")
        return value

    @model_validator(mode="after")
    def _quorum_fits(self) -> RouteFields:
        if (
            self.distinct_roles
            and self.approvals is not None
            and self.approvals < len(self.distinct_roles)
        ):
            raise ValueError(
                f"approvals is {self.approvals} but distinct_roles needs "
                f"{len(self.distinct_roles)} different people; raise approvals"
            )
        return self

    def routes(self) -> bool:
        """True when this says anything about handling (not only about risk)."""
        return any(getattr(self, name) is not None for name in RouteFields.model_fields)


class LevelConfig(RouteFields):
    """The default handling of one risk level."""

    description: str = ""
    policy: PolicyKind = PolicyKind.MANDATORY


class RuleConfig(RouteFields):
    """One rule: when it matches, it may raise the risk and/or say how to handle the request."""

    name: Name
    description: str = ""
    reason: str = ""
    action: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] | None = None
    when: str | None = None
    raise_risk: Risk | None = None

    @field_validator("action", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("when")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("when is empty; remove it to match every request, or write true")
        return value


class PreferenceConfig(_Model):
    """A learned preference ("always approve shipping refunds under $10").

    It can only turn a low- or medium-risk *conditional* review into an automatic approval;
    high and critical requests always reach a human.
    """

    name: Name
    description: str = ""
    action: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] | None = None
    when: str
    approve: Literal[True] = True
    learned_from: str = ""

    @field_validator("action", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class ToolConfig(_Model):
    """A tool (action) the agents may call, and its risk level."""

    risk: Risk
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"risk": value} if isinstance(value, str) else value


class RoleConfig(_Model):
    """A role; ``includes`` lets a senior role approve whatever a junior one may."""

    description: str = ""
    includes: list[RoleName] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is None:
            return {}
        return {"description": value} if isinstance(value, str) else value


class ReviewerConfig(_Model):
    """A person who may review: one id plus the ids chat platforms know them by."""

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@\-]{0,127}$")]
    display_name: str = ""
    slack_id: Name | None = None
    teams_id: Name | None = None
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{6,14}$")] | None = None
    """E.164 (``+15551230001``): where ``sms:`` targets text this reviewer."""
    roles: list[RoleName] = Field(default_factory=list)


class Override(_Model):
    """Someone covers a schedule from ``start`` to ``end`` (local time of the schedule)."""

    who: Name
    start: datetime.datetime
    end: datetime.datetime
    note: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Override:
        if self.end <= self.start:
            raise ValueError("an override must end after it starts")
        return self


class ScheduleConfig(_Model):
    """A rotation: ``members`` take turns, each for ``every``, the first from ``start``."""

    description: str = ""
    members: Annotated[list[Name], Field(min_length=1)]
    start: datetime.datetime = datetime.datetime(2024, 1, 1, 9, 0)
    every: Duration = 7 * 86400
    timezone: str | None = None
    overrides: list[Override] = Field(default_factory=list)


class BusinessHours(_Model):
    """When ``now.business_hours`` is true (in the policy's time zone)."""

    days: list[Weekday] = Field(default_factory=_workdays)
    start: LocalTime = datetime.time(9, 0)
    end: LocalTime = datetime.time(17, 0)
    holidays: list[datetime.date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> BusinessHours:
        if self.end <= self.start:
            raise ValueError("business hours must end after they start")
        return self


class Thresholds(_Model):
    """Confidence thresholds: above ``autonomous`` the agent may act alone (where risk allows);
    below ``escalate`` the request skips the first reviewer and goes up the chain at once."""

    autonomous: Annotated[float, Field(ge=0.0, le=1.0)] = 0.9
    escalate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.escalate > self.autonomous:
            raise ValueError("thresholds.escalate must not be above thresholds.autonomous")
        return self


class BreakGlassConfig(_Model):
    """Emergency approval by one person, acknowledged by a second within ``ack_within``."""

    roles: Annotated[list[RoleName], Field(min_length=1)]
    ack_within: Duration
    ack_roles: list[RoleName] = Field(default_factory=list)


class RubberStampConfig(_Model):
    """When a reviewer looks like they approve without reading (the article's rubber-stamping).

    Over each reviewer's last ``window`` decisions (once they have ``min_decisions``): an
    approval rate above ``max_approval_rate``, or a median time from seeing a request to
    deciding it below ``min_median``, flags them in the stats and to ``governance.compliance``.
    """

    window: Annotated[int, Field(ge=5, le=10_000)] = 50
    min_decisions: Annotated[int, Field(ge=1, le=10_000)] = 20
    max_approval_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.98
    min_median: Duration = 5


class CanaryConfig(_Model):
    """Synthetic requests that should be rejected, sent among the real ones to test reviewers.

    After each stored request that needs a human, with probability ``rate``, one of ``requests``
    (ApprovalRequest fields, without ``id``) is submitted like any agent's request: the same
    card, the same routing. Only the audit log (``canary_created``) and the service know; its
    decision is delivered to no agent. A template the policy would not send to a human is skipped.
    """

    rate: Annotated[float, Field(gt=0.0, le=0.5)]
    requests: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=100)]

    @field_validator("requests")
    @classmethod
    def _requests(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from hitl.models import ApprovalRequest

        for n, template in enumerate(value, start=1):
            if "id" in template or "callback_url" in template:
                raise ValueError(f"canary request {n}: leave out id and callback_url")
            try:
                ApprovalRequest.model_validate({**template, "id": "canary-check"})
            except ValueError as exc:
                raise ValueError(f"canary request {n} is not a valid request: {exc}") from None
        return value


class GovernanceConfig(_Model):
    """Oversight of the reviewers themselves: where flags go, what counts as rubber-stamping,
    and canary requests."""

    compliance: DestinationConfig | None = None
    """Where rubber-stamp flags are posted (e.g. ``channel:#compliance``); none: stats only."""
    rubber_stamp: RubberStampConfig = Field(default_factory=RubberStampConfig)
    canary: CanaryConfig | None = None


def _default_levels() -> dict[Risk, LevelConfig]:
    return {
        Risk.LOW: LevelConfig(policy=PolicyKind.AUTONOMOUS),
        Risk.MEDIUM: LevelConfig(policy=PolicyKind.CONDITIONAL),
        Risk.HIGH: LevelConfig(policy=PolicyKind.MANDATORY),
        Risk.CRITICAL: LevelConfig(policy=PolicyKind.MANDATORY, approvals=2),
    }


class PolicyConfig(_Model):
    """The whole policy file."""

    version: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")] | None
    ) = None
    description: str = ""
    environment: Name = "production"
    timezone: str = "UTC"
    business_hours: BusinessHours = Field(default_factory=BusinessHours)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    timeout: Duration = 24 * 3600
    unknown_tool_risk: Risk = Risk.MEDIUM
    roles: dict[RoleName, RoleConfig] = Field(default_factory=dict)
    reviewers: list[ReviewerConfig] = Field(default_factory=list)
    schedules: dict[Name, ScheduleConfig] = Field(default_factory=dict)
    escalations: dict[Name, Annotated[list[EscalationStepConfig], Field(min_length=1)]] = Field(
        default_factory=dict
    )
    risk_levels: dict[Risk, LevelConfig] = Field(default_factory=_default_levels)
    tools: dict[Annotated[str, StringConstraints(pattern=ACTION_PATTERN)], ToolConfig] = Field(
        default_factory=dict
    )
    rules: list[RuleConfig] = Field(default_factory=list)
    preferences: list[PreferenceConfig] = Field(default_factory=list)
    break_glass: BreakGlassConfig | None = None
    governance: GovernanceConfig = Field(default_factory=GovernanceConfig)

    @field_validator("risk_levels")
    @classmethod
    def _all_levels(cls, value: dict[Risk, LevelConfig]) -> dict[Risk, LevelConfig]:
        missing = [r.value for r in Risk if r not in value]
        if missing:
            raise ValueError(f"every risk level needs an entry; missing: {', '.join(missing)}")
        return value
