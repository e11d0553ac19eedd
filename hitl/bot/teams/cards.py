"""The Teams approval card: an Adaptive Card 1.5 with Universal Actions. Pure functions.

Rendered from the same :class:`~hitl.bot.cards.CardView` as the Slack card (same facts, same
wording); buttons are ``Action.Execute`` with the verbs ``approve``, ``reject`` and ``modify``,
and a ``refresh`` action lets Teams fetch the latest card for each viewer::

    card = approval_card(record)                  # dict: the attachment's "content"
    action = parse_action(invoke_value["action"]["data"], record)
    action.verb, action.reason, action.params     # "modify", "too much", {"amount": 150}

Agent text is data here: it goes into ``TextRun`` elements, which Teams does not read as
markdown, and the few places that must be a ``FactSet`` have links defused. Sizes are bounded
by construction: every text is cut with a visible ``(truncated)`` marker, and a card that would
still exceed :data:`CARD_BUDGET` is rebuilt with tighter limits (Teams refuses messages over
about 28 KB).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hitl.bot.cards import CardView, card_view, format_time, format_value
from hitl.bot.fields import FieldSpec, check_edits, field_specs, finite_number, read_edits
from hitl.errors import InvalidRequest
from hitl.models import RequestRecord, Risk

__all__ = [
    "APPROVE",
    "CARD_BUDGET",
    "MAX_CARD_BYTES",
    "MODIFY",
    "MODIFY_REASON",
    "PARAM_PREFIX",
    "REFRESH",
    "REJECT",
    "REJECT_REASON",
    "SCHEMA_URL",
    "TRUNCATED",
    "VERBS",
    "TeamsAction",
    "approval_card",
    "card_size",
    "clip",
    "parse_action",
    "request_id_of",
]

SCHEMA_URL = "http://adaptivecards.io/schemas/adaptive-card.json"
VERSION = "1.5"
MAX_CARD_BYTES = 28 * 1024
"""What Teams accepts in one message (the card plus the activity around it)."""
CARD_BUDGET = 26 * 1024
"""What a card may take, leaving room for the activity envelope."""
MAX_REFRESH_USERS = 60
"""Teams refreshes automatically for at most 60 listed users."""
MAX_REASON = 3000
"""A vote's reason (``Vote.reason``)."""
TRUNCATED = "… (truncated)"
DRY_RUN = "🧪 DRY RUN - the agent will simulate this action; nothing is changed if you approve."

APPROVE = "approve"
REJECT = "reject"
MODIFY = "modify"
REFRESH = "refresh"
VERBS = (APPROVE, REJECT, MODIFY, REFRESH)
Verb = Literal["approve", "reject", "modify", "refresh"]

PARAM_PREFIX = "param."
REJECT_REASON = "reject.reason"
MODIFY_REASON = "modify.reason"

Json = dict[str, Any]


@dataclass(frozen=True)
class _Limits:
    """How much of each part a card shows; a card over budget is rebuilt with the next tier."""

    title: int
    reasoning: int
    user_request: int
    context_value: int
    context_items: int
    policy: int
    value: int
    params: int
    plan_steps: int
    step: int
    reason: int
    changes: int
    input_value: int
    """A param whose current value is longer is not editable in the card."""
    choices: int
    """An enum with more options is typed as text (the schema check still holds it to the enum)."""
    form_bytes: int
    """What the Modify form may take in all; params past it are listed as not editable here."""


_FULL = _Limits(
    title=300, reasoning=800, user_request=400, context_value=200, context_items=10, policy=600,
    value=150, params=15, plan_steps=8, step=200, reason=600, changes=10, input_value=1000,
    choices=25, form_bytes=12_000,
)  # fmt: skip
"""What the Slack card shows before "show all" (so the two cards agree)."""
_COMPACT = _Limits(
    title=200, reasoning=300, user_request=200, context_value=80, context_items=5, policy=200,
    value=80, params=8, plan_steps=3, step=100, reason=300, changes=5, input_value=200,
    choices=10, form_bytes=6_000,
)  # fmt: skip
_MINIMAL = _Limits(
    title=120, reasoning=0, user_request=0, context_value=0, context_items=0, policy=120,
    value=0, params=0, plan_steps=0, step=0, reason=200, changes=0, input_value=0,
    choices=0, form_bytes=0,
)  # fmt: skip
"""The facts, the status and Approve/Reject: always under budget whatever the request holds."""
_TIERS = (_FULL, _COMPACT, _MINIMAL)


# -- text helpers ------------------------------------------------------------------------------


def clip(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, ending with :data:`TRUNCATED` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(TRUNCATED))] + TRUNCATED


def _defuse(text: str) -> str:
    """A FactSet value or title with markdown links broken (Teams renders markdown there)."""
    return text.replace("](", "]\u200b(")


def _label(text: str) -> Json:
    """Our own wording (a section title): a TextBlock."""
    return {
        "type": "TextBlock",
        "text": _defuse(text),
        "weight": "Bolder",
        "wrap": True,
        "spacing": "Medium",
    }


def _note(text: str) -> Json:
    return {"type": "TextBlock", "text": text, "isSubtle": True, "wrap": True, "size": "Small"}


def _data(text: str, limit: int, **style: Any) -> Json:
    """Agent or reviewer text: a TextRun, which Teams shows as written (no markdown)."""
    return {
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "text": clip(text, limit) or " ", **style}],
    }


def _facts(pairs: Sequence[tuple[str, str]]) -> Json:
    facts = [{"title": _defuse(t), "value": _defuse(v) or "-"} for t, v in pairs]
    return {"type": "FactSet", "facts": facts}


def card_size(card: Mapping[str, Any]) -> int:
    """Bytes of ``card`` as sent (compact UTF-8 JSON)."""
    return len(json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode())


# -- the Modify form ----------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _input(spec: FieldSpec, limits: _Limits) -> Json | None:
    """The input for ``spec``, or None when its current value is too long to edit in a card."""
    value = spec.initial
    label = clip(spec.label, 100)
    base: Json = {"id": PARAM_PREFIX + spec.name, "label": label}
    if spec.kind in ("integer", "number"):
        element: Json = {"type": "Input.Number", **base}
        number = finite_number(value)
        if number is not None:
            element["value"] = int(number) if spec.kind == "integer" else value
        if spec.minimum is not None:
            element["min"] = spec.minimum
        if spec.maximum is not None:
            element["max"] = spec.maximum
        return element
    if spec.kind == "boolean":
        on = "true" if value is True else "false"
        return {
            "type": "Input.Toggle",
            **base,
            "title": label,
            "value": on,
            "valueOn": "true",
            "valueOff": "false",
        }
    if spec.kind == "date":
        return {"type": "Input.Date", **base, "value": value or ""}
    if spec.kind == "choice" and len(spec.options) <= limits.choices:
        choices = [
            {"title": clip(format_value(o), 100), "value": _json_text(o)} for o in spec.options
        ]
        if any(len(c["value"]) > limits.input_value for c in choices):
            return None
        element = {"type": "Input.ChoiceSet", **base, "style": "compact", "choices": choices}
        if spec.present:
            element["value"] = _json_text(value)
        return element
    if spec.kind in ("text", "choice") and (value is None or isinstance(value, str)):
        text = value or ""
        if spec.kind == "choice":
            label = clip(f"{spec.label} (one of {len(spec.options)} values)", 100)
    else:
        text = "" if value is None else _json_text(value)
        label = clip(f"{spec.label} (JSON)", 100)
    if len(text) > limits.input_value:
        return None
    element = {
        "type": "Input.Text",
        **base,
        "label": label,
        "value": text,
        "isMultiline": len(text) > 80 or spec.kind == "json",
    }
    if spec.kind == "text" and spec.max_length is not None:
        element["maxLength"] = spec.max_length
    if spec.kind == "text" and spec.pattern is not None:
        element["regex"] = spec.pattern
    return element


def _modify_card(view: CardView, fields: list[FieldSpec], limits: _Limits) -> Json | None:
    """The Modify form (one input per editable param, a reason), or None: nothing fits."""
    inputs: list[Json] = []
    skipped: list[str] = []
    size = 0
    for spec in fields:
        element = _input(spec, limits) if len(spec.name) <= 100 else None
        cost = card_size(element) if element is not None else 0
        if element is None or size + cost > limits.form_bytes:
            skipped.append(spec.name)
            continue
        inputs.append(element)
        size += cost
    if not inputs:
        return None
    body: list[Json] = [_note("Change the values, then approve with your changes.")]
    body += inputs
    if skipped:
        names = ", ".join(skipped)
        body.append(
            _note(
                clip(f"Not editable in this card (value too long, or no room left): {names}", 300)
            )
        )
    body.append(
        {
            "type": "Input.Text",
            "id": MODIFY_REASON,
            "label": "Why? (optional)",
            "isMultiline": True,
            "maxLength": MAX_REASON,
        }
    )
    submit = _execute("Approve with changes", MODIFY, view.request_id, style="positive")
    return {"type": "AdaptiveCard", "body": body, "actions": [submit]}


# -- the card ----------------------------------------------------------------------------------


def _execute(title: str, verb: str, request_id: str, **extra: Any) -> Json:
    return {
        "type": "Action.Execute",
        "title": title,
        "verb": verb,
        "data": {"verb": verb, "request_id": request_id},
        **extra,
    }


def _actions(view: CardView, fields: list[FieldSpec], limits: _Limits) -> list[Json]:
    rid = view.request_id
    if view.critical:
        confirm = {
            "type": "AdaptiveCard",
            "body": [
                _data(
                    f"{view.title} - this is CRITICAL risk and may not be reversible.",
                    limits.title + 60,
                    weight="Bolder",
                    color="Attention",
                )
            ],
            "actions": [
                _execute("Approve", APPROVE, rid, style="positive", associatedInputs="None")
            ],
        }
        approve: Json = {"type": "Action.ShowCard", "title": "Approve…", "card": confirm}
    else:
        approve = _execute("Approve", APPROVE, rid, style="positive", associatedInputs="None")
    reject_card = {
        "type": "AdaptiveCard",
        "body": [
            {
                "type": "Input.Text",
                "id": REJECT_REASON,
                "isMultiline": True,
                "label": "Why? (the agent and its developers read this)",
                "isRequired": True,
                "errorMessage": "Say why you reject it: the agent learns from the reason.",
                "maxLength": MAX_REASON,
            },
        ],
        "actions": [_execute("Reject", REJECT, rid, style="destructive")],
    }
    actions = [approve]
    modify = _modify_card(view, fields, limits)
    if modify is not None:
        actions.append({"type": "Action.ShowCard", "title": "Modify…", "card": modify})
    actions.append({"type": "Action.ShowCard", "title": "Reject…", "card": reject_card})
    return actions


def _needs(view: CardView) -> str:
    text = f"{len(view.approvers)} of {view.approvals_needed}"
    if view.roles:
        text += f" ({clip(' or '.join(view.roles), 120)})"
    return text


def _header(view: CardView, notice: str, limits: _Limits) -> Json:
    items = [
        _data(
            f"{view.badge} {view.risk.value.upper()} · {view.title}",
            limits.title + 20,
            weight="Bolder",
            size="Medium",
        )
    ]
    if notice:
        items.append(_data(notice, 300, italic=True))
    style = {Risk.CRITICAL: "attention", Risk.HIGH: "warning"}.get(view.risk, "emphasis")
    return {"type": "Container", "style": style, "items": items}


def _context(view: CardView, limits: _Limits) -> list[Json]:
    out: list[Json] = []
    if view.user_request and limits.user_request:
        out += [_label("User request"), _data(view.user_request, limits.user_request, italic=True)]
    if view.context and limits.context_items:
        items = list(view.context.items())
        pairs = [
            (clip(str(k), 60), clip(format_value(v), limits.context_value))
            for k, v in items[: limits.context_items]
        ]
        if len(items) > limits.context_items:
            pairs.append(("…", f"and {len(items) - limits.context_items} more (truncated)"))
        out += [_label("Context"), _facts(pairs)]
    return out


def _params(view: CardView, limits: _Limits) -> list[Json]:
    title = "Parameters"
    if view.changes:
        by = ", ".join(view.modified_by)
        title += f" (modified by {clip(by, 200)})" if view.open and by else " (modified)"
    if not view.params:
        return [_label(title), _note("none")]
    items = list(view.params.items())
    shown = items[: limits.params]
    pairs = [(clip(name, 60), clip(format_value(v), limits.value)) for name, v in shown]
    if len(items) > len(shown):
        pairs.append(("…", f"and {len(items) - len(shown)} more (truncated)"))
    return [_label(title), _facts(pairs)]


def _plan(view: CardView, limits: _Limits) -> list[Json]:
    steps = view.plan[: limits.plan_steps]
    lines = []
    for n, step in enumerate(steps, start=1):
        action = f"[{step.action}] " if step.action else ""
        lines.append(clip(f"{n}. {action}{step.description}", limits.step))
    if len(view.plan) > len(steps):
        lines.append(f"… and {len(view.plan) - len(steps)} more steps (truncated)")
    title = f"Plan ({len(view.plan)} steps; approving approves the whole plan)"
    return [_label(title), _data("\n".join(lines), 100_000)]


def _status(view: CardView, limits: _Limits) -> list[Json]:
    color = "Default"
    if view.outcome is not None:
        color = "Good" if view.outcome.approved else "Attention"
    out = [_data(view.status, 600, weight="Bolder", color=color)]
    if view.reason:
        out.append(_data(f"Reason: {view.reason}", limits.reason))
    if view.changes and limits.changes:
        pairs = []
        for change in view.changes[: limits.changes]:
            before = "(unset)" if change.before is None else format_value(change.before)
            after = "(unset)" if change.after is None else format_value(change.after)
            pairs.append((clip(change.name, 60), f"{clip(before, 80)} → {clip(after, 80)}"))
        if len(view.changes) > limits.changes:
            pairs.append(("…", f"and {len(view.changes) - limits.changes} more (truncated)"))
        out += [_note("Changed parameters (before → after)"), _facts(pairs)]
    return out


def _build(
    view: CardView,
    fields: list[FieldSpec],
    limits: _Limits,
    *,
    notice: str,
    buttons: bool,
    refresh_for: Sequence[str],
) -> Json:
    body: list[Json] = [_header(view, notice, limits)]
    if view.dry_run:
        body.append(
            {
                "type": "Container",
                "style": "warning",
                "items": [
                    {
                        "type": "TextBlock",
                        "wrap": True,
                        "weight": "Bolder",
                        "text": DRY_RUN,
                    }
                ],
            }
        )
    body.append(
        _facts(
            [
                ("Action", clip(view.action, 140)),
                ("Agent", clip(view.agent_id, 140)),
                ("On behalf of", clip(view.requested_by, 140)),
                ("Session", clip(view.session_id, 140)),
                ("Confidence", view.confidence or "not given"),
                ("Approvals", _needs(view)),
                ("Deadline", format_time(view.deadline) if view.deadline else "none"),
                ("Escalation", view.escalation),
            ]
        )
    )
    rule = clip(view.rule, 120) if view.rule else "no rule"
    reason = view.rule_reason or "no reason given"
    body += [_label("Policy"), _data(f"{rule} - {reason}", limits.policy)]
    body += _context(view, limits)
    if view.reasoning and limits.reasoning:
        body += [_label("Reasoning"), _data(view.reasoning, limits.reasoning)]
    elif view.reasoning:
        body.append(_note("Reasoning (truncated): see the request in hitl."))
    body += _params(view, limits)
    if view.plan and limits.plan_steps:
        body += _plan(view, limits)
    elif view.plan:
        body.append(_note(f"Plan: {len(view.plan)} steps (truncated)"))
    body += _status(view, limits)
    footer = f"Request {view.request_id} · requested {format_time(view.created_at)}"
    if view.policy_version:
        footer += f" · policy {clip(view.policy_version, 80)}"
    body.append(_note(footer))
    card: Json = {
        "type": "AdaptiveCard",
        "$schema": SCHEMA_URL,
        "version": VERSION,
        "fallbackText": clip(f"{view.status}: {view.title}", 300),
        "body": body,
    }
    if view.open:
        refresh: Json = {"action": _execute("Refresh", REFRESH, view.request_id)}
        if refresh_for:
            refresh["userIds"] = list(refresh_for[:MAX_REFRESH_USERS])
        card["refresh"] = refresh
        if buttons:
            card["actions"] = _actions(view, fields, limits)
    return card


def approval_card(
    view_or_record: CardView | RequestRecord,
    *,
    param_schema: Mapping[str, Any] | None = None,
    notice: str = "",
    buttons: bool = True,
    refresh_for: Sequence[str] = (),
) -> Json:
    """The Adaptive Card for a request as it stands (pending, part-approved or decided).

    ``param_schema`` types the Modify inputs (taken from the record when one is given);
    ``notice`` is a line above the card ("Escalated to you"); ``buttons=False`` leaves the actions
    out while the request is pending (e.g. for the requester's own view on refresh);
    ``refresh_for`` lists the Teams user ids whose clients refresh the card automatically (Teams
    honours at most 60). A decided card has no actions and no refresh.
    """
    if isinstance(view_or_record, RequestRecord):
        view = card_view(view_or_record)
        param_schema = view_or_record.request.param_schema
    else:
        view = view_or_record
    fields = field_specs(view.params, param_schema)
    card: Json = {}
    for limits in _TIERS:
        card = _build(view, fields, limits, notice=notice, buttons=buttons, refresh_for=refresh_for)
        if card_size(card) <= CARD_BUDGET:
            break
    return card


# -- what comes back ---------------------------------------------------------------------------


class TeamsAction(BaseModel):
    """What a reviewer did on a card: the verb, the request, their reason and, for ``modify``,
    the params they changed (typed, only the changed ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verb: Verb
    request_id: str
    reason: str = Field(default="", max_length=MAX_REASON)
    params: dict[str, Any] = Field(default_factory=dict)


def request_id_of(data: Mapping[str, Any]) -> str:
    """The request an ``Action.Execute``'s data is about (to load its record before parsing)."""
    rid = data.get("request_id")
    if not isinstance(rid, str) or not rid:
        raise InvalidRequest("the card action carries no request id: it is not a hitl card")
    return rid


def parse_action(data: Mapping[str, Any], record: RequestRecord) -> TeamsAction:
    """The :class:`TeamsAction` in an ``Action.Execute``'s data (the card's data merged with the
    inputs), checked against ``record``: the verb is known, a rejection has a reason, modified
    params are known, typed back from ``param_schema`` and valid against it. Pure.

    Raises :class:`~hitl.errors.InvalidRequest` whose message says what to fix.
    """
    rid = request_id_of(data)
    if rid != record.id:
        raise InvalidRequest(f"the card is about request {rid!r}, not {record.id!r}")
    verb = data.get("verb")
    if verb not in VERBS:
        raise InvalidRequest(
            f"unknown card action {clip(str(verb), 40)!r}: expected one of {', '.join(VERBS)}"
        )
    key = REJECT_REASON if verb == REJECT else MODIFY_REASON
    raw_reason = data.get(key, "") if verb in (REJECT, MODIFY) else ""
    reason = raw_reason.strip() if isinstance(raw_reason, str) else ""
    if verb == REJECT and not reason:
        raise InvalidRequest(
            "a rejection needs a reason: say why, the agent learns from it",
            [(REJECT_REASON, "required")],
        )
    if len(reason) > MAX_REASON:
        raise InvalidRequest(
            f"the reason is {len(reason)} characters; at most {MAX_REASON}", [(key, "too long")]
        )
    submitted = {
        k[len(PARAM_PREFIX) :]: v
        for k, v in data.items()
        if isinstance(k, str) and k.startswith(PARAM_PREFIX)
    }
    if submitted and verb != MODIFY:
        raise InvalidRequest(f"parameters come only with {MODIFY!r}, not {verb!r}")
    params = _changed(record, submitted) if verb == MODIFY else {}
    return TeamsAction(verb=verb, request_id=rid, reason=reason, params=params)


def _changed(record: RequestRecord, submitted: Mapping[str, Any]) -> dict[str, Any]:
    specs = field_specs(record.params, record.request.param_schema)
    edits = read_edits(specs, submitted)
    errors = edits.errors
    if not errors and not edits.changed:
        raise InvalidRequest("nothing was changed: edit a value, or use Approve instead")
    errors = errors or check_edits(record, specs, edits.changed)
    if errors:
        pairs = [
            (PARAM_PREFIX + name if name else "params", clip(m, 300)) for name, m in errors.items()
        ]
        where, problem = pairs[0]
        raise InvalidRequest(f"{where}: {problem}", pairs)
    return edits.changed
