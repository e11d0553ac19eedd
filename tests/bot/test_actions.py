"""Approve / Reject / Modify clicks on the real Bolt app, signed, against the mock Slack."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from hitl.bot.slack.blocks import APPROVE, FULL, MODIFY, MODIFY_VIEW, REJECT, REJECT_VIEW
from hitl.errors import StoreUnavailable
from hitl.models import CardRef, Outcome, Reviewer, State
from tests.bot.conftest import SlackHarness
from tests.bot.slack_server import Call
from tests.scenarios.helpers import audit_entries, audit_kinds


def updates_of(harness: SlackHarness, ref: CardRef) -> list[Call]:
    return [
        c
        for c in harness.slack.calls_to("chat.update")
        if c.args["channel"] == ref.conversation and c.args["ts"] == ref.message
    ]


def blocks_text(call: Call) -> str:
    return json.dumps(call.args.get("blocks", []), ensure_ascii=False)


def has_buttons(call: Call) -> bool:
    return any(b["type"] == "actions" for b in call.args["blocks"])


async def final_update(harness: SlackHarness, ref: CardRef, text: str) -> Call:
    """Wait for an update of the card ``ref`` whose blocks contain ``text``."""

    def found() -> Call | None:
        hits = [c for c in updates_of(harness, ref) if text in blocks_text(c)]
        return hits[-1] if hits else None

    return await harness.slack.wait_for(found, what=f"an update of {ref} with {text!r}")


def ephemerals(harness: SlackHarness) -> list[str]:
    """Texts told to one person: response_url answers and chat.postEphemeral."""
    out = [str(c.args.get("text", "")) for c in harness.slack.responses()]
    out += [str(c.args.get("text", "")) for c in harness.slack.calls_to("chat.postEphemeral")]
    return out


async def test_approve_decides_and_updates_the_card(harness: SlackHarness) -> None:
    """One click approves; the posted card shows who approved and loses its buttons."""
    record = await harness.submit_and_post()
    status, _ = await harness.click(APPROVE, record.id, "U0BOB", "bob")
    assert 200 == status
    decision = await harness.slack.wait_for(lambda: harness.store.get(record.id).decision)
    assert Outcome.APPROVED == decision.outcome
    assert ["bob"] == [r.user_id for r in decision.reviewers]
    assert "slack" == decision.reviewers[0].channel
    update = await final_update(harness, record.cards[0], "Approved by Bob Brown")
    assert not has_buttons(update)
    # the agent is unblocked: the decision is on its list
    assert harness.store.redis.lpop(harness.store.keys.decision(record.id))


async def test_every_posted_copy_is_updated(harness: SlackHarness) -> None:
    """A request whose card was posted in two places: both copies show the decision."""
    record = await harness.submit_and_post()
    second = CardRef(channel="slack", conversation="DU0BOB", message="1700000999.000100")
    await asyncio.to_thread(harness.store.add_card, record.id, second)
    await harness.click(APPROVE, record.id, "U0CAROL", "carol")
    for ref in (record.cards[0], second):
        await final_update(harness, ref, "Approved by Carol Chen")


async def test_two_person_rule_shows_progress_and_stays_open(harness: SlackHarness) -> None:
    """Critical: '1 of 2 approvals (Bob Brown)' keeps the buttons; the 2nd approval ends it."""
    record = await harness.submit_and_post(action="delete_volume", params={"volume_id": "vol-1"})
    ref = record.cards[0]
    assert "CCRITICAL" == ref.conversation
    await harness.click(APPROVE, record.id, "U0BOB", "bob", channel="CCRITICAL")
    first = await final_update(harness, ref, "1 of 2 approvals (Bob Brown)")
    assert has_buttons(first)
    assert State.PENDING == harness.store.get(record.id).state
    await harness.click(APPROVE, record.id, "U0CAROL", "carol", channel="CCRITICAL")
    done = await final_update(harness, ref, "Approved by Bob Brown, Carol Chen")
    assert not has_buttons(done)


async def test_double_click_gives_one_decision(harness: SlackHarness) -> None:
    """The same reviewer clicking twice at once: one decision, the second click is told."""
    record = await harness.submit_and_post()
    await asyncio.gather(
        harness.click(APPROVE, record.id, "U0BOB", "bob"),
        harness.click(APPROVE, record.id, "U0BOB", "bob"),
    )
    told = await harness.slack.wait_for(lambda: ephemerals(harness), what="the second click told")
    assert "already approved by Bob Brown (bob)" in told[0]
    assert 1 == harness.store.redis.llen(harness.store.keys.decision(record.id))
    assert 1 == audit_kinds(harness.store.redis, record.id).count("approved")


async def test_racing_reviewers_one_wins_loser_told_who(harness: SlackHarness) -> None:
    """Bob approves while Carol rejects: exactly one decision; the other is told who won."""
    record = await harness.submit_and_post()
    meta = json.dumps({"id": record.id, "channel": "CAPPROVALS"})
    reason = {"reason": {"v": {"type": "plain_text_input", "value": "not this one"}}}
    await asyncio.gather(
        harness.click(APPROVE, record.id, "U0BOB", "bob"),
        harness.submit(REJECT_VIEW, reason, meta, "U0CAROL", "carol"),
    )
    told = await harness.slack.wait_for(lambda: ephemerals(harness), what="the loser told")
    decision = harness.store.get(record.id).decision
    assert decision is not None
    winner = decision.reviewers[0].display_name
    assert f"already {decision.outcome.value} by {winner}" in told[0]
    assert 1 == harness.store.redis.llen(harness.store.keys.decision(record.id))


async def test_unauthorized_click_is_told_audited_and_changes_nothing(
    harness: SlackHarness,
) -> None:
    """An unauthorized click is told why (to the clicker only), audited, card unchanged."""
    record = await harness.submit_and_post(action="wire", params={"amount": 9000})
    updates_before = len(harness.slack.calls_to("chat.update"))
    await harness.click(APPROVE, record.id, "U0ALICE", "alice")
    told = await harness.slack.wait_for(lambda: ephemerals(harness), what="alice told")
    assert "manager" in told[0]
    response = harness.slack.responses()[-1].args
    assert "ephemeral" == response["response_type"]
    assert response["replace_original"] is False
    await asyncio.sleep(0.3)
    assert updates_before == len(harness.slack.calls_to("chat.update"))
    assert State.PENDING == harness.store.get(record.id).state
    refused = [e for e in audit_entries(harness.store.redis) if e["kind"] == "refused"]
    assert "alice" == refused[-1]["actor"]
    assert "slack" == refused[-1]["details"]["channel"]


async def test_requester_cannot_approve_own_request(harness: SlackHarness) -> None:
    """The requester's click is refused (self-approval)."""
    record = await harness.submit_and_post(requested_by="bob")
    await harness.click(APPROVE, record.id, "U0BOB", "bob")
    told = await harness.slack.wait_for(lambda: ephemerals(harness))
    assert "cannot approve it" in told[0]
    assert State.PENDING == harness.store.get(record.id).state


async def test_ack_comes_before_slow_work(harness: SlackHarness) -> None:
    """With Slack answering in 2 s, the click is still acknowledged at once."""
    record = await harness.submit_and_post()
    harness.slack.slow(2.0)
    start = time.monotonic()
    status, _ = await harness.click(APPROVE, record.id, "U0BOB", "bob")
    assert 200 == status
    assert time.monotonic() - start < 1.0
    harness.slack.slow(0.0)
    await harness.slack.wait_for(lambda: harness.store.get(record.id).decision)


async def test_decision_elsewhere_updates_the_card(harness: SlackHarness) -> None:
    """A decision made outside Slack (CLI, another channel) re-renders the Slack card."""
    record = await harness.submit_and_post()
    who = Reviewer(user_id="carol", display_name="Carol Chen", channel="cli")
    await asyncio.to_thread(harness.service.decider.reject, record.id, who, "wrong order")
    update = await final_update(harness, record.cards[0], "Rejected by Carol Chen")
    assert "wrong order" in blocks_text(update)


# -- reject ------------------------------------------------------------------------------------


async def test_reject_opens_modal_then_rejects_with_reason(harness: SlackHarness) -> None:
    """Reject opens a modal; its submission rejects with the reason, shown on the card."""
    record = await harness.submit_and_post()
    await harness.click(REJECT, record.id, "U0BOB", "bob")
    opened = await harness.slack.wait_for(lambda: harness.slack.calls_to("views.open"))
    view = opened[0].args["view"]
    assert REJECT_VIEW == view["callback_id"]
    assert opened[0].args["trigger_id"].endswith(".trigger")
    reason = {"reason": {"v": {"type": "plain_text_input", "value": "use store credit"}}}
    status, body = await harness.submit(REJECT_VIEW, reason, view["private_metadata"], "U0BOB")
    assert 200 == status and body == ""
    update = await final_update(harness, record.cards[0], "Rejected by Bob Brown")
    assert "Reason: use store credit" in blocks_text(update)
    decision = harness.store.get(record.id).decision
    assert decision is not None and "use store credit" == decision.reason


async def test_reject_without_reason_shows_error_in_modal(harness: SlackHarness) -> None:
    """A blank reason keeps the modal open with an error on the reason field."""
    record = await harness.submit_and_post()
    meta = json.dumps({"id": record.id, "channel": "CAPPROVALS"})
    blank = {"reason": {"v": {"type": "plain_text_input", "value": "   "}}}
    status, body = await harness.submit(REJECT_VIEW, blank, meta, "U0BOB")
    assert 200 == status
    answer = json.loads(body)
    assert "errors" == answer["response_action"]
    assert "reason" in answer["errors"]
    assert State.PENDING == harness.store.get(record.id).state


async def test_unauthorized_reject_click_opens_nothing(harness: SlackHarness) -> None:
    """Alice may not decide a manager-only request: no modal, an explanation, an audit entry."""
    record = await harness.submit_and_post(action="wire", params={"amount": 9000})
    await harness.click(REJECT, record.id, "U0ALICE", "alice")
    told = await harness.slack.wait_for(lambda: ephemerals(harness))
    assert "may not decide" in told[0]
    assert [] == harness.slack.calls_to("views.open")
    assert "refused" in audit_kinds(harness.store.redis, record.id)


# -- modify ------------------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "amount": {"type": "number", "minimum": 0, "maximum": 500},
        "method": {"type": "string", "enum": ["card", "store_credit"]},
        "notify": {"type": "boolean"},
        "on": {"type": "string", "format": "date"},
    },
    "required": ["order_id", "amount"],
}
PARAMS = {"order_id": "A-1", "amount": 250.0, "method": "card", "notify": True, "on": "2025-03-04"}


async def open_modify(
    harness: SlackHarness, request_id: str, user: str = "U0BOB"
) -> dict[str, Any]:
    await harness.click(MODIFY, request_id, user)
    opened = await harness.slack.wait_for(lambda: harness.slack.calls_to("views.open"))
    view: dict[str, Any] = opened[-1].args["view"]
    return view


def modal_values(view: dict[str, Any], **changes: dict[str, Any]) -> dict[str, Any]:
    """The state Slack would submit: every input at its initial value, then ``changes``."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        el = block["element"]
        state: dict[str, Any] = {"type": el["type"]}
        if el["type"] in ("plain_text_input", "number_input"):
            state["value"] = el.get("initial_value")
        elif el["type"] == "static_select":
            state["selected_option"] = el.get("initial_option")
        elif el["type"] == "checkboxes":
            state["selected_options"] = el.get("initial_options", [])
        elif el["type"] == "datepicker":
            state["selected_date"] = el.get("initial_date")
        values[block["block_id"]] = {"v": state}
    for name, change in changes.items():
        values[name if name == "reason" else f"p:{name}"]["v"].update(change)
    return values


async def test_modify_modal_typed_inputs_and_approval_with_diff(harness: SlackHarness) -> None:
    """Modify: typed inputs from param_schema; approval shows a before -> after diff."""
    record = await harness.submit_and_post(params=PARAMS, param_schema=SCHEMA)
    view = await open_modify(harness, record.id)
    assert MODIFY_VIEW == view["callback_id"]
    types = {b["block_id"]: b["element"]["type"] for b in view["blocks"] if b["type"] == "input"}
    assert {
        "p:order_id": "plain_text_input",
        "p:amount": "number_input",
        "p:method": "static_select",
        "p:notify": "checkboxes",
        "p:on": "datepicker",
        "reason": "plain_text_input",
    } == types
    values = modal_values(
        view,
        amount={"value": "150"},
        method={"selected_option": {"value": '"store_credit"'}},
        reason={"value": "partial refund agreed"},
    )
    status, body = await harness.submit(MODIFY_VIEW, values, view["private_metadata"], "U0BOB")
    assert (200, "") == (status, body)
    decision = await harness.slack.wait_for(lambda: harness.store.get(record.id).decision)
    assert decision.modified
    assert {**PARAMS, "amount": 150, "method": "store_credit"} == decision.params
    update = await final_update(harness, record.cards[0], "Approved by Bob Brown")
    text = blocks_text(update)
    assert "`amount`: 250.0 → 150" in text
    assert "`method`: card → store_credit" in text


async def test_modify_validation_errors_are_shown_in_the_modal(harness: SlackHarness) -> None:
    """A value the schema refuses (amount > 500) comes back as an error on that input."""
    record = await harness.submit_and_post(params=PARAMS, param_schema=SCHEMA)
    view = await open_modify(harness, record.id)
    values = modal_values(view, amount={"value": "900"})
    status, body = await harness.submit(MODIFY_VIEW, values, view["private_metadata"], "U0BOB")
    assert 200 == status
    answer = json.loads(body)
    assert "errors" == answer["response_action"]
    assert "900" in answer["errors"]["p:amount"]
    assert State.PENDING == harness.store.get(record.id).state
    unchanged = modal_values(view)
    _, body = await harness.submit(MODIFY_VIEW, unchanged, view["private_metadata"], "U0BOB")
    assert "Nothing was changed" in json.dumps(json.loads(body)["errors"])


async def test_modify_after_someone_else_changed_params(harness: SlackHarness) -> None:
    """A form opened before another reviewer's modification does not overwrite it silently."""
    record = await harness.submit_and_post(
        action="delete_volume", params={"volume_id": "vol-1", "force": False}
    )
    view = await open_modify(harness, record.id)
    other = Reviewer(user_id="carol", display_name="Carol Chen", channel="cli")
    await asyncio.to_thread(
        harness.service.decider.modify, record.id, other, {"volume_id": "vol-2"}
    )
    values = modal_values(view, force={"selected_options": [{"value": "true"}]})
    _, body = await harness.submit(MODIFY_VIEW, values, view["private_metadata"], "U0BOB")
    assert "Someone changed these parameters" in json.dumps(json.loads(body)["errors"])


async def test_modify_late_is_told_who_decided(harness: SlackHarness) -> None:
    """A Modify form submitted after the request was decided: refused, audited, told."""
    record = await harness.submit_and_post(params=PARAMS, param_schema=SCHEMA)
    view = await open_modify(harness, record.id)
    await harness.click(APPROVE, record.id, "U0CAROL", "carol")
    await harness.slack.wait_for(lambda: harness.store.get(record.id).decision)
    values = modal_values(view, amount={"value": "100"})
    status, _ = await harness.submit(MODIFY_VIEW, values, view["private_metadata"], "U0BOB")
    assert 200 == status
    told = await harness.slack.wait_for(lambda: ephemerals(harness))
    assert "already approved by Carol Chen (carol)" in told[-1]
    late = [e for e in audit_entries(harness.store.redis) if e["kind"] == "refused"]
    assert late[-1]["details"]["late"] is True


async def test_full_text_button_opens_everything(harness: SlackHarness) -> None:
    """A 20 KB reasoning is shortened on the card; its button opens all of it in a modal."""
    reasoning = ("The customer has been waiting for three weeks. " * 500)[:20_000]
    record = await harness.submit_and_post(reasoning=reasoning)
    card = harness.slack.cards_for(record.id)[0]
    assert '"reasoning|' + record.id in json.dumps(card.args["blocks"])
    await harness.click(FULL, f"reasoning|{record.id}", "U0DAVE")
    opened = await harness.slack.wait_for(lambda: harness.slack.calls_to("views.open"))
    shown = "".join(
        b["text"]["text"] for b in opened[0].args["view"]["blocks"] if b["type"] == "section"
    )
    assert reasoning.replace("\n", "") == shown.replace("\n", "")


async def test_store_unreachable_is_told_not_hidden(
    harness: SlackHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When Redis cannot be reached the clicker is told to retry, and the card stays open."""
    record = await harness.submit_and_post()

    def unreachable(*args: object) -> None:
        raise StoreUnavailable("Redis is unreachable (test); nothing was written - retry later")

    monkeypatch.setattr(harness.service.decider, "approve", unreachable)
    await harness.click(APPROVE, record.id, "U0BOB", "bob")
    said = await harness.slack.wait_for(lambda: ephemerals(harness))
    assert "nothing was written - retry later" in said[0]
    monkeypatch.undo()
    assert State.PENDING == harness.store.get(record.id).state
    assert [] == harness.slack.calls_to("chat.update")


async def test_big_request_through_the_app_keeps_block_kit_limits(harness: SlackHarness) -> None:
    """40 params and 20 KB of reasoning: the posted card and every modal pass the mock's checks."""
    params: dict[str, Any] = {
        f"p{i:02d}": (i * 1.5 if i % 2 else f"value {i} " * 40) for i in range(40)
    }
    props = {k: ({"type": "number"} if isinstance(v, float) else {"type": "string"})
             for k, v in params.items()}  # fmt: skip
    record = await harness.submit_and_post(
        params=params,
        param_schema={"type": "object", "properties": props},
        reasoning=("Because <!channel> & more. " * 800)[:20_000],
    )
    await harness.click(MODIFY, record.id, "U0BOB", "bob")
    for part in ("params", "reasoning", "context"):
        await harness.click(FULL, f"{part}|{record.id}", "U0BOB", "bob")
    opened = await harness.slack.wait_for(lambda: len(harness.slack.calls_to("views.open")) >= 4)
    assert opened
    views = [c.args["view"] for c in harness.slack.calls_to("views.open")]
    [modify] = [v for v in views if v.get("callback_id") == "hitl_modify_view"]
    inputs = [b for b in modify["blocks"] if b["type"] == "input"]
    assert 41 == len(inputs)  # 40 params and the reason
    assert [] == harness.slack.violations
