"""Editable parameters, channel-neutral: ``param_schema`` as typed fields, and what a reviewer
typed back as typed params with one clear error per field.

Slack's Modify modal and the Teams card's Modify form render the same :class:`FieldSpec` list
with their own widgets, and read their own payloads into ``{name: raw value}``; the typing, the
coercion and the checks live here once::

    specs = field_specs(record.params, record.request.param_schema)
    edits = read_edits(specs, {"amount": "150", "notify": False})
    edits.changed, edits.errors                  # {"amount": 150.0}, {}
    check_edits(record, specs, edits.changed)    # {"amount": "150.0 is greater than ..."}

A field's kind comes from the schema property (``enum``, ``type``, ``format: date``) or, without
one, from the current value; a value that does not fit its declared type is edited as JSON rather
than forced into a widget that would lose it. :func:`check_edits` runs the handlers' own check
(:func:`hitl.handlers.validate_params`), so a form refuses exactly what the decision would.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hitl.bot.cards import format_value
from hitl.errors import InvalidRequest
from hitl.handlers import validate_params
from hitl.models import RequestRecord

__all__ = [
    "UNSET",
    "Edits",
    "FieldError",
    "FieldSpec",
    "Kind",
    "check_edits",
    "coerce",
    "field_specs",
    "finite_number",
    "read_edits",
    "same_value",
]

Kind = Literal["integer", "number", "boolean", "choice", "date", "text", "json"]
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class _Unset:
    """The value of a schema property the params do not have, and of an input left empty."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class FieldError(ValueError):
    """A submitted value that does not fit its field; the message says what to enter."""


@dataclass(frozen=True)
class FieldSpec:
    """One editable parameter: its kind, label, current value and the schema's bounds."""

    name: str
    kind: Kind
    label: str
    value: Any
    """The current value; :data:`UNSET` for a schema property the params do not have yet."""
    description: str = ""
    options: tuple[Any, ...] = ()
    """The ``enum`` of a ``choice``."""
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    pattern: str | None = None

    @property
    def present(self) -> bool:
        """The request has this parameter (an absent optional one may be added)."""
        return self.value is not UNSET

    @property
    def initial(self) -> Any:
        """What an input starts with: the current value, None when there is none."""
        return self.value if self.present else None


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite JSON number (not a bool), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _schema_type(prop: Mapping[str, Any]) -> str | None:
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind if isinstance(kind, str) else None


def _kind(prop: Mapping[str, Any], value: Any) -> Kind:
    enum = prop.get("enum")
    if isinstance(enum, list) and enum:
        return "choice"
    kind = _schema_type(prop)
    has_value = value is not UNSET and value is not None
    if kind is None and has_value:
        kind = {bool: "boolean", int: "integer", float: "number", str: "string"}.get(type(value))
    if kind in ("integer", "number") and (not has_value or finite_number(value) is not None):
        return "integer" if kind == "integer" else "number"
    if kind == "boolean" and (not has_value or isinstance(value, bool)):
        return "boolean"
    if kind == "string" and (not has_value or isinstance(value, str)):
        fmt = prop.get("format")
        looks_like_date = has_value and bool(_DATE.match(value))
        if (fmt == "date" and (not has_value or looks_like_date)) or (
            fmt is None and looks_like_date
        ):
            return "date"
        return "text"
    return "json"


def field_specs(params: Mapping[str, Any], schema: Mapping[str, Any] | None) -> list[FieldSpec]:
    """One field per parameter: the schema's properties in order, then params it does not name."""
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    props = props if isinstance(props, Mapping) else {}
    out: list[FieldSpec] = []
    for name in [*props, *(n for n in params if n not in props)]:
        prop = props.get(name)
        prop = prop if isinstance(prop, Mapping) else {}
        value = params.get(name, UNSET)
        kind = _kind(prop, value)
        title, description = prop.get("title"), prop.get("description")
        max_length, pattern = prop.get("maxLength"), prop.get("pattern")
        out.append(
            FieldSpec(
                name=name,
                kind=kind,
                label=title if isinstance(title, str) and title else name,
                value=value,
                description=description if isinstance(description, str) else "",
                options=tuple(prop["enum"]) if kind == "choice" else (),
                minimum=finite_number(prop.get("minimum")),
                maximum=finite_number(prop.get("maximum")),
                max_length=max_length if isinstance(max_length, int) and max_length > 0 else None,
                pattern=pattern if isinstance(pattern, str) else None,
            )
        )
    return out


def same_value(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are the same parameter value (``250 == 250.0``, but ``1 != True``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    na, nb = finite_number(a), finite_number(b)
    if na is not None and nb is not None:
        return na == nb
    return type(a) is type(b) and bool(a == b)


def _shown(raw: Any) -> str:
    text = str(raw)
    return repr(text if len(text) <= 40 else text[:39] + "…")


def coerce(spec: FieldSpec, raw: Any) -> Any:
    """``raw`` (what a form sent: mostly strings) typed as ``spec``; :data:`UNSET` when empty.

    Raises :class:`FieldError` saying what to enter instead.
    """
    if raw is None:
        return UNSET
    if spec.kind == "text":
        if not isinstance(raw, str):
            raise FieldError("expected text")
        return UNSET if raw == "" and spec.initial is None else raw
    if isinstance(raw, str) and not raw.strip():
        return UNSET
    if spec.kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        raise FieldError(f"{_shown(raw)} is not true or false")
    if spec.kind in ("integer", "number"):
        return _coerce_number(spec, raw)
    if spec.kind == "date":
        if isinstance(raw, str) and _DATE.match(raw.strip()):
            return raw.strip()
        raise FieldError(f"{_shown(raw)} is not a date (YYYY-MM-DD)")
    if spec.kind == "choice":
        candidates: list[Any] = [raw]
        if isinstance(raw, str):
            with contextlib.suppress(ValueError):
                candidates.insert(0, json.loads(raw))
        for value in candidates:
            if any(same_value(value, option) for option in spec.options):
                return value
        shown = ", ".join(format_value(o) for o in spec.options[:10])
        more = f" (and {len(spec.options) - 10} more)" if len(spec.options) > 10 else ""
        raise FieldError(f"{_shown(raw)} is not one of: {shown}{more}")
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise FieldError(f"not valid JSON ({exc})") from None


def _coerce_number(spec: FieldSpec, raw: Any) -> int | float:
    number = finite_number(raw)
    if number is None and isinstance(raw, str):
        with contextlib.suppress(ValueError):
            number = float(raw)
    if number is None:
        raise FieldError(f"{_shown(raw)} is not a number")
    if not math.isfinite(number):
        raise FieldError("enter a finite number")
    whole = number == int(number)
    if spec.kind == "integer" and not whole:
        raise FieldError(f"{_shown(raw)} is not a whole number")
    if spec.kind == "integer" or (isinstance(spec.value, int) and whole):
        return int(number)
    return number


@dataclass(frozen=True)
class Edits:
    """What a reviewer changed (typed, only real changes) and what they must fix, by name."""

    changed: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def read_edits(specs: Sequence[FieldSpec], submitted: Mapping[str, Any]) -> Edits:
    """The params changed in ``submitted`` (``{name: raw}``), typed by ``specs``, with errors.

    An input left empty leaves a param that has no value alone; emptying one that has a value is
    an error (say so rather than silently approve the old value). An unticked box for a param the
    request does not have adds nothing. A name that is not a field is an error.
    """
    by_name = {s.name: s for s in specs}
    changed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, raw in submitted.items():
        spec = by_name.get(name)
        if spec is None:
            known = ", ".join(by_name) or "none"
            errors[name] = f"unknown parameter {name!r}: this request's parameters are {known}"
            continue
        try:
            value = coerce(spec, raw)
        except FieldError as exc:
            errors[name] = str(exc)
            continue
        if value is UNSET:
            if spec.initial is not None:
                errors[name] = "needs a value (it cannot be emptied)"
            continue
        if not spec.present and spec.kind == "boolean" and value is False:
            continue
        if not (spec.present and same_value(value, spec.value)):
            changed[name] = value
    return Edits(changed=changed, errors=errors)


def check_edits(
    record: RequestRecord, specs: Sequence[FieldSpec], changed: Mapping[str, Any]
) -> dict[str, str]:
    """Why the decision would refuse ``changed`` (``param_schema``, types, sizes), by field name.

    A problem about no one field (the params as a whole) is put on the first changed field, or
    on ``""`` when there is none.
    """
    try:
        validate_params(record, dict(changed))
    except InvalidRequest as exc:
        pairs = exc.errors or [("params", str(exc))]
    else:
        return {}
    names = {s.name for s in specs}
    fallback = next((n for n in changed if n in names), next((s.name for s in specs), ""))
    errors: dict[str, str] = {}
    for path, message in pairs:
        head = path.split(".", 1)[0]
        name = head if head in names else fallback
        text = message if head in names else f"{path}: {message}"
        errors[name] = f"{errors[name]}; {text}" if name in errors else text
    return errors
