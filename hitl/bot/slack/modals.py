"""Block Kit modals: the Reject and Modify forms, and "show all" for shortened card parts.

Built with ``slack_sdk.models`` (``View``, ``InputBlock``, typed elements), which checks Slack's
limits when it serializes. The Modify form has one typed input per parameter, derived from the
request's ``param_schema`` (number, integer, select, checkbox, date, text, JSON) or, without a
schema, from the current value; :func:`parse_modify` turns the submitted state back into typed
params and per-input errors::

    view = modify_view(record, meta)                # dict for views.open
    params, errors, reason = parse_modify(record, submission_state_values)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from slack_sdk.models.blocks import (
    Block,
    CheckboxesElement,
    ContextBlock,
    DatePickerElement,
    InputBlock,
    MarkdownTextObject,
    NumberInputElement,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from hitl.bot.cards import CardView, card_view, format_value
from hitl.bot.slack.blocks import (
    DIGEST_REJECT_VIEW,
    MAX_BLOCK_ID,
    MAX_INPUT,
    MAX_LABEL,
    MAX_MODAL_TITLE,
    MAX_OPTION,
    MAX_OPTION_VALUE,
    MAX_OPTIONS,
    MAX_TEXT,
    MAX_VIEW_BLOCKS,
    MODIFY_VIEW,
    PARTS,
    REASON_BLOCK,
    REJECT_VIEW,
    VALUE,
    clip,
    clip_md,
    esc,
)
from hitl.models import RequestRecord
from hitl.queue.digest import Digest

__all__ = [
    "FieldSpec",
    "full_text",
    "full_text_view",
    "modify_fields",
    "modify_view",
    "parse_modify",
    "digest_reject_view",
    "reject_view",
    "schema_errors",
]


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text)


def _plain(text: str, limit: int) -> PlainTextObject:
    return PlainTextObject(text=clip(text, limit) or " ", emoji=True)


# -- full text ---------------------------------------------------------------------------------


def _full_context(view: CardView) -> str:
    parts = []
    if view.user_request:
        parts.append(f"User request:\n{view.user_request}")
    if view.context:
        parts.append("Context:\n" + json.dumps(view.context, indent=2, ensure_ascii=False))
    return "\n\n".join(parts)


def full_text(record: RequestRecord, part: str) -> tuple[str, str, bool]:
    """``(title, text, code)`` for one part of the card, unshortened (``code``: monospace)."""
    view = card_view(record)
    title = PARTS.get(part, "Details")
    if part == "reasoning":
        return title, view.reasoning, False
    if part == "context":
        return title, _full_context(view), False
    if part == "params":
        return title, json.dumps(view.params, indent=2, ensure_ascii=False), True
    if part == "plan":
        steps = []
        for n, step in enumerate(view.plan, start=1):
            line = f"{n}. {step.action + ': ' if step.action else ''}{step.description}"
            if step.params:
                line += "\n   params: " + json.dumps(step.params, ensure_ascii=False)
            steps.append(line)
        return title, "\n".join(steps), False
    if part == "changes":
        lines = [f"Status: {view.status}"]
        if view.reason:
            lines.append(f"Reason: {view.reason}")
        for change in view.changes:
            before = "(unset)" if change.before is None else format_value(change.before)
            after = "(unset)" if change.after is None else format_value(change.after)
            lines.append(f"{change.name}: {before} -> {after}")
        return title, "\n".join(lines), False
    return "Summary", view.title, False


def _chunks(escaped: str, size: int) -> list[str]:
    """Split escaped text into pieces of at most ``size``, preferring line ends, keeping
    escapes whole."""
    out: list[str] = []
    rest = escaped
    while rest:
        if len(rest) <= size:
            out.append(rest)
            break
        cut = rest.rfind("\n", size // 2, size)
        if cut <= 0:
            cut = size
            amp = rest.rfind("&", max(0, size - 5), size)
            if amp != -1 and ";" not in rest[amp:size]:
                cut = amp
        out.append(rest[:cut])
        rest = rest[cut:].lstrip("\n") if rest[cut : cut + 1] == "\n" else rest[cut:]
    return out


def full_text_view(record: RequestRecord, part: str) -> dict[str, Any]:
    """A modal showing one part of the card whole (split over as many sections as needed)."""
    title, text, code = full_text(record, part)
    fence = "```" if code else ""
    size = MAX_TEXT - 2 * len(fence) - 10
    pieces = _chunks(esc(text or "(empty)"), size)
    room = MAX_VIEW_BLOCKS - 2
    blocks: list[Block] = [
        ContextBlock(elements=[_md(f"`{esc(record.id)}` · {clip_md(record.request.title, 200)}")])
    ]
    for piece in pieces[:room]:
        blocks.append(SectionBlock(text=_md(f"{fence}{piece}{fence}")))
    if len(pieces) > room:
        blocks.append(
            SectionBlock(
                text=_md(f"_Shortened: `hitl show {esc(record.id)} --json` has everything._")
            )
        )
    view = View(
        type="modal",
        title=_plain(title, MAX_MODAL_TITLE),
        close=_plain("Close", MAX_MODAL_TITLE),
        blocks=blocks,
    )
    out: dict[str, Any] = view.to_dict()
    return out


# -- reject ------------------------------------------------------------------------------------


def _summary_block(record: RequestRecord) -> SectionBlock:
    view = card_view(record)
    return SectionBlock(
        text=_md(
            f"{view.badge} *{clip_md(view.title, 300)}*\n`{esc(record.id)}` · "
            f"{view.risk.value} risk · {clip_md(view.status, 300)}"
        )
    )


def reject_view(record: RequestRecord, metadata: str) -> dict[str, Any]:
    """The Reject modal: a required reason (the agent learns from it)."""
    view = View(
        type="modal",
        callback_id=REJECT_VIEW,
        private_metadata=metadata,
        title=_plain("Reject request", MAX_MODAL_TITLE),
        submit=_plain("Reject", MAX_MODAL_TITLE),
        close=_plain("Cancel", MAX_MODAL_TITLE),
        blocks=[
            _summary_block(record),
            InputBlock(
                block_id=REASON_BLOCK,
                label=_plain("Why? (the agent and its developers read this)", MAX_LABEL),
                element=PlainTextInputElement(
                    action_id=VALUE, multiline=True, min_length=1, max_length=MAX_INPUT
                ),
            ),
        ],
    )
    out: dict[str, Any] = view.to_dict()
    return out


def digest_reject_view(digest: Digest, waiting: int, metadata: str) -> dict[str, Any]:
    """ "Reject all" of a digest: one required reason for every request still waiting."""
    view = View(
        type="modal",
        callback_id=DIGEST_REJECT_VIEW,
        private_metadata=metadata,
        title=_plain(f"Reject all {waiting}", MAX_MODAL_TITLE),
        submit=_plain("Reject all", MAX_MODAL_TITLE),
        close=_plain("Cancel", MAX_MODAL_TITLE),
        blocks=[
            SectionBlock(
                text=_md(
                    f"Reject the {waiting} requests of digest `{esc(digest.id)}` that are still "
                    f"waiting ({clip_md(digest.dest, 200)})."
                )
            ),
            InputBlock(
                block_id=REASON_BLOCK,
                label=_plain("Why? (every agent gets this reason)", MAX_LABEL),
                element=PlainTextInputElement(
                    action_id=VALUE, multiline=True, min_length=1, max_length=MAX_INPUT
                ),
            ),
        ],
    )
    out: dict[str, Any] = view.to_dict()
    return out


# -- modify ------------------------------------------------------------------------------------

Kind = Literal["integer", "number", "text", "select", "checkbox", "date", "json"]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MISSING: Any = object()


@dataclass(frozen=True)
class FieldSpec:
    """One typed input of the Modify modal, derived from ``param_schema`` (or the value)."""

    name: str
    kind: Kind
    label: str
    initial: Any
    hint: str = ""
    options: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    editable: bool = True
    why_not: str = ""
    present: bool = True
    """The param has a value now (an absent optional one may be added)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def block_id(self) -> str:
        return "p:" + self.name


def _schema_type(prop: dict[str, Any]) -> str | None:
    t = prop.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), None)
    return t if isinstance(t, str) else None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _kind(prop: dict[str, Any], value: Any) -> Kind:
    enum = prop.get("enum")
    if (
        isinstance(enum, list)
        and 0 < len(enum) <= MAX_OPTIONS
        and all(len(json.dumps(v, ensure_ascii=False)) <= MAX_OPTION_VALUE for v in enum)
    ):
        return "select"
    t = _schema_type(prop)
    if t is None and value is not _MISSING and value is not None:
        t = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(value))
    if t == "boolean":
        return "checkbox"
    if t == "integer":
        return "integer"
    if t == "number":
        return "number"
    if t == "string":
        fmt = prop.get("format")
        if fmt == "date" or (fmt is None and isinstance(value, str) and _DATE.match(value)):
            return "date"
        return "text"
    return "json"


def _spec(name: str, prop: dict[str, Any], value: Any) -> FieldSpec:
    present = value is not _MISSING
    initial = value if present else None
    kind = _kind(prop, value)
    title = prop.get("title")
    label = title if isinstance(title, str) and title else name
    description = prop.get("description")
    hint = description if isinstance(description, str) else ""
    why_not = ""
    if len(FieldSpec(name, kind, label, initial).block_id) > MAX_BLOCK_ID:
        why_not = "its name is too long for a form"
    if kind in ("integer", "number") and initial is not None and _number(initial) is None:
        kind = "json"
    if (
        kind == "date"
        and initial is not None
        and not (isinstance(initial, str) and _DATE.match(initial))
    ):
        kind = "text" if isinstance(initial, str) else "json"
    if kind == "text" and initial is not None and not isinstance(initial, str):
        kind = "json"
    if kind == "text" and isinstance(initial, str) and len(initial) > MAX_INPUT:
        why_not = f"its value is {len(initial)} characters (a form field holds {MAX_INPUT})"
    if kind == "json" and initial is not None:
        size = len(json.dumps(initial, indent=1, ensure_ascii=False))
        if size > MAX_INPUT:
            why_not = f"its value is {size} characters of JSON (a form field holds {MAX_INPUT})"
    if kind == "json" and not hint:
        hint = 'JSON (e.g. 12, "text", [1, 2] or {"k": 1})'
    max_length = prop.get("maxLength")
    return FieldSpec(
        name=name,
        kind=kind,
        label=label,
        initial=initial,
        hint=hint,
        options=tuple(prop.get("enum") or ()) if kind == "select" else (),
        minimum=_number(prop.get("minimum")),
        maximum=_number(prop.get("maximum")),
        max_length=max_length if isinstance(max_length, int) and max_length > 0 else None,
        editable=not why_not,
        why_not=why_not,
        present=present,
    )


def modify_fields(record: RequestRecord) -> list[FieldSpec]:
    """One field per parameter: the schema's properties in order, then params it does not name."""
    schema = record.request.param_schema or {}
    props = schema.get("properties") if isinstance(schema, dict) else None
    props = props if isinstance(props, dict) else {}
    names = list(props) + [n for n in record.params if n not in props]
    out: list[FieldSpec] = []
    for name in names:
        prop = props.get(name)
        out.append(
            _spec(name, prop if isinstance(prop, dict) else {}, record.params.get(name, _MISSING))
        )
    return out


def _option(value: Any) -> Option:
    return Option(
        value=json.dumps(value, ensure_ascii=False),
        text=_plain(format_value(value), MAX_OPTION),
    )


def _element(spec: FieldSpec) -> Any:
    init = spec.initial
    if spec.kind in ("integer", "number"):
        number = _number(init)
        initial: str | None = None
        if number is not None:
            initial = str(int(number)) if spec.kind == "integer" else repr(init)
        return NumberInputElement(
            action_id=VALUE,
            is_decimal_allowed=spec.kind == "number",
            initial_value=initial,
            min_value=_num_text(spec.minimum, spec.kind),
            max_value=_num_text(spec.maximum, spec.kind),
        )
    if spec.kind == "select":
        options = [_option(v) for v in spec.options]
        chosen = [o for o, v in zip(options, spec.options, strict=True) if v == init]
        return StaticSelectElement(
            action_id=VALUE,
            options=options,
            initial_option=chosen[0] if chosen else None,
            placeholder=_plain("Choose", 150),
        )
    if spec.kind == "checkbox":
        yes = Option(value="true", text=_plain("Yes", MAX_OPTION))
        return CheckboxesElement(
            action_id=VALUE, options=[yes], initial_options=[yes] if init is True else None
        )
    if spec.kind == "date":
        return DatePickerElement(action_id=VALUE, initial_date=init if init else None)
    if spec.kind == "text":
        text = init if isinstance(init, str) else ""
        limit = MAX_INPUT
        if spec.max_length is not None and spec.max_length >= len(text):
            limit = min(MAX_INPUT, spec.max_length)
        return PlainTextInputElement(
            action_id=VALUE,
            initial_value=text or None,
            multiline=len(text) > 60 or "\n" in text,
            max_length=limit,
        )
    text = "" if not spec.present else json.dumps(init, indent=1, ensure_ascii=False)
    return PlainTextInputElement(
        action_id=VALUE, initial_value=text or None, multiline=True, max_length=MAX_INPUT
    )


def _num_text(value: float | None, kind: str) -> str | None:
    if value is None:
        return None
    return str(int(value)) if kind == "integer" and value == int(value) else repr(value)


def modify_view(record: RequestRecord, metadata: str) -> dict[str, Any]:
    """The Modify modal: one typed input per parameter, an optional reason."""
    specs = modify_fields(record)
    room = MAX_VIEW_BLOCKS - 4
    blocks: list[Block] = [_summary_block(record)]
    skipped: list[str] = []
    for spec in specs:
        if not spec.editable or len(blocks) > room:
            skipped.append(spec.name + (f" ({spec.why_not})" if spec.why_not else ""))
            continue
        hint = spec.hint
        blocks.append(
            InputBlock(
                block_id=spec.block_id,
                label=_plain(spec.label, MAX_LABEL),
                hint=_plain(hint, MAX_LABEL) if hint else None,
                element=_element(spec),
                optional=True,
            )
        )
    if skipped:
        blocks.append(
            ContextBlock(
                elements=[
                    _md(
                        clip_md(
                            "Not editable here (use `hitl approve "
                            f"{record.id} --param name=value`): " + ", ".join(skipped),
                            MAX_TEXT,
                        )
                    )
                ]
            )
        )
    blocks.append(
        InputBlock(
            block_id=REASON_BLOCK,
            label=_plain("Reason for the change (optional)", MAX_LABEL),
            element=PlainTextInputElement(action_id=VALUE, multiline=True, max_length=MAX_INPUT),
            optional=True,
        )
    )
    view = View(
        type="modal",
        callback_id=MODIFY_VIEW,
        private_metadata=metadata,
        title=_plain("Modify parameters", MAX_MODAL_TITLE),
        submit=_plain("Approve changes", MAX_MODAL_TITLE),
        close=_plain("Cancel", MAX_MODAL_TITLE),
        blocks=blocks,
    )
    out: dict[str, Any] = view.to_dict()
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    na, nb = _number(a), _number(b)
    if na is not None and nb is not None:
        return na == nb
    return type(a) is type(b) and bool(a == b)


def _parse_one(spec: FieldSpec, state: dict[str, Any]) -> tuple[Any, str]:
    """``(value, error)``; value is ``_MISSING`` when the field was left empty."""
    if spec.kind == "checkbox":
        return bool(state.get("selected_options")), ""
    if spec.kind == "select":
        option = state.get("selected_option")
        if not option:
            return _MISSING, ""
        try:
            return json.loads(option.get("value", "")), ""
        except ValueError:
            return _MISSING, "choose one of the options"
    if spec.kind == "date":
        chosen = state.get("selected_date")
        return (chosen, "") if chosen else (_MISSING, "")
    raw = state.get("value")
    if raw is None or (spec.kind != "text" and not str(raw).strip()):
        return _MISSING, ""
    if spec.kind == "text":
        return str(raw), ""
    if spec.kind in ("integer", "number"):
        try:
            number = float(raw)
        except ValueError:
            return _MISSING, f"{raw!r} is not a number"
        if not math.isfinite(number):
            return _MISSING, "enter a finite number"
        if spec.kind == "integer":
            if number != int(number):
                return _MISSING, "enter a whole number"
            return int(number), ""
        if isinstance(spec.initial, int) and number == int(number):
            return int(number), ""
        return number, ""
    try:
        return json.loads(raw), ""
    except ValueError as exc:
        return _MISSING, clip(f"not valid JSON: {exc}", 300)


def parse_modify(
    record: RequestRecord, values: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, str], str]:
    """The params a reviewer changed, the errors per block id, and their reason.

    ``values`` is ``view.state.values`` of a ``view_submission``. A field left empty keeps a
    param that has a value unchanged only if it had none; emptying a number or a date is an
    error (say what to enter instead of silently dropping the edit).
    """
    changed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    editable = [s for s in modify_fields(record) if s.editable and s.block_id in values]
    for spec in editable:
        state = values.get(spec.block_id, {}).get(VALUE, {})
        value, error = _parse_one(spec, state if isinstance(state, dict) else {})
        if error:
            errors[spec.block_id] = error
            continue
        if value is _MISSING:
            if spec.present and spec.initial is not None and spec.kind != "text":
                errors[spec.block_id] = "this parameter needs a value (it cannot be emptied)"
            continue
        if spec.present and _same(value, spec.initial):
            continue
        if not spec.present and spec.kind == "checkbox" and value is False:
            continue
        changed[spec.name] = value
    reason_state = values.get(REASON_BLOCK, {}).get(VALUE, {})
    reason = str(reason_state.get("value") or "") if isinstance(reason_state, dict) else ""
    if not changed and not errors and editable:
        errors[editable[0].block_id] = (
            "Nothing was changed: edit a value, or close this form and click Approve."
        )
    return changed, errors, reason


def schema_errors(
    record: RequestRecord, pairs: Sequence[tuple[str, str]], changed: dict[str, Any]
) -> dict[str, str]:
    """Validation errors (``(field path, message)``) placed on the input they are about."""
    specs = {s.name: s for s in modify_fields(record) if s.editable}
    errors: dict[str, str] = {}
    fallback = next(iter(specs[n].block_id for n in changed if n in specs), None)
    fallback = fallback or next((s.block_id for s in specs.values()), REASON_BLOCK)
    for path, message in pairs:
        head = path.split(".", 1)[0]
        block = specs[head].block_id if head in specs else fallback
        text = message if head in specs else f"{path}: {message}"
        errors[block] = clip(f"{errors[block]}; {text}" if block in errors else text, 500)
    return errors
