"""Teams over HTTP: ``POST /api/messages`` on the service's aiohttp app, a local stand-in for the
Bot Framework connector, and the Slack scenarios repeated in Teams."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from hitl.bot.channel import ChannelError
from hitl.bot.slack.blocks import APPROVE as SLACK_APPROVE
from hitl.bot.teams.cards import MODIFY_REASON, REJECT_REASON
from hitl.handlers.breakglass import break_glass
from hitl.models import Destination, RequestRecord, Reviewer, State
from hitl.queue.scheduler import Notification, StreamSink
from tests.bot.teams.conftest import AAD, APPROVALS, OPS, TeamsHarness
from tests.scenarios.helpers import audit_entries

CARD = "application/vnd.microsoft.card.adaptive"
ERROR = "application/vnd.microsoft.error"


def refusals(h: TeamsHarness, request_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in audit_entries(h.store.redis)
        if e["kind"] == "refused" and e["request_id"] == request_id
    ]


async def updated_card(h: TeamsHarness, record: RequestRecord, words: str) -> str:
    """Wait until the Teams copy of ``record`` is replaced by a card saying ``words``."""
    conversation, message = h.teams_card(record)

    def found() -> str:
        for call in h.connector.updated(conversation, message):
            text = json.dumps(call.cards, ensure_ascii=False)
            if words in text:
                return text
        return ""

    return await h.connector.wait_for(found, what=f"the Teams copy saying {words!r}")


async def test_approve_in_teams_updates_every_copy(teams: TeamsHarness) -> None:
    """A card in Slack and Teams; alice approves in Teams; the invoke answers with the decided
    card and both copies are updated (Teams with update_activity)."""
    record = await teams.submit_and_post()
    conversation, message = teams.teams_card(record)
    assert APPROVALS == conversation
    posted = teams.connector.sent(APPROVALS)[-1]
    assert ["approve", "modify", "refresh", "reject"] == sorted(
        a["verb"] for a in _executes(posted.cards[0])
    )
    answer = await teams.click("alice", "approve", record.id, message=message)
    assert (CARD, 200) == (answer["type"], answer["statusCode"])
    assert "Approved by Alice Adams" in json.dumps(answer["value"])
    decided = teams.store.get(record.id)
    assert (State.APPROVED, "alice", "teams") == (
        decided.state, decided.decision.reviewers[0].user_id, decided.decision.reviewers[0].channel
    )  # fmt: skip
    await updated_card(teams, record, "Approved by Alice Adams")
    slack_ref = next(c for c in decided.cards if c.channel == "slack")
    await teams.slack.wait_for(
        lambda: [c for c in teams.slack.calls_to("chat.update")
                 if c.args["ts"] == slack_ref.message],
        what="the Slack copy updated",
    )  # fmt: skip


def _executes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        here = [node] if node.get("type") == "Action.Execute" else []
        return here + [a for v in node.values() for a in _executes(v)]
    if isinstance(node, list):
        return [a for v in node for a in _executes(v)]
    return []


async def test_reject_needs_a_reason_and_records_it(teams: TeamsHarness) -> None:
    """A reject without a reason is an error shown to the clicker (nothing changes); with one,
    the request is rejected and the reason is on the card and the decision."""
    record = await teams.submit_and_post()
    answer = await teams.click("alice", "reject", record.id, **{REJECT_REASON: "  "})
    assert (ERROR, 400) == (answer["type"], answer["statusCode"])
    assert "needs a reason" in answer["value"]["message"]
    assert State.PENDING == teams.store.get(record.id).state
    answer = await teams.click("alice", "reject", record.id, **{REJECT_REASON: "wrong order"})
    assert "Rejected by Alice Adams" in json.dumps(answer["value"])
    decided = teams.store.get(record.id)
    assert (State.REJECTED, "wrong order") == (decided.state, decided.decision.reason)
    await updated_card(teams, record, "Reason: wrong order")


async def test_modify_with_a_validation_error_first(teams: TeamsHarness) -> None:
    """A value the param_schema refuses is an error naming the input (nothing changes); a good
    one approves with the changed params, shown before -> after."""
    schema = {"type": "object", "properties": {"order_id": {"type": "string"},
              "amount": {"type": "number", "minimum": 0, "maximum": 200}}}  # fmt: skip
    record = await teams.submit_and_post(
        param_schema=schema, params={"order_id": "A-1", "amount": 150.0}
    )
    answer = await teams.click("alice", "modify", record.id, **{"param.amount": "300"})
    assert (ERROR, 400) == (answer["type"], answer["statusCode"])
    assert "param.amount" in answer["value"]["message"]
    assert "maximum" in answer["value"]["message"]
    answer = await teams.click("alice", "modify", record.id, **{"param.amount": "abc"})
    assert "not a number" in answer["value"]["message"]
    assert State.PENDING == teams.store.get(record.id).state
    answer = await teams.click(
        "alice", "modify", record.id, **{"param.amount": "120", MODIFY_REASON: "partial refund"}
    )
    assert CARD == answer["type"]
    decided = teams.store.get(record.id)
    assert (State.APPROVED, {"order_id": "A-1", "amount": 120.0}, True) == (
        decided.state, decided.decision.params, decided.decision.modified)  # fmt: skip
    await updated_card(teams, record, "150.0 → 120")


async def test_two_person_rule_across_slack_and_teams(teams: TeamsHarness) -> None:
    """bob approves in Slack; bob's click in Teams does not count again; carol's in Teams does."""
    record = await teams.submit_and_post(action="delete_volume", params={"volume": "v-1"})
    slack = teams.slack_side
    status, _ = await slack.click(SLACK_APPROVE, record.id, "U0BOB", "bob")
    assert 200 == status
    await teams.connector.wait_for(lambda: teams.store.get(record.id).votes, what="bob's vote")
    answer = await teams.click("bob", "approve", record.id)
    assert (ERROR, 400) == (answer["type"], answer["statusCode"])
    assert "already voted" in answer["value"]["message"]
    assert 1 == len(teams.store.get(record.id).votes)
    assert "teams" == refusals(teams, record.id)[-1]["details"]["channel"]
    answer = await teams.click("carol", "approve", record.id)
    assert "Approved by" in json.dumps(answer["value"])
    decided = teams.store.get(record.id)
    assert State.APPROVED == decided.state
    assert ["bob", "carol"] == sorted(r.user_id for r in decided.decision.reviewers)


async def test_unknown_and_unauthorized_users_are_refused_and_audited(teams: TeamsHarness) -> None:
    """mallory (not in the directory) and alice (no manager role) are told why; the card and
    the request do not change; each attempt is audited."""
    record = await teams.submit_and_post(action="wire", params={"to": "x", "amount": 1})
    conversation, message = teams.teams_card(record)
    before = len(teams.connector.updated(conversation, message))
    answer = await teams.click("mallory", "approve", record.id)
    assert (ERROR, 400) == (answer["type"], answer["statusCode"])
    answer = await teams.click("alice", "approve", record.id)
    assert "manager" in answer["value"]["message"]
    assert State.PENDING == teams.store.get(record.id).state
    assert [] == teams.store.get(record.id).votes
    actors = [e["actor"] for e in refusals(teams, record.id)]
    assert ["teams:" + AAD["mallory"], "alice"] == actors
    assert before == len(teams.connector.updated(conversation, message))


async def test_double_submit_is_one_decision(teams: TeamsHarness) -> None:
    """Two clicks at once (a double submit): one decision, the other told who decided."""
    record = await teams.submit_and_post()
    answers = await asyncio.gather(*(teams.click("alice", "approve", record.id) for _ in range(2)))
    assert sorted([CARD, ERROR]) == sorted(a["type"] for a in answers)
    late = next(a for a in answers if a["type"] == ERROR)
    assert "already" in late["value"]["message"]
    decided = teams.store.get(record.id)
    assert State.APPROVED == decided.state
    assert 1 == sum(1 for e in audit_entries(teams.store.redis)
                    if e["request_id"] == record.id and e["kind"] == "approved")  # fmt: skip


async def test_decided_in_slack_updates_the_open_teams_copy(teams: TeamsHarness) -> None:
    """A request decided in Slack while its Teams copy is open: the Teams copy shows it."""
    record = await teams.submit_and_post()
    status, _ = await teams.slack_side.click(SLACK_APPROVE, record.id, "U0CAROL", "carol")
    assert 200 == status
    text = await updated_card(teams, record, "Approved by Carol Chen")
    assert "Action.Execute" not in text  # decided: no buttons left


async def test_decided_by_the_api_or_a_timeout_updates_the_teams_copy(teams: TeamsHarness) -> None:
    """Whoever decides (the decision path called directly, as the API and the worker do)."""
    record = await teams.submit_and_post()
    decider = teams.service.decider
    await asyncio.to_thread(decider.reject, record.id, Reviewer(user_id="carol"), "not today")
    await updated_card(teams, record, "Reason: not today")


async def test_escalation_to_a_teams_user(teams: TeamsHarness) -> None:
    """An escalation to user:carol (from the scheduler's stream) posts the card in carol's
    personal chat with the escalation on top, and replies under the channel copy."""
    record = await teams.submit_and_post(action="wire", params={"to": "x", "amount": 1})
    StreamSink(teams.store).send(
        Notification(kind="escalated", key=f"esc:{record.id}:1", request_id=record.id,
                     level=1, target=Destination(kind="user", target="carol"),
                     text="Escalated: nobody answered in 10 minutes")
    )  # fmt: skip
    calls = await teams.connector.wait_for(
        lambda: [c for c in teams.connector.sent("a:carol") if c.cards], what="carol's card"
    )
    assert "Escalated: nobody answered" in json.dumps(calls[0].cards[0])
    assert record.id in json.dumps(calls[0].cards[0])
    reply = await teams.connector.wait_for(
        lambda: [c for c in teams.connector.sent(APPROVALS) if "Escalated" in c.text],
        what="the reply in the channel thread",
    )
    assert ";messageid=" in reply[0].conversation and "Carol Chen" in reply[0].text
    await teams.connector.wait_for(
        lambda: len([c for c in teams.store.get(record.id).cards if c.channel == "teams"]) == 2,
        what="the escalated copy recorded",
    )
    answer = await teams.click("carol", "approve", record.id, conversation="a:carol")
    assert "Approved by Carol Chen" in json.dumps(answer["value"])


async def test_teams_destinations_name_channels_and_people(teams: TeamsHarness) -> None:
    """teams:Ops posts in the Teams channel Ops (Slack uses its default channel); user:bob in
    bob's personal chat."""
    to_ops = await teams.submit_and_post(action="to_ops", params={"x": 1})
    assert OPS == teams.teams_card(to_ops)[0]
    assert ["#approvals"] == [c.args["channel"] for c in teams.slack.cards_for(to_ops.id)]
    to_bob = await teams.submit_and_post(action="ask_bob", params={"x": 1})
    assert "a:bob" == teams.teams_card(to_bob)[0]


async def test_reminder_replies_in_the_thread(teams: TeamsHarness) -> None:
    """A reminder replies under the Teams copy of the card."""
    record = await teams.submit_and_post()
    await teams.service.dispatcher.deliver(
        Notification(kind="reminder", key="r1", request_id=record.id, text="Still waiting")
    )
    replies = [c for c in teams.connector.sent(APPROVALS) if c.text == "Still waiting"]
    assert 1 == len(replies)


async def test_digest_approve_all_in_teams(teams: TeamsHarness) -> None:
    """A digest is posted as one card with "Approve all N"; clicking it approves each request
    (each checked and audited on its own) and the card lists them as decided."""
    records = [await teams.submit(action="lookup", params={"q": f"q{i}"}) for i in range(3)]
    digest = await asyncio.to_thread(teams.service.digests.post, "channel:#approvals")
    assert digest is not None
    calls = await teams.connector.wait_for(
        lambda: [c for c in teams.connector.sent(APPROVALS)
                 if c.cards and "approve_all" in json.dumps(c.cards[0])],
        what="the digest card",
    )  # fmt: skip
    assert "Approve all 3" in json.dumps(calls[0].cards[0])
    answer = await teams.click("carol", "approve_all", "", digest_id=digest.id)
    assert CARD == answer["type"], answer
    assert "approve_all" not in json.dumps(answer["value"])
    assert {State.APPROVED} == {teams.store.get(r.id).state for r in records}
    forged = await teams.click("carol", "approve_all", "", digest_id="d-nope")
    assert ERROR == forged["type"]


async def test_bad_input_gets_a_clear_error(teams: TeamsHarness) -> None:
    """Not JSON, not an activity, the wrong content type, too big: a 4xx saying so."""
    assert 415 == (await teams.post("{}", {"Content-Type": "text/plain"}))[0]
    status, answer = await teams.post("{not json")
    assert (400, {"error": "the body is not JSON"}) == (status, answer)
    assert 400 == (await teams.post([1, 2]))[0]
    assert 400 == (await teams.post({"text": "no type"}))[0]
    huge = io.BytesIO(json.dumps({"type": "message", "text": "x" * 2_000_000}).encode())
    assert 413 == (await teams.post(huge))[0]
    unknown = teams.activity("invoke", "alice", APPROVALS, name="composeExtension/query")
    assert 501 == (await teams.post(unknown))[0]


async def test_a_forged_card_action_decides_nothing(teams: TeamsHarness) -> None:
    """Card data is the client's: who clicked comes from the activity, not from the data, and a
    parameter the request does not have is refused."""
    record = await teams.submit_and_post()
    answer = await teams.click(
        "mallory", "approve", record.id, reviewer="carol", aadObjectId=AAD["carol"]
    )
    assert ERROR == answer["type"]
    answer = await teams.click("alice", "modify", record.id, **{"param.colour": "red"})
    assert "unknown parameter 'colour'" in answer["value"]["message"]
    assert State.PENDING == teams.store.get(record.id).state


async def test_a_removed_bot_is_gone_and_nothing_is_lost(teams: TeamsHarness) -> None:
    """The bot removed from a conversation (403): its copy is not updated again and the
    request stays pending; a card that cannot be posted anywhere waits in the backlog."""
    record = await teams.submit_and_post()
    teams.connector.fail_conversations[APPROVALS] = 403
    conversation, message = teams.teams_card(record)
    ref = next(c for c in record.cards if c.channel == "teams")
    with pytest.raises(ChannelError) as gone:
        await teams.channel.update_card(record, ref)
    assert gone.value.gone
    other = await teams.submit_and_post(channels=1)
    await teams.connector.wait_for(lambda: teams.service.dispatcher.backlog("teams"),
                                   what="the Teams card in the backlog")  # fmt: skip
    assert [] == [c for c in teams.store.get(other.id).cards if c.channel == "teams"]
    del teams.connector.fail_conversations[APPROVALS]
    await teams.service.dispatcher.sweep()
    assert [APPROVALS] == [c.conversation for c in teams.store.get(other.id).cards
                           if c.channel == "teams"]  # fmt: skip
    assert (conversation, message) == teams.teams_card(teams.store.get(record.id))


async def test_the_requester_cannot_approve_in_teams(teams: TeamsHarness) -> None:
    """bob asked (``requested_by`` his Slack id): his Teams click is refused, as in Slack."""
    record = await teams.submit_and_post(requested_by="U0BOB")
    answer = await teams.click("bob", "approve", record.id)
    assert "cannot approve" in answer["value"]["message"]
    assert State.PENDING == teams.store.get(record.id).state


async def test_break_glass_elsewhere_shows_in_teams(teams: TeamsHarness) -> None:
    """A critical request approved by break-glass (bob alone, through the API's handler) is
    decided on the Teams copy too, and a later Teams click is told it is decided."""
    record = await teams.submit_and_post(action="delete_volume", params={"volume": "v-1"})
    bob = Reviewer(user_id="bob", display_name="Bob Brown", channel="api")
    await asyncio.to_thread(break_glass, teams.service.decider, record.id, bob, "prod is down")
    await updated_card(teams, record, "Approved by Bob Brown")
    answer = await teams.click("carol", "approve", record.id)
    assert "already approved by Bob Brown" in answer["value"]["message"]
