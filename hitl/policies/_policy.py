"""The engine: a compiled, immutable policy that turns a request into a verdict.

How a request is decided (the same text heads ``default.yaml``):

1. **Risk** is the highest of the tool's level in the registry (``unknown_tool_risk`` for a tool
   that is not registered), the agent's own hint, and the ``raise_risk`` of every matching rule.
   Risk only ever goes up.
2. A matching rule with ``policy: reject`` rejects the request (a reject always wins).
3. Otherwise the **first matching rule that says how to handle** the request decides, field by
   field over the defaults of the final risk level (``risk_levels``). A rule written for a lower
   risk than the final one (because another rule or the agent raised it) gives way to the
   stricter level defaults.
4. ``autonomous`` approves without a human; ``conditional`` approves without a human only when
   the agent's confidence is above ``thresholds.autonomous`` or a learned preference covers the
   request; ``mandatory`` always asks a human.
5. **High and critical requests always reach a human**, whatever a rule, a preference or the
   confidence says; silence (the timeout) never approves them either.
6. Confidence below ``thresholds.escalate`` never auto-approves, and sends the request straight
   to the escalation target (``escalate_to``, else the first step of the chain).
7. A condition that cannot be evaluated (a missing parameter) never auto-approves: a human
   looks at the request, and the reason says which rule failed and why.

:meth:`Policy.evaluate` is pure and total: the same request at the same ``now`` always gives the
same verdict, and it does not raise for a valid request.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import cel

from hitl.models import (
    ApprovalRequest,
    Destination,
    NotifyTarget,
    Risk,
    Verdict,
    VerdictKind,
    Vote,
)
from hitl.policies._compile import Compiled, Preference, Route, Rule, Step, Target
from hitl.policies._config import PolicyConfig, PolicyKind
from hitl.policies._directory import Directory, DirectoryEntry
from hitl.policies._expressions import ConditionError, request_variables, time_variables
from hitl.policies._oncall import aware
from hitl.policies._votes import (
    VoteCheck,
    can_decide,
    check_vote,
    quorum_met,
    quorum_possible,
)

if TYPE_CHECKING:
    from hitl.policies._testcases import PolicyTestCase

__all__ = ["Policy", "describe_destination", "format_duration"]

_MAX_REASON = 2000
_MAX_PLANS = 4096


@dataclass(slots=True)
class _Assessment:
    """What the rules say about one action: the risk so far and which rules matched."""

    plan: _Plan
    base: Risk
    known: bool
    risk: Risk
    raised: list[tuple[str, Risk]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    reject: Rule | None = None
    routing: list[Rule] = field(default_factory=list)
    context: cel.Context | str | None = None


@dataclass(frozen=True, slots=True)
class _Plan:
    """The rules and preferences that can apply to one action, and the variables they read."""

    rules: tuple[Rule, ...]
    preferences: tuple[Preference, ...]
    variables: frozenset[str]
    now_fields: frozenset[str] | None


def format_duration(seconds: int) -> str:
    """600 -> ``10m``; 5400 -> ``1h30m`` (the inverse of :func:`parse_duration`)."""
    out = ""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def describe_destination(dest: Destination | Target | None) -> str:
    if dest is None:
        return "the default review channel"
    if dest.kind == "oncall":
        return f"whoever is on call for '{dest.target}'"
    if dest.kind == "user":
        return f"user {dest.target}"
    return f"channel {dest.target}"


def _roles_words(roles: Sequence[str]) -> str:
    quoted = [f"'{r}'" for r in roles]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


class Policy:
    """A loaded, compiled, immutable policy. Build it with :func:`hitl.policies.load_policy`.

    ::

        policy = load_policy("policy.yaml", env="staging")
        verdict = policy.evaluate(ApprovalRequest(action="stop_instance",
                                                  params={"environment": "production"}))
        verdict.kind, verdict.risk, verdict.roles     # review, high, ['engineering_manager']
        policy.check_vote(verdict, [], "U0BOB", requested_by="U0ALICE").ok   # True
    """

    __slots__ = ("_c", "_env", "_now_cache", "_plans", "_source", "_tests", "_version")

    def __init__(
        self,
        compiled: Compiled,
        *,
        version: str,
        source: str,
        env: str | None = None,
        tests: Sequence[PolicyTestCase] = (),
    ) -> None:
        self._c = compiled
        self._version = version
        self._source = source
        self._env = env or compiled.config.environment
        self._tests = tuple(tests)
        self._plans: dict[str, _Plan] = {}
        self._now_cache: tuple[int, dict[str, object]] | None = None

    # --- identity ---------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """``sha256:<16 hex>`` of the normalized config, plus ``+<declared version>``."""
        return self._version

    @property
    def source(self) -> str:
        """The file it was loaded from, or ``<default>``."""
        return self._source

    @property
    def env(self) -> str:
        """The deployment environment conditions see as ``env``."""
        return self._env

    @property
    def config(self) -> PolicyConfig:
        """The validated configuration (read-only)."""
        return self._c.config

    @property
    def tests(self) -> list[PolicyTestCase]:
        """Test cases loaded from the file next to the policy (``<name>_test.yaml``)."""
        return list(self._tests)

    @property
    def directory(self) -> Directory:
        return self._c.directory

    @property
    def timezone(self) -> datetime.tzinfo:
        return self._c.zone

    def with_env(self, env: str) -> Policy:
        """The same policy evaluated for another deployment environment."""
        return Policy(
            self._c, version=self._version, source=self._source, env=env, tests=self._tests
        )

    def with_tests(self, tests: Sequence[PolicyTestCase]) -> Policy:
        return Policy(
            self._c, version=self._version, source=self._source, env=self._env, tests=tests
        )

    def __repr__(self) -> str:
        return f"<Policy {self._version} from {self._source} env={self._env}>"

    # --- the directory ----------------------------------------------------------------------

    def reviewer(self, user_id: str) -> DirectoryEntry | None:
        """The one reviewer ``user_id`` names: any id, the email or an unshared display name."""
        return self._c.directory.get(user_id)

    def roles_of(self, user_id: str) -> frozenset[str]:
        """Every role ``user_id`` holds (with included roles); empty for a stranger."""
        return self._c.directory.roles_of(user_id)

    def same_person(self, a: str, b: str) -> bool:
        """Whether two ids (any alias, compared by :func:`~hitl.identity.canonical_id`) are one."""
        return self._c.directory.identity(a) == self._c.directory.identity(b)

    def oncall(self, schedule: str, at: datetime.datetime) -> str | None:
        """The directory id of whoever is on call for ``schedule`` at ``at`` (None: no such)."""
        rotation = self._c.rotations.get(schedule)
        return rotation.on_call(self._aware(at)) if rotation is not None else None

    def resolve(self, destination: Destination, at: datetime.datetime) -> list[str]:
        """The reviewer ids a destination means at ``at`` (a channel means no one in particular)."""
        if destination.kind == "user":
            entry = self._c.directory.get(destination.target)
            return [entry.id if entry is not None else destination.target]
        if destination.kind == "oncall":
            who = self.oncall(destination.target, at)
            return [who] if who is not None else []
        return []

    # --- votes ------------------------------------------------------------------------------

    def check_vote(
        self, verdict: Verdict, votes: list[Vote], reviewer_id: str, requested_by: str | None
    ) -> VoteCheck:
        """May ``reviewer_id`` approve now? ``reason`` says why not and what to do instead."""
        return check_vote(self._c.directory, verdict, votes, reviewer_id, requested_by)

    def quorum_met(self, verdict: Verdict, votes: list[Vote]) -> bool:
        """Enough different approvers, and each distinct role covered by a different one."""
        return quorum_met(self._c.directory, verdict, votes)

    def can_decide(self, verdict: Verdict, reviewer_id: str, requested_by: str | None) -> bool:
        """Whether ``reviewer_id`` may vote on a request with this verdict at all."""
        return can_decide(self._c.directory, verdict, reviewer_id, requested_by)

    # --- break-glass ------------------------------------------------------------------------

    @property
    def ack_window_s(self) -> int | None:
        """Seconds a second human has to acknowledge a break-glass approval (None: disabled)."""
        bg = self._c.break_glass
        return bg.ack_within_s if bg is not None else None

    def break_glass_allowed(self, reviewer_id: str) -> VoteCheck:
        """May ``reviewer_id`` approve alone in an emergency (to be acknowledged by another)?"""
        bg = self._c.break_glass
        if bg is None:
            return VoteCheck(
                False,
                "break-glass is not enabled in this policy; add a break_glass section "
                "(who may break glass, and ack_within) or get the normal approvals",
            )
        entry = self._c.directory.get(reviewer_id)
        if entry is None:
            return VoteCheck(
                False, f"{reviewer_id} is not in the reviewer directory and cannot break glass"
            )
        held = [r for r in bg.roles if r in entry.roles]
        if not held:
            return VoteCheck(
                False,
                f"{entry.name} cannot break glass: it needs role {_roles_words(bg.roles)}",
            )
        return VoteCheck(
            True,
            f"{entry.name} may break glass; a second person must acknowledge within "
            f"{format_duration(bg.ack_within_s)}",
            held[0],
        )

    def break_glass_ack_allowed(self, breaker_id: str, reviewer_id: str) -> VoteCheck:
        """May ``reviewer_id`` acknowledge the break-glass approval made by ``breaker_id``?"""
        bg = self._c.break_glass
        if bg is None:
            return VoteCheck(False, "break-glass is not enabled in this policy")
        directory = self._c.directory
        entry = directory.get(reviewer_id)
        if entry is None:
            return VoteCheck(False, f"{reviewer_id} is not in the reviewer directory")
        if directory.may_be_same(breaker_id, reviewer_id):
            return VoteCheck(
                False,
                f"{entry.name} broke the glass and cannot acknowledge it; a second person must",
            )
        if bg.ack_roles:
            held = [r for r in bg.ack_roles if r in entry.roles]
            if not held:
                return VoteCheck(
                    False,
                    f"{entry.name} cannot acknowledge: it needs role {_roles_words(bg.ack_roles)}",
                )
            return VoteCheck(True, f"{entry.name} may acknowledge", held[0])
        return VoteCheck(True, f"{entry.name} may acknowledge")

    # --- evaluation -------------------------------------------------------------------------

    def _aware(self, at: datetime.datetime | None) -> datetime.datetime:
        if at is None:
            return datetime.datetime.now(datetime.UTC)
        return aware(at, self._c.zone)

    def _plan(self, action: str) -> _Plan:
        plan = self._plans.get(action)
        if plan is None:
            rules = tuple(r for r in self._c.rules if r.matcher.applies_to(action))
            prefs = tuple(p for p in self._c.preferences if p.matcher.applies_to(action))
            conditions = [r.condition for r in rules if r.condition is not None]
            conditions += [p.condition for p in prefs]
            names: set[str] = set()
            now_fields: set[str] | None = set()
            for cond in conditions:
                names |= cond.variables
                if "now" in cond.variables:
                    if cond.now_fields is None or now_fields is None:
                        now_fields = None
                    else:
                        now_fields |= cond.now_fields
            plan = _Plan(
                rules,
                prefs,
                frozenset(names),
                frozenset(now_fields) if now_fields is not None else None,
            )
            if len(self._plans) < _MAX_PLANS:
                self._plans[action] = plan
        return plan

    def time_variables(self, at: datetime.datetime) -> dict[str, object]:
        """What conditions see as ``now`` at ``at`` (it changes once a minute at most)."""
        at = self._aware(at)
        minute = int(at.timestamp()) // 60
        cached = self._now_cache
        if cached is not None and cached[0] == minute:
            return cached[1]
        c = self._c
        bh = c.config.business_hours
        local = at.astimezone(c.zone)
        values = time_variables(local, c.business_days, bh.start, bh.end, c.holidays)
        self._now_cache = (minute, values)
        return values

    def _context(
        self, request: ApprovalRequest, at: datetime.datetime, plan: _Plan
    ) -> cel.Context | str:
        values: dict[str, object] = request_variables(request, self._env)
        if "now" in plan.variables:
            now = self.time_variables(at)
            fields = plan.now_fields
            values["now"] = now if fields is None else {k: now[k] for k in fields}
        try:
            return cel.Context({n: values[n] for n in plan.variables if n in values})
        except Exception as exc:  # a value CEL cannot hold: every condition fails safe
            return f"the request's values cannot be read by conditions: {exc}"

    def _assess(self, request: ApprovalRequest, at: datetime.datetime) -> _Assessment:
        """Run the rules that apply to ``request.action``: risk, errors, reject, routing."""
        c = self._c
        plan = self._plan(request.action)
        tool_risk = c.tools.get(request.action)
        base = tool_risk if tool_risk is not None else c.config.unknown_tool_risk
        a = _Assessment(plan, base, tool_risk is not None, Risk.max(base, request.risk))
        for rule in plan.rules:
            if rule.condition is not None:
                if a.context is None:
                    a.context = self._context(request, at, plan)
                if isinstance(a.context, str):
                    a.errors.append((f"rule '{rule.name}'", a.context))
                    self._fail_closed(rule, a)
                    continue
                try:
                    if not rule.condition.test(a.context):
                        continue
                except ConditionError as exc:
                    a.errors.append((f"rule '{rule.name}'", str(exc)))
                    self._fail_closed(rule, a)
                    continue
            if rule.raise_risk is not None and rule.raise_risk.rank > a.risk.rank:
                a.risk = rule.raise_risk
                a.raised.append((f"rule '{rule.name}'", a.risk))
            if rule.reject:
                a.reject = a.reject or rule
            elif rule.routes:
                a.routing.append(rule)
        return a

    @staticmethod
    def _fail_closed(rule: Rule, a: _Assessment) -> None:
        """A condition that cannot be evaluated may have matched: keep the risk it would raise.

        Otherwise a request the rule was written to escalate (a refund whose amount is a string)
        would be reviewed by a lower role than the rule requires.
        """
        if rule.raise_risk is not None and rule.raise_risk.rank > a.risk.rank:
            a.risk = rule.raise_risk
            a.raised.append((f"rule '{rule.name}' (its condition could not be evaluated)", a.risk))

    def _assess_plan(self, request: ApprovalRequest, at: datetime.datetime, a: _Assessment) -> str:
        """Fold each plan step (assessed as its own request) into ``a``; why a step rejects."""
        rejected = ""
        for number, step in enumerate(request.plan, start=1):
            if step.action is None:
                continue
            sub = request.model_copy(
                update={"action": step.action, "params": step.params, "plan": []}
            )
            s = self._assess(sub, at)
            where = f"plan step {number} ({step.action})"
            if s.risk.rank > a.risk.rank:
                a.risk = s.risk
                a.raised.append((where, s.risk))
            a.errors.extend((f"{label} for {where}", msg) for label, msg in s.errors)
            if s.reject is not None and not rejected:
                rejected = f"{where} is rejected by rule '{s.reject.name}'" + (
                    f": {s.reject.reason}" if s.reject.reason else "."
                )
        return rejected

    def evaluate(
        self, request: ApprovalRequest, *, now: datetime.datetime | None = None
    ) -> Verdict:
        """The verdict for ``request`` at ``now`` (default: the current time). Pure.

        ``now`` should be aware; a naive ``now`` is read as wall time in the policy's zone.

        A plan-level request (``plan`` with actions) is at least as risky as its riskiest step,
        each step assessed as a request of its own; a step that a rule rejects rejects the plan.
        """
        c = self._c
        at = self._aware(now)
        a = self._assess(request, at)
        step_rejected = self._assess_plan(request, at, a) if request.plan else ""
        plan, base, risk, context = a.plan, a.base, a.risk, a.context
        errors, reject, routing = a.errors, a.reject, a.routing

        words = _Words(request, risk, base, a.known, a.raised)
        if step_rejected and reject is None:
            words.say(f"Rejected: {step_rejected}")
            return self._verdict(VerdictKind.AUTO_REJECT, risk, "plan", words)
        if reject is not None:
            words.say(
                f"Rejected by rule '{reject.name}'"
                + (f": {reject.reason}" if reject.reason else ".")
            )
            return self._verdict(VerdictKind.AUTO_REJECT, risk, reject.name, words)

        chosen: Rule | None = None
        for rule in routing:
            if Risk.max(base, rule.raise_risk).rank >= risk.rank:
                chosen = rule
                break
            words.say(
                f"Rule '{rule.name}' is written for lower risk, so the {risk.value}-risk "
                "defaults apply instead."
            )
        route = chosen.merged[risk] if chosen is not None else c.levels[risk]
        rule_name = chosen.name if chosen is not None else f"risk_levels.{risk.value}"
        if chosen is not None:
            words.say(f"Rule '{chosen.name}'" + (f": {chosen.reason}" if chosen.reason else "."))
        elif c.level_text[risk]:
            words.say(f"Default for {risk.value} risk: {c.level_text[risk]}")
        policy = route.policy or PolicyKind.MANDATORY

        if policy is PolicyKind.REJECT:
            words.say(f"{risk.value.capitalize()}-risk requests are rejected by this policy.")
            return self._verdict(VerdictKind.AUTO_REJECT, risk, rule_name, words)

        high = risk.rank >= Risk.HIGH.rank
        if high and policy in (PolicyKind.AUTONOMOUS, PolicyKind.CONDITIONAL):
            policy = PolicyKind.MANDATORY
            words.say("High and critical requests always need a human.")
        thresholds = c.config.thresholds
        confidence = request.confidence
        unsure = confidence is not None and confidence < thresholds.escalate

        auto: str | None = None
        if errors:
            for label, message in errors[:3]:
                words.say(f"The condition of {label} could not be evaluated ({message}).")
            words.say("A human must decide, because a condition could not be checked.")
        elif unsure:
            words.say(
                f"The agent's confidence {confidence:.2f} is below {thresholds.escalate:g}: "
                "escalated at once."
            )
        elif policy is PolicyKind.AUTONOMOUS:
            auto = (
                "the rule allows it without a human"
                if chosen is not None and chosen.route.policy is PolicyKind.AUTONOMOUS
                else f"{risk.value}-risk actions are fully autonomous"
            )
        elif policy is PolicyKind.CONDITIONAL:
            if confidence is not None and confidence > thresholds.autonomous:
                auto = f"the agent's confidence {confidence:.2f} is above {thresholds.autonomous:g}"
            else:
                pref = self._preference(plan, context, request, at)
                if pref is not None:
                    auto = f"learned preference '{pref.name}': {pref.reason}"
                    rule_name = f"preference:{pref.name}"
                elif confidence is None:
                    words.say("The agent gave no confidence, so a human decides.")
                else:
                    words.say(
                        f"The agent's confidence {confidence:.2f} is not above "
                        f"{thresholds.autonomous:g}, so a human decides."
                    )
        if auto is not None and not high:
            words.say(f"Approved without a human: {auto}.")
            return self._verdict(VerdictKind.AUTO_APPROVE, risk, rule_name, words)
        return self._review(request, risk, rule_name, route, words, unsure, bool(errors))

    def _preference(
        self,
        plan: _Plan,
        context: cel.Context | str | None,
        request: ApprovalRequest,
        at: datetime.datetime,
    ) -> Preference | None:
        if not plan.preferences:
            return None
        if context is None:
            context = self._context(request, at, plan)
        if isinstance(context, str):
            return None
        for pref in plan.preferences:
            try:
                if pref.condition.test(context):
                    return pref
            except ConditionError:
                continue
        return None

    def _review(
        self,
        request: ApprovalRequest,
        risk: Risk,
        rule_name: str,
        route: Route,
        words: _Words,
        unsure: bool,
        errors: bool,
    ) -> Verdict:
        distinct = list(route.distinct_roles or ())
        roles = list(route.roles or ())
        approvals = min(10, max(route.approvals or 1, len(distinct)))
        destination = route.destination
        steps = list(route.escalation or ())
        if unsure:
            target = route.escalate_to
            if target is None:
                first = next((i for i, s in enumerate(steps) if s.target is not None), None)
                if first is not None:
                    target = steps[first].target
                    del steps[first]
            if target is not None:
                destination = target
                words.say(f"Sent straight to {describe_destination(target)}.")
        timeout_at = next((s.after_s for s in steps if s.timeout), None)
        if timeout_at is None:
            last = max((s.after_s for s in steps), default=0)
            timeout_at = max(self._c.timeout_s, last + 1)
            steps.append(Step(timeout_at, timeout=True))
        if request.timeout_s is not None and request.timeout_s < timeout_at:
            steps = [s for s in steps if not s.timeout and s.after_s < request.timeout_s]
            steps.append(Step(request.timeout_s, timeout=True))
            words.say(f"The agent asked for an answer within {format_duration(request.timeout_s)}.")
        outcome: Literal["rejected", "approved"] = route.on_timeout or "rejected"
        if outcome == "approved" and (risk.rank >= Risk.HIGH.rank or errors or unsure):
            outcome = "rejected"
            words.say("Silence never approves this request: it is rejected if nobody answers.")
        need = f"{approvals} approval{'s' if approvals > 1 else ''}"
        if approvals > 1:
            need += " from different people"
        if roles:
            need += f" with role {_roles_words(roles)}"
        if distinct:
            need += f", covering {' and '.join(repr(r) for r in distinct)} (one person each)"
        words.say(f"Needs {need}.")
        return self._verdict(
            VerdictKind.REVIEW,
            risk,
            rule_name,
            words,
            approvals=approvals,
            roles=roles,
            distinct_roles=distinct,
            destination=destination,
            notify=route.notify or (),
            escalation=steps,
            timeout_outcome=outcome,
            digest=bool(route.digest),
        )

    def _verdict(
        self,
        kind: VerdictKind,
        risk: Risk,
        rule: str,
        words: _Words,
        *,
        approvals: int = 1,
        roles: list[str] | None = None,
        distinct_roles: list[str] | None = None,
        destination: Target | None = None,
        notify: Sequence[NotifyTarget] = (),
        escalation: list[Step] | None = None,
        timeout_outcome: Literal["rejected", "approved"] = "rejected",
        digest: bool = False,
    ) -> Verdict:
        reason = words.text()
        if len(reason) > _MAX_REASON:
            reason = reason[: _MAX_REASON - 1] + "…"
        # validating plain data is faster than building the nested models one by one
        return Verdict.model_validate(
            {
                "kind": kind,
                "risk": risk,
                "reason": reason,
                "rule": rule[:256],
                "approvals": approvals,
                "roles": roles or [],
                "distinct_roles": distinct_roles or [],
                "destination": destination.data() if destination is not None else None,
                "notify": [{"kind": n.kind, "target": n.target} for n in notify],
                "escalation": [s.data() for s in escalation or ()],
                "timeout_outcome": timeout_outcome,
                "digest": digest,
                "policy_version": self._version,
            }
        )

    # --- words --------------------------------------------------------------------------------

    def describe(
        self,
        verdict: Verdict,
        *,
        at: datetime.datetime | None = None,
        requested_by: str | None = None,
    ) -> list[str]:
        """The verdict in words, one line per fact, naming the people it means at ``at``.

        With ``requested_by``, it also says when the requester holds a needed role (they cannot
        approve their own request) and when nobody else could complete the approvals.
        """
        at = self._aware(at)
        d = self._c.directory
        kind = {
            VerdictKind.AUTO_APPROVE: "approved automatically, no human needed",
            VerdictKind.AUTO_REJECT: "rejected automatically",
            VerdictKind.REVIEW: "a human must decide",
        }[verdict.kind]
        lines = [
            f"Verdict:     {kind}",
            f"Risk:        {verdict.risk.value}",
            f"Rule:        {verdict.rule or '-'}",
            f"Why:         {verdict.reason}",
        ]
        if verdict.kind is VerdictKind.REVIEW:
            who = ""
            if verdict.roles:
                holders = sorted({e.name for r in verdict.roles for e in d.holders(r)})
                who = f" with role {_roles_words(verdict.roles)} ({', '.join(holders) or 'nobody'})"
            count = (
                f"{verdict.approvals} approvals from different people"
                if verdict.approvals > 1
                else "1 approval"
            )
            lines.append(f"Approvals:   {count}{who}")
            for role in verdict.distinct_roles:
                holders = sorted(e.name for e in d.holders(role))
                lines.append(f"  one with:  '{role}' ({', '.join(holders) or 'nobody'})")
            if requested_by is not None:
                name = d.name(requested_by)
                needed = set(verdict.roles) | set(verdict.distinct_roles)
                if needed & d.roles_of(requested_by):
                    lines.append(f"Note:        {name} cannot approve their own request")
                if not quorum_possible(d, verdict, requested_by):
                    lines.append(
                        f"Warning:     without {name}, nobody else can complete the approvals "
                        "this request needs (give the role to more people, or break glass)"
                    )
            lines.append(f"Posted to:   {self._dest_words(verdict.destination, at)}")
            if verdict.notify:
                lines.append(f"Also told:   {', '.join(map(str, verdict.notify))}")
            for step in verdict.escalation:
                after = format_duration(step.after_s)
                if step.timeout:
                    lines.append(f"After {after:>5}: nobody answered -> {verdict.timeout_outcome}")
                else:
                    told = [self._dest_words(step.target, at)] if step.target is not None else []
                    told += [str(n) for n in step.notify]
                    lines.append(f"After {after:>5}: escalate to {', '.join(told)}")
            lines.append(
                f"Digest:      {'may be batched into a digest' if verdict.digest else 'no'}"
            )
        lines.append(f"Policy:      {verdict.policy_version} ({self._source}, env {self._env})")
        return lines

    def _dest_words(self, dest: Destination | None, at: datetime.datetime) -> str:
        text = describe_destination(dest)
        if dest is not None and dest.kind != "channel":
            people = [self._c.directory.name(p) for p in self.resolve(dest, at)]
            text += f" (now: {', '.join(people) or 'nobody'})"
        return text


class _Words:
    """Collects the sentences of a verdict's reason, starting with where the risk came from."""

    __slots__ = ("_base", "_known", "_parts", "_raised", "_request", "_risk")

    def __init__(
        self,
        request: ApprovalRequest,
        risk: Risk,
        base: Risk,
        known: bool,
        raised: list[tuple[str, Risk]],
    ) -> None:
        self._request = request
        self._risk = risk
        self._base = base
        self._known = known
        self._raised = raised
        self._parts: list[str] = []

    def say(self, sentence: str) -> None:
        self._parts.append(sentence)

    def text(self) -> str:
        request = self._request
        why = [
            f"the tool registry lists it as {self._base.value}"
            if self._known
            else f"it is not in the tool registry, so it counts as {self._base.value}"
        ]
        if request.risk is not None and request.risk.rank > self._base.rank:
            why.append(f"the agent marked it {request.risk.value}")
        why.extend(f"{who} raised it to {r.value}" for who, r in self._raised)
        head = f"{request.action} is {self._risk.value} risk ({'; '.join(why)})."
        return " ".join([head, *self._parts])
