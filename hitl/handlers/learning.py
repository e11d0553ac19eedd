"""Learned preferences, suggested from feedback and accepted by a human into the policy.

The article: "User always approves shipping refunds under $10. Store this fact; future similar
actions can bypass HITL" -- and: "Do not use memory to bypass mandatory HITL for high-risk
actions." So hitl never learns by itself. :func:`suggest` reads an agent's feedback for one
action and proposes a ``preferences:`` entry only when:

- the newest ``min_approvals`` (or more) human decisions in a row are plain approvals (a
  rejection or a modification ends the streak: reviewers did not "always approve");
- every one of them, and every decision kept for that agent and action, was low or medium risk
  by the policy (never high or critical: the policy engine would ignore such a preference anyway);
- every parameter of the approved requests can be bounded by what was approved: numbers by
  the largest approved value, strings and booleans by the values seen (at most
  :data:`MAX_VALUES`). A parameter that cannot be bounded (nested data, many distinct strings, or
  a key some requests lacked) means no suggestion: the pattern is not narrow enough.

A person then accepts it (``hitl feedback accept NAME --policy FILE``): :func:`accept` adds the
entry to the policy text and checks that the result still loads. The policy engine applies a
preference only to a low- or medium-risk request whose rule is *conditional*; :func:`effect`
says whether the suggestion would change anything under a given policy.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from hitl.errors import InvalidRequest
from hitl.models import ApprovalRequest, FeedbackEntry, Outcome, Risk, VerdictKind
from hitl.policies import parse_policy
from hitl.queue.store import Store

__all__ = [
    "MAX_VALUES",
    "MIN_APPROVALS",
    "Suggestion",
    "accept",
    "effect",
    "feedback_lists",
    "suggest",
    "suggest_all",
]

MIN_APPROVALS = 3
MAX_VALUES = 5
"""At most this many distinct string values of one parameter make a bounded pattern."""
_LEARNABLE = (Risk.LOW, Risk.MEDIUM)


@dataclass(frozen=True)
class Suggestion:
    """A ``preferences:`` entry proposed from ``approvals`` approvals in a row."""

    name: str
    agent_id: str
    action: str
    when: str
    approvals: int
    risk: Risk
    learned_from: str
    example: dict[str, Any]

    def entry(self) -> dict[str, Any]:
        """The policy entry, as it goes under ``preferences:``."""
        return {
            "name": self.name,
            "description": (
                f"Reviewers approved {self.action} by {self.agent_id} {self.approvals} times "
                "in a row within these bounds."
            ),
            "learned_from": self.learned_from,
            "action": self.action,
            "when": self.when,
        }

    def yaml(self) -> str:
        return yaml.safe_dump([self.entry()], sort_keys=False, width=100, allow_unicode=True)


def _literal(value: Any) -> str:
    """A CEL literal: JSON's string escapes and numbers are CEL's; true/false likewise."""
    return json.dumps(value)


def _bound(name: str, values: Sequence[Any]) -> str | None:
    field = f"params.{name}"
    if all(isinstance(v, bool) for v in values):
        distinct = sorted(set(values))
        return f"{field} == {_literal(distinct[0])}" if len(distinct) == 1 else None
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        top = max(values)
        return f"{field} <= {_literal(float(top))}"
    if all(isinstance(v, str) for v in values):
        distinct = sorted(set(values))
        if len(distinct) == 1:
            return f"{field} == {_literal(distinct[0])}"
        if len(distinct) <= MAX_VALUES:
            return f"{field} in [{', '.join(_literal(v) for v in distinct)}]"
    return None


def _name(agent_id: str, action: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", f"{agent_id}-{action}".lower()).strip("-")
    return f"learned-{slug}"[:60].rstrip("-")


def suggest(
    entries: Sequence[FeedbackEntry], min_approvals: int = MIN_APPROVALS
) -> Suggestion | None:
    """The suggestion from one agent's feedback for one action (newest first), or None."""
    if not entries or any(e.risk not in _LEARNABLE for e in entries):
        return None
    streak: list[FeedbackEntry] = []
    for entry in entries:
        if entry.outcome is not Outcome.APPROVED or entry.modified:
            break
        streak.append(entry)
    if len(streak) < max(1, min_approvals):
        return None
    keys = set(streak[0].params)
    if any(set(e.params) != keys for e in streak):
        return None
    bounds = []
    for key in sorted(keys):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            return None
        bound = _bound(key, [e.params[key] for e in streak])
        if bound is None:
            return None
        bounds.append(bound)
    first = streak[0]
    when = " && ".join([f"agent_id == {_literal(first.agent_id)}", *bounds])
    people = sorted({name for e in streak for name in e.reviewers})
    day = datetime.datetime.fromtimestamp(first.decided_at, datetime.UTC).date().isoformat()
    return Suggestion(
        name=_name(first.agent_id, first.action),
        agent_id=first.agent_id,
        action=first.action,
        when=when,
        approvals=len(streak),
        risk=max((e.risk for e in streak), key=_LEARNABLE.index),
        learned_from=f"{', '.join(people)}, {day}",
        example=first.params,
    )


def feedback_lists(store: Store) -> Iterator[list[FeedbackEntry]]:
    """Every agent-and-action feedback list in the store (newest entry first in each)."""
    for key in store.redis.scan_iter(match=f"{store.keys.prefix}feedback:*", count=500):
        raw = store.redis.lrange(key, 0, -1)
        entries = [FeedbackEntry.model_validate_json(item) for item in raw]
        if entries:
            yield entries


def suggest_all(
    lists: Iterable[Sequence[FeedbackEntry]], min_approvals: int = MIN_APPROVALS
) -> list[Suggestion]:
    found = (suggest(entries, min_approvals) for entries in lists)
    return sorted((s for s in found if s is not None), key=lambda s: s.name)


def _request(suggestion: Suggestion) -> ApprovalRequest:
    return ApprovalRequest(
        action=suggestion.action, params=suggestion.example, agent_id=suggestion.agent_id
    )


def effect(policy_text: str, suggestion: Suggestion) -> str | None:
    """Why accepting ``suggestion`` into the policy ``policy_text`` would change nothing, or
    None if it would let the approved pattern through without a human."""
    request = _request(suggestion)
    before = parse_policy(policy_text).evaluate(request)
    if before.kind is not VerdictKind.REVIEW:
        return f"the policy already decides it without a human ({before.rule or before.kind})"
    verdict = parse_policy(accept(policy_text, suggestion)).evaluate(request)
    if verdict.kind is not VerdictKind.AUTO_APPROVE:
        return f"a human would still decide: {verdict.reason or verdict.rule}"
    return None


def accept(policy_text: str, suggestion: Suggestion, *, source: str = "<policy>") -> str:
    """``policy_text`` with the suggestion added under ``preferences:`` (comments kept), after
    checking that the result loads; :class:`hitl.errors.ConfigError` if it would not."""
    block = suggestion.yaml()
    if re.search(rf"^\s*-?\s*name:\s*{re.escape(suggestion.name)}\s*$", policy_text, re.M):
        raise InvalidRequest(f"{source} already has a preference named {suggestion.name}")
    match = re.search(r"^preferences:[ \t]*(\[\])?[ \t]*(#.*)?$", policy_text, re.M)
    if match is None:
        text = policy_text.rstrip("\n") + "\n\npreferences:\n" + _indent(block)
    elif match.group(1):
        text = policy_text[: match.start()] + "preferences:\n" + _indent(block).rstrip("\n")
        text += policy_text[match.end() :]
    else:
        end = match.end() + 1
        text = policy_text[:end] + _indent(block) + policy_text[end:]
    parse_policy(text, source=source)
    return text


def _indent(block: str) -> str:
    return "".join("  " + line if line.strip() else line for line in block.splitlines(True))
