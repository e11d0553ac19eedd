"""The inbox's Modify form: :mod:`hitl.bot.fields` rendered as HTML inputs, and read back.

The browser checks what HTML can (``type=number`` with ``min``/``max``/``step``, ``required``,
``maxlength``, ``pattern``, a ``select`` for an enum, JSON parsed by the page's script); the
server checks everything again with the same code as Slack's modal and the Teams card
(:func:`~hitl.bot.fields.read_edits`, then the decision's check,
:func:`~hitl.bot.fields.check_edits`)::

    inputs = modify_inputs(record)                    # for the template
    params = read_modify_form(record, form)           # {"amount": 150.0} or InvalidRequest
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from hitl.bot.cards import format_value
from hitl.bot.fields import FieldSpec, check_edits, field_specs, read_edits
from hitl.errors import InvalidRequest
from hitl.models import RequestRecord

__all__ = ["PARAM_PREFIX", "Input", "modify_inputs", "read_modify_form"]

PARAM_PREFIX = "p."
"""Form names of parameters (``p.amount``): never confused with ``reason`` or ``csrf``."""


class _Form(Protocol):
    def getall(self, key: str, default: list[Any]) -> list[Any]: ...


@dataclass(frozen=True)
class Input:
    """One HTML input of the Modify form."""

    spec: FieldSpec
    name: str
    widget: str
    """``number``, ``checkbox``, ``select``, ``date``, ``text``, ``textarea``."""
    value: str
    attrs: dict[str, str]
    options: list[tuple[str, str]]
    """``(submitted value, label)`` of a select."""


def _text(spec: FieldSpec) -> str:
    if not spec.present or spec.value is None:
        return ""
    if spec.kind == "json":
        return json.dumps(spec.value, ensure_ascii=False, indent=1)
    if spec.kind == "boolean":
        return "true" if spec.value else "false"
    return format_value(spec.value)


def _input(spec: FieldSpec) -> Input:
    attrs: dict[str, str] = {}
    if spec.present and spec.value is not None and spec.kind != "boolean":
        attrs["required"] = "required"
    widget = {
        "integer": "number",
        "number": "number",
        "boolean": "checkbox",
        "choice": "select",
        "date": "date",
        "text": "text",
        "json": "textarea",
    }[spec.kind]
    if widget == "number":
        attrs["step"] = "1" if spec.kind == "integer" else "any"
        if spec.minimum is not None:
            attrs["min"] = f"{spec.minimum:g}"
        if spec.maximum is not None:
            attrs["max"] = f"{spec.maximum:g}"
    if spec.kind == "text":
        if spec.max_length is not None:
            attrs["maxlength"] = str(spec.max_length)
        if spec.pattern is not None:
            attrs["pattern"] = spec.pattern
    options = [(json.dumps(o), format_value(o)) for o in spec.options]
    value = json.dumps(spec.value) if spec.kind == "choice" and spec.present else _text(spec)
    return Input(spec, PARAM_PREFIX + spec.name, widget, value, attrs, options)


def modify_inputs(record: RequestRecord) -> list[Input]:
    """The Modify form's inputs for the params under review now."""
    return [_input(s) for s in field_specs(record.params, record.request.param_schema)]


def read_modify_form(record: RequestRecord, form: _Form) -> dict[str, Any]:
    """The params the reviewer changed, typed and checked as the decision will check them;
    :class:`InvalidRequest` with one error per form field (``p.amount``) otherwise."""
    specs = field_specs(record.params, record.request.param_schema)
    submitted: dict[str, Any] = {}
    for spec in specs:
        values = [str(v) for v in form.getall(PARAM_PREFIX + spec.name, [])]
        if not values:
            continue
        # A checkbox posts a hidden "false" and, when ticked, "true" after it.
        submitted[spec.name] = (
            ("true" if "true" in values else "false") if (spec.kind == "boolean") else values[-1]
        )
    edits = read_edits(specs, submitted)
    if not edits.errors and not edits.changed:
        raise InvalidRequest("nothing was changed: edit a value, or use Approve instead")
    errors = edits.errors or check_edits(record, specs, edits.changed)
    if errors:
        pairs = [(PARAM_PREFIX + name if name else "params", m) for name, m in errors.items()]
        raise InvalidRequest(
            "some values need fixing: "
            + "; ".join(f"{n.removeprefix(PARAM_PREFIX)}: {m}" for n, m in pairs),
            pairs,
        )
    return edits.changed
