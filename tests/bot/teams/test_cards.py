"""The Teams approval card: a valid Adaptive Card 1.5 with Slack's facts, bounded, typed back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from hitl.bot.cards import card_view
from hitl.bot.teams import MAX_CARD_BYTES, TeamsAction, approval_card, parse_action
from hitl.bot.teams.cards import (
    MODIFY_REASON,
    REJECT_REASON,
    TRUNCATED,
    card_size,
    request_id_of,
)
from hitl.errors import InvalidRequest
from hitl.models import Outcome, RequestRecord, Risk, Verdict, VerdictKind, Vote
from tests.bot.test_blocks import ALICE, BOB, big_record, decided, record

_REPO = Path(__file__).resolve().parents[3]
SCHEMA = next(
    (
        path
        for path in (d / "shared" / "schemas" / "adaptive-card-1.5.json" for d in _REPO.parents)
        if path.is_file()
    ),
    _REPO.parent / "shared" / "schemas" / "adaptive-card-1.5.json",
)
"""The official schema, kept beside the repository (or beside a worktree's parent folder),
never copied into it."""

CRITICAL = Verdict(kind=VerdictKind.REVIEW, risk=Risk.CRITICAL, rule="delete-volume",
                   reason="deleting data needs two managers", approvals=2,
                   roles=["manager"])  # fmt: skip
LOW = Verdict(kind=VerdictKind.REVIEW, risk=Risk.LOW, rule="lookups", reason="a person looks")

TYPED_SCHEMA = {
    "type": "object",
    "properties": {
        "note": {"type": "string", "maxLength": 40, "pattern": "^[a-z ]*$"},
        "count": {"type": "integer", "minimum": 1, "maximum": 10},
        "amount": {"type": "number", "minimum": 0, "maximum": 500},
        "notify": {"type": "boolean"},
        "tier": {"enum": ["gold", "silver", "bronze"]},
        "extra": {"type": "object"},
    },
    "required": ["note", "count"],
}
TYPED_PARAMS = {"note": "late parcel", "count": 2, "amount": 250.0, "notify": True,
                "tier": "gold", "extra": {"k": [1, 2]}}  # fmt: skip


@cache
def _validator() -> jsonschema.protocols.Validator | None:
    if not SCHEMA.is_file():
        return None
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)  # draft-06: picked from its $schema
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(card: dict[str, Any]) -> list[str]:
    """Every way ``card`` breaks the official schema (skips the test when it is absent)."""
    validator = _validator()
    if validator is None:
        pytest.skip(f"Adaptive Card schema not found at {SCHEMA.resolve()}: schema check skipped")
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in
            validator.iter_errors(card)]  # fmt: skip


def typed_record(**fields: Any) -> RequestRecord:
    return record(params=dict(TYPED_PARAMS), param_schema=TYPED_SCHEMA, **fields)


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every object in the card, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def inputs(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in walk(card) if str(n.get("type", "")).startswith("Input.")}


def executes(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in walk(card) if n.get("type") == "Action.Execute"]


def text(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


VARIANTS = {
    "pending-low": lambda: record(verdict=LOW),
    "pending-critical": lambda: record(verdict=CRITICAL, action="delete_volume"),
    "with-plan": lambda: record(
        plan=["look up the order", {"description": "refund it", "action": "refund"}]
    ),  # fmt: skip
    "dry-run": lambda: record(dry_run=True),
    "with-votes": lambda: record(verdict=CRITICAL, votes=[Vote(reviewer=BOB)]),
    "approved": lambda: decided(
        record(), Outcome.APPROVED, reviewers=[BOB], params={"order_id": "A-1002", "amount": 100.0}
    ),  # fmt: skip
    "rejected": lambda: decided(record(), Outcome.REJECTED, reviewers=[ALICE], reason="too much"),
    "expired": lambda: decided(record(), Outcome.EXPIRED),
    "typed-modify": typed_record,
    "no-schema": lambda: record(params={"a": "x", "n": 3, "f": 1.5, "b": False, "o": [1]}),
    "absent-optional": lambda: record(params={"note": "x", "count": 1}, param_schema=TYPED_SCHEMA),
    "no-params": lambda: record(params={}),
    "big": big_record,
    "oversized": lambda: record(
        params={f"p{i:02d}": "v" * 900 for i in range(40)},
        reasoning="r" * 20_000,
        summary="s" * 300,
    ),  # fmt: skip
}


# -- schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_variant_is_a_valid_adaptive_card(variant: str) -> None:
    """Every card variant validates against the official Adaptive Card 1.5 schema."""
    card = approval_card(VARIANTS[variant]())
    assert ("AdaptiveCard", "1.5") == (card["type"], card["version"])
    assert card["$schema"].startswith("http://adaptivecards.io/schemas/")
    assert [] == schema_errors(card)


def test_schema_check_is_not_vacuous() -> None:
    """The schema refuses what Teams would refuse (an unknown property on an input)."""
    card = approval_card(typed_record())
    inputs(card)["param.count"]["maxLength"] = 3
    assert [] != schema_errors(card)


def test_public_names_are_pinned() -> None:
    """``hitl.bot.teams.__all__`` lists exactly the documented names."""
    import hitl.bot.teams as teams

    expected = ["MAX_CARD_BYTES", "TeamsAction", "approval_card", "parse_action", "request_id_of"]
    assert expected == sorted(teams.__all__)


def test_a_view_with_its_schema_renders_like_the_record() -> None:
    """``approval_card`` takes a CardView (plus the schema) or the record, with one result."""
    rec = typed_record()
    assert approval_card(rec) == approval_card(card_view(rec), param_schema=TYPED_SCHEMA)


# -- what the card shows -----------------------------------------------------------------------


def test_pending_card_shows_the_same_facts_as_slack() -> None:
    """Title, risk, action, agent, requester, policy, needs, reasoning, context and params."""
    rec = record(verdict=CRITICAL, reasoning="The volume is orphaned.")
    out = text(approval_card(rec))
    view = card_view(rec)
    for expected in ["🔴 CRITICAL · Refund $250 for order A-1002", "refund", "support-bot",
                     "U0REQ", "delete-volume - deleting data needs two managers",
                     "0 of 2 (manager)", "The volume is orphaned.", "I want my money back",
                     "T-77", "A-1002", "250.0", view.status]:  # fmt: skip
        assert expected in out


def test_pending_card_has_the_three_verbs_and_a_refresh() -> None:
    """Approve, Modify and Reject are Action.Execute with the request id; refresh re-fetches."""
    card = approval_card(record(), refresh_for=["29:bob"])
    verbs = {a["verb"]: a["data"] for a in executes(card)}
    assert ["approve", "modify", "refresh", "reject"] == sorted(verbs)
    assert all("r-1" == data["request_id"] for data in verbs.values())
    assert "refresh" == card["refresh"]["action"]["verb"]
    assert ["29:bob"] == card["refresh"]["userIds"]


def test_reject_needs_a_reason() -> None:
    """The reject form's reason is required, with a message saying why."""
    reason = inputs(approval_card(record()))[REJECT_REASON]
    assert (True, "Input.Text") == (reason["isRequired"], reason["type"])
    assert "reason" in reason["errorMessage"]


def test_critical_approve_asks_first() -> None:
    """A critical request's Approve opens a warning with the real Approve inside."""
    card = approval_card(record(verdict=CRITICAL))
    first = card["actions"][0]
    assert "Action.ShowCard" == first["type"]
    assert "CRITICAL" in text(first["card"])
    assert "approve" == first["card"]["actions"][0]["verb"]


def test_dry_run_and_plan_are_shown() -> None:
    """A dry run carries the warning; a plan lists its steps."""
    out = text(approval_card(record(dry_run=True, plan=["look up", "refund"])))
    assert "DRY RUN" in out
    assert "Plan (2 steps; approving approves the whole plan)" in out
    assert "1. look up" in out


def test_votes_are_shown() -> None:
    """Under a two-person rule the card counts and names the approvers so far."""
    out = text(approval_card(record(verdict=CRITICAL, votes=[Vote(reviewer=BOB)])))
    assert "1 of 2 approvals (Bob Brown)" in out
    assert "1 of 2 (manager)" in out


@pytest.mark.parametrize(
    ("outcome", "words"),
    [(Outcome.APPROVED, "Approved by Bob Brown"), (Outcome.REJECTED, "Rejected by Bob Brown"),
     (Outcome.EXPIRED, "Expired at")],
)  # fmt: skip
def test_decided_card_has_outcome_and_no_actions(outcome: Outcome, words: str) -> None:
    """A decided card says the outcome, who and when, and has no actions and no refresh."""
    reviewers = [BOB] if outcome is not Outcome.EXPIRED else []
    card = approval_card(decided(record(), outcome, reviewers=reviewers, reason="because"))
    assert words in text(card)
    assert "actions" not in card and "refresh" not in card
    assert [] == executes(card)


def test_buttons_false_keeps_refresh() -> None:
    """``buttons=False`` (the requester's view) drops the actions but still refreshes."""
    card = approval_card(record(), buttons=False)
    assert "actions" not in card
    assert "refresh" == card["refresh"]["action"]["verb"]


def test_agent_text_is_data() -> None:
    """Agent text goes into TextRuns (no markdown) and links in facts are defused."""
    rec = record(summary="**click** [here](https://evil.example)",
                 params={"link": "[approve](https://evil.example)"})  # fmt: skip
    card = approval_card(rec)
    runs = [n["text"] for n in walk(card) if n.get("type") == "TextRun"]
    assert any("[here](https://evil.example)" in r for r in runs)
    facts = [f["value"] for n in walk(card) if n.get("type") == "FactSet" for f in n["facts"]]
    assert not any("](" in value for value in facts)


# -- the modify form ---------------------------------------------------------------------------


def test_modify_inputs_follow_the_schema() -> None:
    """One typed input per param, pre-filled, with the schema's bounds."""
    found = inputs(approval_card(typed_record()))
    note, count, amount = found["param.note"], found["param.count"], found["param.amount"]
    assert ("Input.Text", "late parcel", 40, "^[a-z ]*$") == (
        note["type"], note["value"], note["maxLength"], note["regex"])  # fmt: skip
    assert ("Input.Number", 2, 1, 10) == (count["type"], count["value"], count["min"], count["max"])
    assert ("Input.Number", 250.0, 0, 500) == (
        amount["type"], amount["value"], amount["min"], amount["max"])  # fmt: skip
    assert ("Input.Toggle", "true") == (
        found["param.notify"]["type"],
        found["param.notify"]["value"],
    )
    tier = found["param.tier"]
    assert ("Input.ChoiceSet", '"gold"') == (tier["type"], tier["value"])
    assert ['"gold"', '"silver"', '"bronze"'] == [c["value"] for c in tier["choices"]]
    assert ("Input.Text", '{"k": [1, 2]}') == (
        found["param.extra"]["type"],
        found["param.extra"]["value"],
    )
    assert MODIFY_REASON in found


def test_modify_inputs_without_schema_follow_the_values() -> None:
    """Without a schema each input is typed from the current value."""
    found = inputs(approval_card(record(params={"a": "x", "n": 3, "f": 1.5, "b": False})))
    kinds = {k: v["type"] for k, v in found.items() if k.startswith("param.")}
    assert {"param.a": "Input.Text", "param.n": "Input.Number", "param.f": "Input.Number",
            "param.b": "Input.Toggle"} == kinds  # fmt: skip


def test_no_params_means_no_modify() -> None:
    """A request without params has nothing to modify."""
    verbs = [a["verb"] for a in executes(approval_card(record(params={})))]
    assert ["refresh", "approve", "reject"] == verbs


# -- size --------------------------------------------------------------------------------------


def test_big_request_stays_under_the_teams_limit() -> None:
    """40 params and 20 KB of reasoning still make a card under 28 KB, marked as truncated."""
    rec = big_record()
    assert 40 == len(rec.params) and len(rec.request.reasoning) >= 20_000
    card = approval_card(rec)
    assert card_size(card) < MAX_CARD_BYTES
    assert TRUNCATED in text(card)
    assert "and 25 more (truncated)" in text(card)


def test_oversized_card_falls_back_to_tighter_limits() -> None:
    """Long values everywhere: the card is rebuilt smaller rather than sent too big."""
    card = approval_card(VARIANTS["oversized"]())
    assert card_size(card) < MAX_CARD_BYTES
    assert "Not editable in this card" in text(card)


# -- parse_action ------------------------------------------------------------------------------


def test_parse_approve() -> None:
    """An approve carries the verb and the request id."""
    expected = TeamsAction(verb="approve", request_id="r-1")
    assert expected == parse_action({"verb": "approve", "request_id": "r-1"}, record())


def test_parse_modify_types_params_back() -> None:
    """Inputs arrive as strings; they come back typed by the schema, only the changed ones."""
    data = {"verb": "modify", "request_id": "r-1", MODIFY_REASON: " too much ",
            "param.note": "late parcel", "param.count": "3", "param.amount": "150.5",
            "param.notify": "false", "param.tier": '"silver"',
            "param.extra": '{"k": []}'}  # fmt: skip
    action = parse_action(data, typed_record())
    expected = {"count": 3, "amount": 150.5, "notify": False, "tier": "silver", "extra": {"k": []}}
    assert expected == action.params
    assert "too much" == action.reason


def test_parse_modify_without_schema_types_from_values() -> None:
    """Without a schema the current value says the type."""
    rec = record(params={"n": 3, "b": True})
    action = parse_action({"verb": "modify", "request_id": "r-1", "param.n": "4",
                           "param.b": "false"}, rec)  # fmt: skip
    assert {"n": 4, "b": False} == action.params


def test_parse_refuses_unknown_param() -> None:
    """A param the request does not have is refused, naming the ones it has."""
    with pytest.raises(InvalidRequest, match="unknown parameter 'colour'.*note, count"):
        parse_action({"verb": "modify", "request_id": "r-1", "param.colour": "red"},
                     typed_record())  # fmt: skip


@pytest.mark.parametrize(
    ("name", "raw", "problem"),
    [("count", "three", "is not a number"), ("count", "2.5", "whole number"),
     ("notify", "maybe", "not true or false"), ("tier", "platinum", "not one of"),
     ("extra", "{nope", "not valid JSON"), ("count", "11", "maximum"),
     ("note", "UPPER", "does not match")],
)  # fmt: skip
def test_parse_refuses_bad_types(name: str, raw: str, problem: str) -> None:
    """A value of the wrong type, or outside the schema, is refused naming the input."""
    data = {"verb": "modify", "request_id": "r-1", f"param.{name}": raw}
    with pytest.raises(InvalidRequest, match=f"param.{name}: .*{problem}") as caught:
        parse_action(data, typed_record())
    assert f"param.{name}" == caught.value.errors[0][0]


def test_parse_reject_needs_a_reason() -> None:
    """A reject without a reason is refused (Teams checks too, but the data is not trusted)."""
    with pytest.raises(InvalidRequest, match="needs a reason"):
        parse_action({"verb": "reject", "request_id": "r-1", REJECT_REASON: "  "}, record())
    action = parse_action({"verb": "reject", "request_id": "r-1", REJECT_REASON: "no"}, record())
    assert ("reject", "no") == (action.verb, action.reason)


def test_parse_refuses_unknown_verb_and_other_request() -> None:
    """Unknown verbs, missing ids and another request's card are refused."""
    with pytest.raises(InvalidRequest, match="unknown card action 'delete'"):
        parse_action({"verb": "delete", "request_id": "r-1"}, record())
    with pytest.raises(InvalidRequest, match="not 'r-1'"):
        parse_action({"verb": "approve", "request_id": "r-2"}, record())
    with pytest.raises(InvalidRequest, match="no request id"):
        request_id_of({"verb": "approve"})


def test_parse_modify_needs_a_change() -> None:
    """A modify that changes nothing says to approve instead."""
    with pytest.raises(InvalidRequest, match="nothing was changed"):
        parse_action({"verb": "modify", "request_id": "r-1", "param.count": "2"}, typed_record())


def test_card_inputs_round_trip() -> None:
    """What the card pre-fills parses back to no change for every input kind."""
    rec = typed_record()
    found = inputs(approval_card(rec))
    data: dict[str, Any] = {"verb": "modify", "request_id": "r-1"}
    for input_id, element in found.items():
        if input_id.startswith("param."):
            value = element.get("value", "")
            data[input_id] = value if isinstance(value, str) else json.dumps(value)
    data["param.count"] = "5"
    assert {"count": 5} == parse_action(data, rec).params


def test_long_enum_is_typed_as_text_and_held_to_the_enum() -> None:
    """An enum too long for a choice list becomes a text input; parsing still checks the enum."""
    options = [f"opt-{n}" for n in range(40)]
    schema = {"type": "object", "properties": {"tier": {"enum": options}}}
    rec = record(params={"tier": "opt-1"}, param_schema=schema)
    tier = inputs(approval_card(rec))["param.tier"]
    assert ("Input.Text", "opt-1") == (tier["type"], tier["value"])
    data = {"verb": "modify", "request_id": "r-1", "param.tier": "opt-7"}
    assert {"tier": "opt-7"} == parse_action(data, rec).params
    with pytest.raises(InvalidRequest, match="not one of"):
        parse_action({**data, "param.tier": "opt-99"}, rec)


def test_absent_optional_params_are_added_only_when_set() -> None:
    """A schema property the params lack gets an empty input; left empty, it is not added."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "b": {"type": "boolean"},
                                                "s": {"type": "string"}}}  # fmt: skip
    rec = record(params={"n": 1}, param_schema=schema)
    found = inputs(approval_card(rec))
    assert 1 == found["param.n"]["value"]
    assert ("false", "") == (found["param.b"]["value"], found["param.s"]["value"])
    data = {"verb": "modify", "request_id": "r-1", "param.n": "2", "param.b": "false",
            "param.s": ""}  # fmt: skip
    assert {"n": 2} == parse_action(data, rec).params
    assert {"s": "hi"} == parse_action({**data, "param.n": "1", "param.s": "hi"}, rec).params
