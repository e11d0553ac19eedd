"""From a validated :class:`PolicyConfig` to the structures the engine evaluates quickly.

Everything that can be checked before the first request is checked here, with the file and line
of the offending value: CEL that does not compile or names an unknown variable, a role nobody
holds (or a quorum nobody can form), a destination naming an unknown schedule or person, an
escalation chain that loops or goes back in time, a rule that asks for something the engine will
never do (an autonomous rule for a high-risk tool). All problems are reported at once.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import fnmatch
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from pydantic import BaseModel

from hitl.errors import ConfigError
from hitl.identity import canonical_id
from hitl.models import NotifyTarget, Risk
from hitl.policies._config import (
    WEEKDAYS,
    DestinationConfig,
    EscalationRef,
    EscalationStepConfig,
    LevelConfig,
    NotifyTargetConfig,
    PolicyConfig,
    PolicyKind,
    RouteFields,
)
from hitl.policies._directory import Directory, DirectoryEntry, expand_roles
from hitl.policies._expressions import Condition, compile_condition
from hitl.policies._oncall import Rotation, ShiftOverride, aware
from hitl.policies._source import Loc, SourceDoc
from hitl.policies._votes import match_roles

__all__ = [
    "BreakGlass",
    "Compiled",
    "Step",
    "Target",
    "Preference",
    "Route",
    "Rule",
    "compile_config",
    "validate_model",
]

TimeoutOutcome = Literal["rejected", "approved"]
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Target:
    """A checked destination (a user target is the directory id)."""

    kind: Literal["channel", "oncall", "user"]
    target: str

    def data(self) -> dict[str, str]:
        return {"kind": self.kind, "target": self.target}

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


@dataclass(frozen=True, slots=True)
class Step:
    """A checked escalation step; ``after_s`` counts from when the request was created."""

    after_s: int
    target: Target | None = None
    timeout: bool = False
    notify: tuple[NotifyTarget, ...] = ()

    def data(self) -> dict[str, object]:
        out: dict[str, object] = {"after_s": self.after_s, "timeout": self.timeout}
        if self.target is not None:
            out["target"] = self.target.data()
        if self.notify:
            out["notify"] = [{"kind": n.kind, "target": n.target} for n in self.notify]
        return out


@dataclass(frozen=True, slots=True)
class Route:
    """Handling fields; None means "not said here" (a rule falls back to its risk level)."""

    policy: PolicyKind | None = None
    roles: tuple[str, ...] | None = None
    approvals: int | None = None
    distinct_roles: tuple[str, ...] | None = None
    destination: Target | None = None
    escalation: tuple[Step, ...] | None = None
    escalation_name: str | None = None
    notify: tuple[NotifyTarget, ...] | None = None
    escalate_to: Target | None = None
    on_timeout: TimeoutOutcome | None = None
    digest: bool | None = None

    def over(self, base: Route) -> Route:
        """This route with every unset field taken from ``base``."""
        return Route(
            *(
                mine if mine is not None else theirs
                for mine, theirs in zip(_fields(self), _fields(base), strict=True)
            )
        )


def _fields(route: Route) -> tuple[Any, ...]:
    return tuple(getattr(route, name) for name in Route.__slots__)


@dataclass(frozen=True, slots=True)
class _Matcher:
    actions: frozenset[str] | None
    globs: tuple[re.Pattern[str], ...]

    def applies_to(self, action: str) -> bool:
        if self.actions is None and not self.globs:
            return True
        return (self.actions is not None and action in self.actions) or any(
            g.match(action) for g in self.globs
        )


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    reason: str
    matcher: _Matcher
    condition: Condition | None
    raise_risk: Risk | None
    route: Route
    routes: bool
    reject: bool
    merged: dict[Risk, Route]
    """The rule's route over each risk level's defaults, merged once at load."""


@dataclass(frozen=True, slots=True)
class Preference:
    name: str
    reason: str
    matcher: _Matcher
    condition: Condition


@dataclass(frozen=True, slots=True)
class BreakGlass:
    roles: tuple[str, ...]
    ack_within_s: int
    ack_roles: tuple[str, ...]


@dataclass(frozen=True)
class Compiled:
    config: PolicyConfig
    zone: ZoneInfo
    business_days: frozenset[int]
    holidays: frozenset[datetime.date]
    directory: Directory
    rotations: dict[str, Rotation]
    tools: dict[str, Risk]
    levels: dict[Risk, Route]
    level_text: dict[Risk, str]
    rules: tuple[Rule, ...]
    preferences: tuple[Preference, ...]
    break_glass: BreakGlass | None
    timeout_s: int
    declared_roles: frozenset[str] = field(default_factory=frozenset)


# --- pydantic errors -> file:line ------------------------------------------------------------


def validate_model(model: type[M], doc: SourceDoc, what: str) -> M:
    """Validate ``doc.data`` as ``model``; ConfigError listing every problem with its line."""
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{doc.source}:1: (top level): a {what} must be a YAML mapping (key: value lines), "
            f"not {type(data).__name__}"
        )
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            lines.append((doc.line_of(loc), doc.error(loc, _message(model, err))))
        raise ConfigError("\n".join(text for _, text in sorted(lines))) from None


def _message(root: type[BaseModel], err: Any) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        allowed = _allowed_fields(root, tuple(err["loc"][:-1]))
        text = f"unknown field {name!r}"
        if allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            if close:
                text += f" (did you mean {close[0]!r}?)"
            text += f"; allowed here: {', '.join(allowed)}"
        return text
    if kind == "missing":
        return "this field is required"
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def _allowed_fields(root: type[BaseModel], loc: Sequence[Any]) -> list[str]:
    current: Any = root
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return []
    model = _unwrap(current, None)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(tp: Any, part: Any) -> Any:
    """One step down a type along a pydantic error location (None if lost)."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            options = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = next(
                (a for a in options if isinstance(a, type) and issubclass(a, BaseModel)),
                options[0] if options else None,
            )
            continue
        break
    if part is None:
        return tp
    origin = typing.get_origin(tp)
    if origin in (list, tuple) and isinstance(part, int):
        return typing.get_args(tp)[0]
    if origin is dict:
        return typing.get_args(tp)[1]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if isinstance(part, str) and part in tp.model_fields:
            return tp.model_fields[part].annotation
        if isinstance(part, str):  # shorthand wrappers: EscalationRef.steps etc.
            return tp
    return None


# --- the semantic pass ------------------------------------------------------------------------


class _Errors:
    def __init__(self, doc: SourceDoc) -> None:
        self.doc = doc
        self.items: list[tuple[int, str]] = []

    def add(self, loc: Loc, message: str) -> None:
        self.items.append((self.doc.line_of(loc), self.doc.error(loc, message)))

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError("\n".join(text for _, text in sorted(self.items)))


def _did_you_mean(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def compile_config(config: PolicyConfig, doc: SourceDoc) -> Compiled:
    """Check cross-references and compile; ConfigError listing every problem with its line."""
    errors = _Errors(doc)
    zone = _zone(config.timezone, ("timezone",), errors)

    includes = {name: role.includes for name, role in config.roles.items()}
    declared = frozenset(config.roles)
    for name, role in config.roles.items():
        for j, inc in enumerate(role.includes):
            if inc not in declared:
                errors.add(
                    ("roles", name, "includes", j),
                    f"role {inc!r} is not declared under roles:{_did_you_mean(inc, declared)}",
                )
        if name in expand_roles(role.includes, includes):
            errors.add(("roles", name), f"role {name!r} includes itself (through includes:)")

    def check_declared(role: str, loc: Loc) -> None:
        if declared and role not in declared:
            errors.add(
                loc,
                f"role {role!r} is not declared under roles:{_did_you_mean(role, declared)}; "
                "declare it there or fix the spelling",
            )

    entries: list[DirectoryEntry] = []
    owners: dict[str, str] = {}
    for i, rev in enumerate(config.reviewers):
        for j, role_name in enumerate(rev.roles):
            check_declared(role_name, ("reviewers", i, "roles", j))
        entry = DirectoryEntry(
            id=rev.id,
            display_name=rev.display_name,
            slack_id=rev.slack_id,
            teams_id=rev.teams_id,
            email=rev.email,
            roles=expand_roles(rev.roles, includes),
            phone=rev.phone,
        )
        for key in ("id", "slack_id", "teams_id", "email"):
            alias = getattr(rev, key)
            if not alias:
                continue
            owner = owners.setdefault(canonical_id(alias), rev.id)
            if owner != rev.id:
                key_text = canonical_id(alias)
                same = "" if key_text == alias else f" (compared as {key_text!r})"
                errors.add(
                    ("reviewers", i, key),
                    f"{alias!r} already identifies reviewer {owner!r}{same}; each id, "
                    "Slack id, Teams id and email must belong to one person",
                )
        if any(canonical_id(e.id) == canonical_id(rev.id) for e in entries):
            errors.add(("reviewers", i, "id"), f"reviewer id {rev.id!r} is listed twice")
        entries.append(entry)
    directory = Directory(entries)

    def person(who: str, loc: Loc) -> str | None:
        entry = directory.get(who)
        if entry is None:
            known = [e.id for e in directory.entries]
            errors.add(
                loc,
                f"{who!r} is not in the reviewer directory (reviewers:){_did_you_mean(who, known)}",
            )
            return None
        return entry.id

    rotations: dict[str, Rotation] = {}
    for name, sched in config.schedules.items():
        sloc: Loc = ("schedules", name)
        szone = zone
        if sched.timezone is not None:
            szone = _zone(sched.timezone, (*sloc, "timezone"), errors)
        members = [person(m, (*sloc, "members", j)) for j, m in enumerate(sched.members)]
        overrides = []
        for j, ov in enumerate(sched.overrides):
            who = person(ov.who, (*sloc, "overrides", j, "who"))
            if who is not None:
                overrides.append(
                    ShiftOverride(who, aware(ov.start, szone), aware(ov.end, szone), ov.note)
                )
        if all(m is not None for m in members):
            rotations[name] = Rotation(
                name=name,
                members=tuple(m for m in members if m is not None),
                start=sched.start.astimezone(szone).replace(tzinfo=None)
                if sched.start.tzinfo is not None
                else sched.start,
                every=datetime.timedelta(seconds=sched.every),
                zone=szone,
                overrides=tuple(overrides),
            )

    def destination(dest: DestinationConfig, loc: Loc) -> Target | None:
        if dest.kind == "oncall":
            if dest.target not in config.schedules:
                errors.add(
                    loc,
                    f"no on-call schedule named {dest.target!r} under schedules:"
                    f"{_did_you_mean(dest.target, config.schedules)}",
                )
                return None
            return Target("oncall", dest.target)
        if dest.kind == "user":
            who = person(dest.target, loc)
            return Target("user", who) if who else None
        return Target("channel", dest.target)

    def notifier(target: NotifyTargetConfig, loc: Loc) -> NotifyTarget | None:
        """A checked notifier target: the people of an email/sms target all have the address."""
        if target.kind not in ("email", "sms"):
            return NotifyTarget(kind=target.kind, target=target.target)
        kind, _, who = target.target.partition(":")
        field_name, what = ("email", "an email") if target.kind == "email" else ("phone", "a phone")
        if kind == "oncall":
            if who not in config.schedules:
                errors.add(
                    loc,
                    f"no on-call schedule named {who!r} under schedules:"
                    f"{_did_you_mean(who, config.schedules)}",
                )
                return None
            people = [directory.get(m) for m in config.schedules[who].members]
        else:
            found = person(who, loc)
            if found is None:
                return None
            who = found
            people = [directory.get(who)]
        missing = [e.id for e in people if e is not None and not getattr(e, field_name)]
        if missing:
            errors.add(
                loc,
                f"{target}: {', '.join(missing)} {'has' if len(missing) == 1 else 'have'} no "
                f"{field_name}; add {what} ({field_name}:) to them under reviewers:",
            )
            return None
        return NotifyTarget(kind=target.kind, target=f"{kind}:{who}")

    def notifiers(targets: Sequence[NotifyTargetConfig], loc: Loc) -> tuple[NotifyTarget, ...]:
        checked = [notifier(t, (*loc, j)) for j, t in enumerate(targets)]
        out = tuple(t for t in checked if t is not None)
        seen: set[str] = set()
        for j, t in enumerate(out):
            if str(t) in seen:
                errors.add((*loc, j), f"{t} is listed twice")
            seen.add(str(t))
        return out

    def chain(steps: Sequence[EscalationStepConfig], loc: Loc) -> tuple[Step, ...]:
        out: list[Step] = []
        seen: dict[str, int] = {}
        previous = 0
        for j, step in enumerate(steps):
            sloc = (*loc, j)
            if step.after <= previous:
                errors.add(
                    sloc,
                    "escalation steps must be in time order: 'after' is counted from when the "
                    f"request was created, so this step ({step.after}s) must come later than "
                    f"the one before ({previous}s)",
                )
            previous = step.after
            if out and out[-1].timeout:
                errors.add(sloc, "nothing can follow a timeout step: it ends the chain")
            if step.timeout:
                out.append(Step(step.after, timeout=True))
                continue
            also = notifiers(step.also, (*sloc, "also"))
            if step.notify is None:
                out.append(Step(step.after, notify=also))
                continue
            key = str(step.notify)
            if key in seen:
                errors.add(
                    sloc,
                    f"escalation loop: {key} is already step {seen[key] + 1} of this chain; "
                    "each step must go to someone new (end the chain with a timeout step)",
                )
            seen[key] = j
            target = destination(step.notify, (*sloc, "notify"))
            if target is not None:
                out.append(Step(step.after, target, notify=also))
        last_notify = max((s.after_s for s in out if not s.timeout), default=0)
        if not any(s.timeout for s in out) and last_notify >= config.timeout:
            errors.add(
                loc,
                f"this chain notifies someone after {last_notify}s, but requests time out after "
                f"{config.timeout}s (timeout:); end the chain with a timeout step or raise timeout",
            )
        return tuple(out)

    named_chains = {
        name: chain(steps, ("escalations", name)) for name, steps in config.escalations.items()
    }

    def held_check(roles: Sequence[str], loc: Loc) -> None:
        for j, role in enumerate(roles):
            check_declared(role, (*loc, j))
            if not directory.holders(role):
                errors.add(
                    (*loc, j),
                    f"no reviewer holds role {role!r}, so nobody could approve; give the role "
                    "to someone under reviewers: or fix the spelling"
                    f"{_did_you_mean(role, {r for e in directory.entries for r in e.roles})}",
                )

    def route(fields: RouteFields, loc: Loc) -> Route:
        if fields.roles is not None:
            held_check(fields.roles, (*loc, "roles"))
        if fields.distinct_roles is not None:
            held_check(fields.distinct_roles, (*loc, "distinct_roles"))
        _quorum_feasible(fields, directory, loc, errors)
        dest = (
            destination(fields.destination, (*loc, "destination"))
            if fields.destination is not None
            else None
        )
        esc_to = (
            destination(fields.escalate_to, (*loc, "escalate_to"))
            if fields.escalate_to is not None
            else None
        )
        steps, chain_name = _escalation(fields.escalation, (*loc, "escalation"))
        if steps is not None and fields.destination is not None:
            for j, step in enumerate(steps):
                if step.target is not None and step.target == dest:
                    errors.add(
                        (*loc, "escalation"),
                        f"escalation loop: step {j + 1} escalates to {fields.destination}, "
                        "which is where the request is posted in the first place",
                    )
        on_timeout: TimeoutOutcome | None = None
        if fields.on_timeout is not None:
            on_timeout = "approved" if fields.on_timeout == "approve" else "rejected"
        return Route(
            policy=fields.policy,
            roles=tuple(fields.roles) if fields.roles is not None else None,
            approvals=fields.approvals,
            distinct_roles=tuple(fields.distinct_roles)
            if fields.distinct_roles is not None
            else None,
            destination=dest,
            escalation=steps,
            escalation_name=chain_name,
            notify=None if fields.notify is None else notifiers(fields.notify, (*loc, "notify")),
            escalate_to=esc_to,
            on_timeout=on_timeout,
            digest=fields.digest,
        )

    def _escalation(
        ref: EscalationRef | None, loc: Loc
    ) -> tuple[tuple[Step, ...] | None, str | None]:
        if ref is None:
            return None, None
        if ref.name is not None:
            if ref.name not in named_chains:
                errors.add(
                    loc,
                    f"no escalation chain named {ref.name!r} under escalations:"
                    f"{_did_you_mean(ref.name, named_chains)}",
                )
                return None, None
            return named_chains[ref.name], ref.name
        return chain(ref.steps or [], loc), None

    levels: dict[Risk, Route] = {}
    level_text: dict[Risk, str] = {}
    for risk in Risk:
        level: LevelConfig = config.risk_levels[risk]
        lloc: Loc = ("risk_levels", risk.value)
        if risk.rank >= Risk.HIGH.rank and level.policy in (
            PolicyKind.AUTONOMOUS,
            PolicyKind.CONDITIONAL,
        ):
            errors.add(
                (*lloc, "policy"),
                f"{risk.value} risk cannot be {level.policy.value}: high and critical requests "
                "always need a human (use mandatory, or reject)",
            )
        if risk.rank >= Risk.HIGH.rank and level.on_timeout == "approve":
            errors.add(
                (*lloc, "on_timeout"),
                f"{risk.value} risk cannot be approved by silence; use on_timeout: reject",
            )
        levels[risk] = route(level, lloc)
        level_text[risk] = level.description

    tools = {name: tool.risk for name, tool in config.tools.items()}

    def matcher(actions: list[str] | None, loc: Loc) -> _Matcher:
        if actions is None:
            return _Matcher(None, ())
        exact: set[str] = set()
        globs: list[re.Pattern[str]] = []
        for j, act in enumerate(actions):
            if any(c in act for c in "*?["):
                globs.append(re.compile(fnmatch.translate(act)))
            elif tools and act not in tools:
                errors.add(
                    (*loc, j),
                    f"action {act!r} is not in the tool registry (tools:)"
                    f"{_did_you_mean(act, tools)}; register it with its risk level",
                )
            else:
                exact.add(act)
        return _Matcher(frozenset(exact), tuple(globs))

    def condition(source: str | None, loc: Loc) -> Condition | None:
        if source is None:
            return None
        try:
            return compile_condition(source)
        except ValueError as exc:
            errors.add(loc, str(exc))
            return None

    rules: list[Rule] = []
    names: dict[str, int] = {}
    for i, cfg in enumerate(config.rules):
        rloc: Loc = ("rules", i)
        if cfg.name in names:
            errors.add(
                (*rloc, "name"),
                f"rule name {cfg.name!r} is already used by rules[{names[cfg.name]}]",
            )
        names.setdefault(cfg.name, i)
        reject = cfg.policy is PolicyKind.REJECT
        if reject:
            extra = [
                n for n in RouteFields.model_fields if n != "policy" and getattr(cfg, n) is not None
            ]
            if extra:
                errors.add(
                    rloc,
                    f"a rule with policy: reject rejects at once, so {', '.join(extra)} "
                    "would never be used; remove them",
                )
        ceiling = _rule_ceiling(cfg.raise_risk, cfg.action, tools)
        high = ceiling is not None and ceiling.rank >= Risk.HIGH.rank
        if high and cfg.policy in (PolicyKind.AUTONOMOUS, PolicyKind.CONDITIONAL):
            errors.add(
                (*rloc, "policy"),
                f"this rule is for {ceiling}-risk requests, which always need a human; "
                f"policy: {cfg.policy} can never apply (use mandatory)",
            )
        if high and cfg.on_timeout == "approve":
            errors.add(
                (*rloc, "on_timeout"),
                f"{ceiling}-risk requests cannot be approved by silence; use on_timeout: reject",
            )
        own = route(cfg, rloc)
        rules.append(
            Rule(
                name=cfg.name,
                reason=cfg.reason or cfg.description,
                matcher=matcher(cfg.action, (*rloc, "action")),
                condition=condition(cfg.when, (*rloc, "when")),
                raise_risk=cfg.raise_risk,
                route=own,
                routes=cfg.routes() and not reject,
                reject=reject,
                merged={risk: _merge(own, levels[risk]) for risk in Risk},
            )
        )

    preferences: list[Preference] = []
    pnames: set[str] = set()
    for i, pcfg in enumerate(config.preferences):
        ploc: Loc = ("preferences", i)
        if pcfg.name in pnames:
            errors.add((*ploc, "name"), f"preference name {pcfg.name!r} is used twice")
        pnames.add(pcfg.name)
        cond = condition(pcfg.when, (*ploc, "when"))
        match = matcher(pcfg.action, (*ploc, "action"))
        if cond is not None:
            reason = pcfg.description or f"learned preference {pcfg.name}"
            if pcfg.learned_from:
                reason += f" (learned from {pcfg.learned_from})"
            preferences.append(Preference(pcfg.name, reason, match, cond))

    break_glass = None
    if config.break_glass is not None:
        bg = config.break_glass
        held_check(bg.roles, ("break_glass", "roles"))
        held_check(bg.ack_roles, ("break_glass", "ack_roles"))
        break_glass = BreakGlass(tuple(bg.roles), bg.ack_within, tuple(bg.ack_roles))

    errors.raise_if_any()
    bh = config.business_hours
    return Compiled(
        config=config,
        zone=zone,
        business_days=frozenset(WEEKDAYS.index(d) + 1 for d in bh.days),
        holidays=frozenset(bh.holidays),
        directory=directory,
        rotations=rotations,
        tools=tools,
        levels=levels,
        level_text=level_text,
        rules=tuple(rules),
        preferences=tuple(preferences),
        break_glass=break_glass,
        timeout_s=config.timeout,
        declared_roles=declared,
    )


def _merge(rule: Route, level: Route) -> Route:
    merged = rule.over(level)
    if rule.escalation is not None and rule.escalate_to is None:
        # the rule brings its own chain: an unsure agent goes to its first step, not to the
        # level's escalate_to
        merged = dataclasses.replace(merged, escalate_to=None)
    return merged


def _rule_ceiling(
    raise_risk: Risk | None, actions: list[str] | None, tools: dict[str, Risk]
) -> Risk | None:
    """The lowest risk a rule can ever see (None when that depends on the request)."""
    floors: list[Risk] = [raise_risk] if raise_risk is not None else []
    if actions and all(a in tools for a in actions):
        floors.append(min((tools[a] for a in actions), key=lambda r: r.rank))
    return Risk.max(*floors) if floors else None


def _quorum_feasible(fields: RouteFields, directory: Directory, loc: Loc, errors: _Errors) -> None:
    """Refuse a quorum that the people in the directory could never form."""
    if not directory.entries:
        return
    needed = max(fields.approvals or 1, len(fields.distinct_roles or ()))
    roles = set(fields.roles or ())
    eligible = [e for e in directory.entries if not roles or roles & e.roles]
    if roles and len(eligible) < needed:
        errors.add(
            (*loc, "approvals") if fields.approvals is not None else (*loc, "roles"),
            f"needs {needed} different approvers with role {' or '.join(sorted(roles))}, but "
            f"only {len(eligible)} reviewer(s) hold it"
            f"{': ' + ', '.join(e.id for e in eligible) if eligible else ''}",
        )
        return
    distinct = list(fields.distinct_roles or ())
    if distinct and all(directory.holders(r) for r in distinct):
        matched = match_roles([e.roles for e in eligible], distinct)
        if len(matched) < len(distinct):
            errors.add(
                (*loc, "distinct_roles"),
                f"no {len(distinct)} different people can cover {', '.join(distinct)} "
                "(one role each); give the roles to more reviewers",
            )


def _zone(name: str, loc: Loc, errors: _Errors) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        errors.add(
            loc, f"unknown time zone {name!r}; use an IANA name such as Europe/London or UTC"
        )
        return ZoneInfo("UTC")
