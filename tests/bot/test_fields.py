"""Editable parameters, channel-neutral: typed from param_schema, typed back with errors."""

from __future__ import annotations

from typing import Any

import pytest

from hitl.bot.fields import UNSET, FieldError, check_edits, coerce, field_specs, read_edits
from tests.bot.test_blocks import record

SCHEMA = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "minimum": 1, "maximum": 10, "title": "How many"},
        "amount": {"type": "number"},
        "notify": {"type": "boolean"},
        "tier": {"enum": ["gold", "silver", 3]},
        "when": {"type": "string", "format": "date"},
        "note": {"type": "string", "maxLength": 20, "description": "for the customer"},
        "extra": {"type": "object"},
        "later": {"type": "integer"},
    },
}
PARAMS: dict[str, Any] = {"count": 2, "amount": 250, "notify": True, "tier": "gold",
                          "when": "2026-01-02", "note": "hi", "extra": {"k": 1},
                          "unnamed": [1]}  # fmt: skip


def specs() -> dict[str, Any]:
    return {s.name: s for s in field_specs(PARAMS, SCHEMA)}


def test_kinds_come_from_the_schema_then_the_values() -> None:
    """Schema properties in order (typed, bounded, labelled), then params it does not name."""
    found = field_specs(PARAMS, SCHEMA)
    kinds = [(s.name, s.kind) for s in found]
    assert [("count", "integer"), ("amount", "number"), ("notify", "boolean"),
            ("tier", "choice"), ("when", "date"), ("note", "text"), ("extra", "json"),
            ("later", "integer"), ("unnamed", "json")] == kinds  # fmt: skip
    count = found[0]
    assert ("How many", 1.0, 10.0) == (count.label, count.minimum, count.maximum)
    assert ("for the customer", 20) == (found[5].description, found[5].max_length)
    assert (False, None) == (found[7].present, found[7].initial)


def test_a_value_that_does_not_fit_its_type_is_edited_as_json() -> None:
    """A declared integer holding text, or a date that is not one, is not forced into a widget."""
    schema = {"properties": {"n": {"type": "integer"}, "d": {"type": "string", "format": "date"}}}
    found = {s.name: s.kind for s in field_specs({"n": "many", "d": "soon"}, schema)}
    assert {"n": "json", "d": "text"} == found


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [("count", "3", 3), ("count", 4.0, 4), ("amount", "12.5", 12.5), ("amount", "300", 300),
     ("notify", "false", False), ("notify", True, True), ("tier", '"silver"', "silver"),
     ("tier", "silver", "silver"), ("tier", "3", 3), ("when", "2026-02-03", "2026-02-03"),
     ("note", "", ""), ("extra", '{"k": 2}', {"k": 2}), ("count", "  ", UNSET),
     ("count", None, UNSET), ("later", "", UNSET)],
)  # fmt: skip
def test_coerce_types_what_forms_send(name: str, raw: Any, expected: Any) -> None:
    """Strings (and a form's booleans) come back as the field's type; empty is UNSET."""
    value = coerce(specs()[name], raw)
    assert (expected, type(expected)) == (value, type(value))


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [("count", "three", "'three' is not a number"), ("count", "2.5", "not a whole number"),
     ("amount", "inf", "finite"), ("notify", "maybe", "not true or false"),
     ("tier", "bronze", "not one of: gold, silver, 3"), ("when", "tomorrow", "YYYY-MM-DD"),
     ("extra", "{nope", "not valid JSON"), ("note", 5, "expected text")],
)  # fmt: skip
def test_coerce_says_what_to_enter(name: str, raw: Any, message: str) -> None:
    """A value that does not fit is refused with a message naming the problem."""
    with pytest.raises(FieldError, match=message):
        coerce(specs()[name], raw)


def test_read_edits_keeps_only_changes_and_collects_errors() -> None:
    """Unchanged values are dropped, each bad or unknown field gets its own error."""
    edits = read_edits(
        list(specs().values()),
        {"count": "2", "amount": "250.0", "notify": "false", "later": "", "extra": "",
         "tier": "platinum", "colour": "red"},
    )  # fmt: skip
    assert {"notify": False} == edits.changed
    assert ["extra", "tier", "colour"] == list(edits.errors)
    assert "cannot be emptied" in edits.errors["extra"]
    assert "unknown parameter 'colour'" in edits.errors["colour"]


def test_check_edits_uses_the_decisions_own_rules() -> None:
    """Schema violations land on their field; params-wide problems on the first changed one."""
    schema = {"type": "object", "properties": {"amount": {"type": "number", "maximum": 200},
                                               "order_id": {"type": "string"}}}  # fmt: skip
    rec = record(param_schema=schema, params={"order_id": "A-1", "amount": 150.0})
    found = field_specs(rec.params, schema)
    assert {} == check_edits(rec, found, {"amount": 190})
    errors = check_edits(rec, found, {"amount": 300})
    assert ["amount"] == list(errors)
    assert "maximum of 200" in errors["amount"]
    too_big = check_edits(rec, found, {"order_id": "x" * 70_000})
    assert "params: " in too_big["order_id"]
