"""Block Kit rendering: every card, modal and list keeps Slack's limits and says what it must."""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitl.bot.slack import blocks as bk
from hitl.bot.slack import modals as md
from hitl.models import (
    ApprovalRequest,
    Decision,
    Outcome,
    RequestRecord,
    Reviewer,
    Risk,
    State,
    Verdict,
    VerdictKind,
    Vote,
)
from tests.bot.slack_server import blockkit_violations

NOW = 1_750_000_000.0


def record(**fields: Any) -> RequestRecord:
    """A pending record (fields go to the request; ``verdict``/``state``/... to the record)."""
    record_keys = {"verdict", "state", "votes", "decision", "deadline", "escalation_level",
                   "modified_by", "params_now"}  # fmt: skip
    rec_fields = {k: fields.pop(k) for k in list(fields) if k in record_keys}
    base: dict[str, Any] = {
        "id": "r-1",
        "action": "refund",
        "params": {"order_id": "A-1002", "amount": 250.0},
        "summary": "Refund $250 for order A-1002",
        "reasoning": "Late delivery.",
        "context": {"user_request": "I want my money back", "ticket": "T-77"},
        "agent_id": "support-bot",
        "session_id": "sess-9",
        "requested_by": "U0REQ",
        "confidence": 0.81,
    }
    base.update(fields)
    request = ApprovalRequest.model_validate(base)
    verdict = rec_fields.pop(
        "verdict",
        Verdict(kind=VerdictKind.REVIEW, risk=Risk.MEDIUM, rule="refund-over-100",
                reason="refunds over $100 need a person", policy_version="sha256:abc"),
    )  # fmt: skip
    params_now = rec_fields.pop("params_now", request.params)
    return RequestRecord(
        request=request,
        verdict=verdict,
        created_at=NOW,
        deadline=rec_fields.pop("deadline", NOW + 600),
        params=params_now,
        **rec_fields,
    )


def big_record() -> RequestRecord:
    """40 parameters of every kind, 20 KB of reasoning, 100 plan steps, a big context."""
    params: dict[str, Any] = {}
    props: dict[str, Any] = {}
    for i in range(40):
        kind = i % 7
        name = f"param_{i:02d}_" + "x" * (i % 5) * 10
        if kind == 0:
            params[name], props[name] = i * 1.5, {"type": "number", "minimum": 0}
        elif kind == 1:
            params[name], props[name] = i, {"type": "integer", "maximum": 10_000}
        elif kind == 2:
            params[name] = "opt-1"
            props[name] = {"type": "string", "enum": [f"opt-{n}" for n in range(120)][:100]}
        elif kind == 3:
            params[name], props[name] = bool(i % 2), {"type": "boolean"}
        elif kind == 4:
            params[name], props[name] = "2025-03-04", {"type": "string", "format": "date"}
        elif kind == 5:
            params[name], props[name] = "long & <text> " * 300, {"type": "string"}
        else:
            params[name], props[name] = {"nested": list(range(50))}, {"type": "object"}
    return record(
        params=params,
        param_schema={"type": "object", "properties": props},
        reasoning=("Because <!channel> & reasons. " * 700)[:20_000],
        summary="S" * 300,
        context={"user_request": "please " * 300, **{f"k{i}": "v" * 300 for i in range(30)}},
        plan=[{"description": f"step {i} " + "d" * 300, "action": "do", "params": {"i": i}}
              for i in range(100)],  # fmt: skip
        dry_run=True,
        verdict=Verdict(kind=VerdictKind.REVIEW, risk=Risk.CRITICAL, rule="r" * 200,
                        reason="why " * 500, approvals=2, roles=["manager", "compliance"]),
    )  # fmt: skip


def text_of(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def decided(rec: RequestRecord, outcome: Outcome, **fields: Any) -> RequestRecord:
    params = fields.pop("params", rec.params)
    decision = Decision(
        request_id=rec.id,
        outcome=outcome,
        params=params,
        modified=params != rec.request.params,
        original_params=rec.request.params if params != rec.request.params else None,
        decided_at=NOW + 60,
        **fields,
    )
    return rec.model_copy(update={"state": outcome.state, "decision": decision, "params": params})


BOB = Reviewer(user_id="bob", display_name="Bob Brown", channel="slack", at=NOW + 30)
ALICE = Reviewer(user_id="alice", display_name="alice", channel="slack", at=NOW + 20)


# -- the card ----------------------------------------------------------------------------------


def test_card_shows_every_fact() -> None:
    """The card shows risk, summary, who, reasoning, request, rule, params, plan, DRY RUN, due."""
    rec = record(
        plan=["look up the order", "refund it"],
        dry_run=True,
        escalation_level=1,
        verdict=Verdict(kind=VerdictKind.REVIEW, risk=Risk.HIGH, rule="refund-over-100",
                        reason="refunds over $100 need a manager", roles=["manager"],
                        escalation=[{"after_s": 600, "target": {"kind": "channel", "target": "#m"}},
                                    {"after_s": 3600, "timeout": True}]),
    )  # fmt: skip
    out = text_of(bk.card_blocks(rec))
    for expected in [
        "🟠 HIGH · Refund $250 for order A-1002",
        "support-bot",
        "sess-9",
        "U0REQ",
        "Late delivery.",
        "I want my money back",
        "81%",
        "refund-over-100",
        "refunds over $100 need a manager",
        "`order_id`: A-1002",
        "`amount`: 250.0",
        "1. look up the order",
        "DRY RUN",
        "<!date^1750000600^",
        "level 1 of 1",
        "0 of 1 (manager)",
    ]:
        assert expected in out, expected
    assert [] == blockkit_violations({"blocks": bk.card_blocks(rec)}, "card")


def test_pending_card_has_three_buttons_and_terminal_none() -> None:
    """Approve (primary), Modify and Reject while pending; no buttons once decided."""
    rec = record()
    actions = [b for b in bk.card_blocks(rec) if b["type"] == "actions"]
    assert 1 == len(actions)
    ids = [e["action_id"] for e in actions[0]["elements"]]
    assert [bk.APPROVE, bk.MODIFY, bk.REJECT] == ids
    assert "primary" == actions[0]["elements"][0]["style"]
    assert "confirm" not in actions[0]["elements"][0]
    done = decided(rec, Outcome.APPROVED, reviewers=[BOB])
    assert [] == [b for b in bk.card_blocks(done) if b["type"] == "actions"]


def test_critical_approve_asks_for_confirmation() -> None:
    """A critical request's Approve button opens a confirmation dialog first."""
    rec = record(verdict=Verdict(kind=VerdictKind.REVIEW, risk=Risk.CRITICAL, approvals=2))
    actions = next(b for b in bk.card_blocks(rec) if b["type"] == "actions")
    confirm = actions["elements"][0]["confirm"]
    assert "Approve" == confirm["confirm"]["text"]
    assert "CRITICAL" in confirm["text"]["text"]


def test_two_person_rule_shows_progress() -> None:
    """After one of two approvals the card says "1 of 2 approvals (alice)" and stays open."""
    rec = record(
        verdict=Verdict(kind=VerdictKind.REVIEW, risk=Risk.CRITICAL, approvals=2),
        votes=[Vote(reviewer=ALICE)],
    )
    out = text_of(bk.card_blocks(rec))
    assert "1 of 2 approvals (alice)" in out
    assert bk.APPROVE in out


def test_decided_card_shows_outcome_who_when_reason() -> None:
    """A rejected card names the outcome, the reviewer, the time and the reason."""
    rec = decided(record(), Outcome.REJECTED, reviewers=[BOB], reason="use store credit")
    out = text_of(bk.card_blocks(rec))
    assert "Rejected by Bob Brown at 2025-06-15 15:07Z" in out
    assert "Reason: use store credit" in out
    assert "⛔" in bk.card_text(rec)


def test_modified_card_shows_before_after() -> None:
    """An approval with modified params shows each change as before → after."""
    rec = decided(
        record(),
        Outcome.APPROVED,
        reviewers=[BOB],
        params={"order_id": "A-1002", "amount": 150.0},
    )
    out = text_of(bk.card_blocks(rec))
    assert "`amount`: 250.0 → 150.0" in out
    assert "`order_id`" not in out.split("before → after")[1]


@pytest.mark.parametrize(
    "outcome,words",
    [
        (Outcome.EXPIRED, "Expired"),
        (Outcome.CANCELLED, "Withdrawn by the agent"),
        (Outcome.AUTO_APPROVED, "Approved by policy"),
    ],
)
def test_other_outcomes(outcome: Outcome, words: str) -> None:
    """Expired, cancelled and policy outcomes are worded for people."""
    rec = decided(record(), outcome, reason="x")
    assert words in text_of(bk.card_blocks(rec))


def test_big_request_stays_within_limits_with_full_text_buttons() -> None:
    """40 params and 20 KB of reasoning fit in 14 blocks, with 'show all' buttons."""
    rec = big_record()
    out = bk.card_blocks(rec)
    assert len(out) <= 14
    assert [] == blockkit_violations({"blocks": out, "text": bk.card_text(rec)}, "card")
    values = {e["value"].split("|")[0] for b in out if (e := b.get("accessory"))}
    assert {"reasoning", "params", "plan", "context"} <= values
    assert "All 40 parameters" in text_of(out)


def test_big_request_decided_with_many_changes() -> None:
    """A decided card with 40 changed params keeps the limits and offers all changes."""
    rec = big_record()
    changed = {k: (v if not isinstance(v, str) else v + "!") for k, v in rec.params.items()}
    done = decided(rec, Outcome.APPROVED, reviewers=[BOB, ALICE], params=changed,
                   reason="r" * 2900)  # fmt: skip
    out = bk.card_blocks(done)
    assert [] == blockkit_violations({"blocks": out}, "card")
    assert "All changes" in text_of(out)


def test_user_content_is_escaped() -> None:
    """``<!channel>`` and ``&`` in agent text cannot ping or forge links."""
    rec = record(summary="Hi <!channel>", reasoning="a <@U0BOB> & <http://x|y>")
    out = text_of(bk.card_blocks(rec))
    assert "<!channel>" not in out.replace("Hi <!channel>", "")  # header is plain text
    assert "&lt;@U0BOB&gt; &amp; &lt;http://x|y&gt;" in out


@given(st.text(alphabet="&<>ab\n", max_size=300), st.integers(min_value=2, max_value=200))
def test_clip_md_never_cuts_an_escape(text: str, limit: int) -> None:
    """Shortened escaped text is within the limit and has no half entity."""
    out = bk.clip_md(text, limit)
    assert len(out) <= limit
    body = out.removesuffix("…")
    assert html.unescape(body) == text[: len(html.unescape(body))]


@given(st.text(alphabet="&<>ab\n", max_size=5000))
def test_chunks_rebuild_the_text(text: str) -> None:
    """Full text is split into pieces within the limit that join back to the original."""
    escaped = bk.esc(text)
    pieces = md._chunks(escaped, 100)
    assert all(len(p) <= 100 for p in pieces)
    assert escaped.replace("\n", "") == "".join(pieces).replace("\n", "")


# -- full text ---------------------------------------------------------------------------------


@pytest.mark.parametrize("part", sorted(bk.PARTS))
def test_full_text_views_fit(part: str) -> None:
    """Every "show all" modal of the big request fits a modal (title ≤ 24, ≤ 100 blocks)."""
    view = md.full_text_view(big_record(), part)
    assert [] == blockkit_violations({"view": view}, "views.open")


def test_full_reasoning_is_all_there() -> None:
    """The reasoning modal holds all 20 KB of it."""
    rec = big_record()
    view = md.full_text_view(rec, "reasoning")
    shown = "".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")
    assert rec.request.reasoning.replace("\n", "") == html.unescape(shown).replace("\n", "")


# -- reject and modify -------------------------------------------------------------------------


def test_reject_view_requires_a_reason() -> None:
    """The Reject modal's reason input is required (not optional, at least one character)."""
    view = md.reject_view(record(), '{"id":"r-1"}')
    assert [] == blockkit_violations({"view": view}, "views.open")
    reason = next(b for b in view["blocks"] if b.get("block_id") == "reason")
    assert not reason.get("optional", False)
    assert 1 == reason["element"]["min_length"]
    assert bk.REJECT_VIEW == view["callback_id"]


def test_modify_view_has_one_typed_input_per_param() -> None:
    """number, integer, select, checkbox, date, text and JSON inputs from ``param_schema``."""
    rec = big_record()
    view = md.modify_view(rec, '{"id":"r-1"}')
    assert [] == blockkit_violations({"view": view}, "views.open")
    kinds = {
        b["block_id"]: b["element"]["type"]
        for b in view["blocks"]
        if b["type"] == "input" and b["block_id"] != "reason"
    }
    types = set(kinds.values())
    assert {
        "number_input",
        "static_select",
        "checkboxes",
        "datepicker",
        "plain_text_input",
    } <= types
    names = list(rec.params)
    assert "number_input" == kinds["p:" + names[0]]
    assert "static_select" == kinds["p:" + names[2]]
    assert "checkboxes" == kinds["p:" + names[3]]
    assert "datepicker" == kinds["p:" + names[4]]
    number = next(b for b in view["blocks"] if b.get("block_id") == "p:" + names[1])
    assert number["element"]["is_decimal_allowed"] is False
    # the 4,200-character strings cannot be edited in a form: they are listed instead
    long_text = [n for n in names if isinstance(rec.params[n], str) and len(rec.params[n]) > 3000]
    assert long_text and all("p:" + n not in kinds for n in long_text)
    assert "Not editable here" in json.dumps(view)


def test_modify_fields_without_schema_follow_the_values() -> None:
    """Without a schema the input type follows each current value."""
    rec = record(params={"n": 3, "x": 1.5, "ok": True, "when": "2025-01-02", "s": "hi",
                         "tags": ["a"]})  # fmt: skip
    kinds = {f.name: f.kind for f in md.modify_fields(rec)}
    expected = {"n": "integer", "x": "number", "ok": "boolean", "when": "date", "s": "text",
                "tags": "json"}  # fmt: skip
    assert expected == kinds


def _state(**values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"p:{k}": {"v": v} for k, v in values.items()}


def test_parse_modify_types_the_values() -> None:
    """Submitted strings come back as numbers, booleans, dates and JSON."""
    rec = record(params={"n": 3, "x": 1.5, "ok": True, "when": "2025-01-02", "s": "hi",
                         "tags": ["a"]})  # fmt: skip
    values = _state(
        n={"type": "number_input", "value": "4"},
        x={"type": "number_input", "value": "2.25"},
        ok={"type": "checkboxes", "selected_options": []},
        when={"type": "datepicker", "selected_date": "2025-02-03"},
        s={"type": "plain_text_input", "value": "hello"},
        tags={"type": "plain_text_input", "value": '["a", "b"]'},
    )
    values["reason"] = {"v": {"type": "plain_text_input", "value": "smaller"}}
    changed, errors, reason = md.parse_modify(rec, values)
    assert {} == errors
    assert {"n": 4, "x": 2.25, "ok": False, "when": "2025-02-03", "s": "hello",
            "tags": ["a", "b"]} == changed  # fmt: skip
    assert "smaller" == reason


def test_parse_modify_reports_errors_on_their_input() -> None:
    """Bad JSON, an emptied number and "nothing changed" are errors on the right input."""
    rec = record(params={"n": 3, "tags": ["a"]})
    _, errors, _ = md.parse_modify(
        rec,
        _state(
            n={"type": "number_input", "value": None},
            tags={"type": "plain_text_input", "value": "[oops"},
        ),
    )
    assert "cannot be emptied" in errors["p:n"]
    assert "not valid JSON" in errors["p:tags"]
    _, errors, _ = md.parse_modify(rec, _state(n={"type": "number_input", "value": "3"}))
    assert "Nothing was changed" in errors["p:n"]


def test_parse_modify_select_and_integer_coercion() -> None:
    """A select returns the enum value; 250 typed for a float param stays a number."""
    rec = record(
        params={"mode": "fast", "amount": 250.0},
        param_schema={"type": "object", "properties": {
            "mode": {"type": "string", "enum": ["fast", "slow"]}, "amount": {"type": "number"}}},
    )  # fmt: skip
    changed, errors, _ = md.parse_modify(
        rec,
        _state(
            mode={"type": "static_select", "selected_option": {"value": '"slow"'}},
            amount={"type": "number_input", "value": "250"},
        ),
    )
    assert {} == errors
    assert {"mode": "slow"} == changed


def test_schema_errors_land_on_the_param() -> None:
    """What the decision would refuse lands on the input of the param it is about."""
    schema = {"type": "object", "properties": {"amount": {"type": "number", "maximum": 200},
                                               "order_id": {"type": "string"}}}  # fmt: skip
    rec = record(param_schema=schema, params={"order_id": "A-1002", "amount": 150.0})
    errors = md.schema_errors(rec, {"amount": 300})
    assert "300 is greater than the maximum of 200" in errors["p:amount"]
    assert {} == md.schema_errors(rec, {"amount": 190})


# -- /hitl pending -----------------------------------------------------------------------------


def test_pending_page_has_buttons_and_paging() -> None:
    """A page lists each request with its buttons and offers the next page."""
    records = [record(id=f"r-{i}") for i in range(5)]
    out = bk.pending_blocks(records, offset=5, total=12, page_size=5)
    assert [] == blockkit_violations({"blocks": out}, "pending")
    nav = next(b for b in out if b.get("block_id") == "hitl_nav")
    assert ["0", "10"] == [e["value"] for e in nav["elements"]]
    assert 5 == sum(1 for b in out if b["type"] == "actions" and b.get("block_id") != "hitl_nav")


def test_pending_page_empty() -> None:
    """No requests: a friendly line, no buttons."""
    assert "Nothing is waiting" in text_of(bk.pending_blocks([], offset=0, total=0, page_size=5))


def test_slack_date_has_a_utc_fallback() -> None:
    """Dates render in the reader's zone with a UTC fallback."""
    assert "<!date^1750000000^{date_short_pretty} {time}|2025-06-15 15:06Z>" == bk.slack_date(NOW)


def test_state_terminal_card_text() -> None:
    """The notification text of a decided card starts with the outcome."""
    rec = decided(record(), Outcome.APPROVED, reviewers=[BOB])
    assert bk.card_text(rec).startswith("✅ Approved by Bob Brown")
    assert State.APPROVED == rec.state
