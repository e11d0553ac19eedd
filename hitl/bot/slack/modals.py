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
from typing import Any

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
from hitl.bot.fields import FieldSpec, check_edits, field_specs, finite_number, read_edits
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

JSON_HINT = 'JSON (e.g. 12, "text", [1, 2] or {"k": 1})'

__all__ = [
    "block_id",
    "full_text",
    "full_text_view",
    "modify_fields",
    "modify_view",
    "parse_modify",
    "digest_reject_view",
    "reject_view",
    "schema_errors",
    "why_not_editable",
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


def block_id(spec: FieldSpec) -> str:
    """The modal input block of a parameter."""
    return "p:" + spec.name


def _select(spec: FieldSpec) -> bool:
    """A ``choice`` Slack can show as a select (else it is typed, and checked, as text)."""
    return 0 < len(spec.options) <= MAX_OPTIONS and all(
        len(json.dumps(v, ensure_ascii=False)) <= MAX_OPTION_VALUE for v in spec.options
    )


def _as_text(spec: FieldSpec) -> bool:
    """The input is plain text (not JSON): text, and a long choice whose value is text."""
    return spec.kind == "text" or (
        spec.kind == "choice" and not _select(spec) and isinstance(spec.initial, str | None)
    )


def _as_json(spec: FieldSpec) -> bool:
    """The input is JSON text: a value of no simpler kind, or a long choice of non-text."""
    return spec.kind == "json" or (
        spec.kind == "choice" and not _select(spec) and not _as_text(spec)
    )


def why_not_editable(spec: FieldSpec) -> str:
    """Why a parameter cannot be edited in the modal ('' when it can)."""
    if len(block_id(spec)) > MAX_BLOCK_ID:
        return "its name is too long for a form"
    init = spec.initial
    if _as_text(spec) and isinstance(init, str) and len(init) > MAX_INPUT:
        return f"its value is {len(init)} characters (a form field holds {MAX_INPUT})"
    if _as_json(spec) and init is not None:
        size = len(json.dumps(init, indent=1, ensure_ascii=False))
        if size > MAX_INPUT:
            return f"its value is {size} characters of JSON (a form field holds {MAX_INPUT})"
    return ""


def modify_fields(record: RequestRecord) -> list[FieldSpec]:
    """The parameters the modal can edit (see :func:`why_not_editable` for the others)."""
    specs = field_specs(record.params, record.request.param_schema)
    return [s for s in specs if not why_not_editable(s)]


def _option(value: Any) -> Option:
    return Option(
        value=json.dumps(value, ensure_ascii=False),
        text=_plain(format_value(value), MAX_OPTION),
    )


def _element(spec: FieldSpec) -> Any:
    init = spec.initial
    if spec.kind in ("integer", "number"):
        number = finite_number(init)
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
    if spec.kind == "choice" and _select(spec):
        options = [_option(v) for v in spec.options]
        chosen = [o for o, v in zip(options, spec.options, strict=True) if v == init]
        return StaticSelectElement(
            action_id=VALUE,
            options=options,
            initial_option=chosen[0] if chosen else None,
            placeholder=_plain("Choose", 150),
        )
    if spec.kind == "boolean":
        yes = Option(value="true", text=_plain("Yes", MAX_OPTION))
        return CheckboxesElement(
            action_id=VALUE, options=[yes], initial_options=[yes] if init is True else None
        )
    if spec.kind == "date":
        return DatePickerElement(action_id=VALUE, initial_date=init if init else None)
    if _as_text(spec):
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
    specs = field_specs(record.params, record.request.param_schema)
    room = MAX_VIEW_BLOCKS - 4
    blocks: list[Block] = [_summary_block(record)]
    skipped: list[str] = []
    for spec in specs:
        why_not = why_not_editable(spec)
        if why_not or len(blocks) > room:
            skipped.append(spec.name + (f" ({why_not})" if why_not else ""))
            continue
        hint = spec.description or (JSON_HINT if _as_json(spec) else "")
        blocks.append(
            InputBlock(
                block_id=block_id(spec),
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


def _raw(spec: FieldSpec, state: dict[str, Any]) -> Any:
    """What the input sent, as :func:`~hitl.bot.fields.coerce` reads it (None: left empty)."""
    if spec.kind == "boolean":
        return bool(state.get("selected_options"))
    if spec.kind == "date":
        return state.get("selected_date")
    if spec.kind == "choice" and _select(spec):
        option = state.get("selected_option")
        return option.get("value") if isinstance(option, dict) else None
    raw = state.get("value")
    # Slack sends null for an emptied text input: the reviewer cleared it.
    return "" if raw is None and spec.kind == "text" else raw


def parse_modify(
    record: RequestRecord, values: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, str], str]:
    """The params a reviewer changed, the errors per block id, and their reason.

    ``values`` is ``view.state.values`` of a ``view_submission``; the typing and the rules for
    emptied inputs are :func:`hitl.bot.fields.read_edits`'.
    """
    editable = [s for s in modify_fields(record) if block_id(s) in values]
    submitted: dict[str, Any] = {}
    for spec in editable:
        state = values.get(block_id(spec), {}).get(VALUE, {})
        submitted[spec.name] = _raw(spec, state if isinstance(state, dict) else {})
    edits = read_edits(editable, submitted)
    errors = {"p:" + name: clip(problem, 300) for name, problem in edits.errors.items()}
    reason_state = values.get(REASON_BLOCK, {}).get(VALUE, {})
    reason = str(reason_state.get("value") or "") if isinstance(reason_state, dict) else ""
    if not edits.changed and not errors and editable:
        errors[block_id(editable[0])] = (
            "Nothing was changed: edit a value, or close this form and click Approve."
        )
    return edits.changed, errors, reason


def schema_errors(record: RequestRecord, changed: dict[str, Any]) -> dict[str, str]:
    """What the decision would refuse in ``changed``, placed on the input it is about."""
    specs = modify_fields(record)
    found = check_edits(record, specs, changed)
    return {("p:" + name if name else REASON_BLOCK): clip(m, 500) for name, m in found.items()}
