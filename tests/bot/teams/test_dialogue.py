"""The Teams bot's dialogue, driven by botbuilder's own TestAdapter: text commands, card
actions, where the bot stores conversations, and proactive posts and updates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from botbuilder.core.adapters import TestAdapter
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount

from hitl.bot.channel import ChannelError, Route
from hitl.bot.teams import TeamsChannel, mount_teams
from hitl.bot.teams.bot import TeamsBot
from hitl.bot.teams.people import TeamsPeople
from hitl.config import Settings
from hitl.handlers import Authority
from hitl.models import Destination, RequestRecord, State
from hitl.queue.conversations import ConversationBook
from hitl.queue.store import Store
from hitl.service import Service
from tests.bot.conftest import request_fields
from tests.bot.teams.conftest import AAD, TENANT, teams_settings
from tests.bot.teams.schema import schema_errors
from tests.scenarios.helpers import audit_entries, drain

CARD = "application/vnd.microsoft.card.adaptive"


def template(user: str, conversation: str = "") -> Activity:
    conversation = conversation or f"a:{user}"
    return Activity(
        channel_id="msteams",
        service_url="https://smba.test/",
        from_property=ChannelAccount(
            id=f"29:{user}", name=user.title(), aad_object_id=AAD.get(user, "")
        ),  # fmt: skip
        recipient=ChannelAccount(id="28:hitl-bot", name="hitl"),
        conversation=ConversationAccount(
            id=conversation,
            conversation_type="personal" if conversation.startswith("a:") else "channel",
            tenant_id=TENANT,
        ),
    )


class Dialogue:
    """The service's Teams bot behind a TestAdapter; each user talks in their personal chat."""

    def __init__(self, service: Service, channel: TeamsChannel, adapter: TestAdapter) -> None:
        self.service = service
        self.channel = channel
        self.adapter = adapter
        bot = channel.bot
        assert isinstance(bot, TeamsBot)
        self.bot = bot

    async def say(self, user: str, text: str) -> list[Activity]:
        """``user`` writes ``text``; returns what the bot answered."""
        self.adapter.template = template(user)
        before = len(self.adapter.activity_buffer)
        await self.adapter.process_activity(Activity(type="message", text=text), self.bot.on_turn)
        return self.adapter.activity_buffer[before:]

    async def text(self, user: str, text: str) -> str:
        return "\n".join(a.text or "" for a in await self.say(user, text))

    async def invoke(self, user: str, verb: str, **data: Any) -> dict[str, Any]:
        """``user`` clicks ``verb`` on a card; returns the invoke response's body."""
        self.adapter.template = template(user, "19:approvals@thread.tacv2")
        before = len(self.adapter.activity_buffer)
        value = {"action": {"type": "Action.Execute", "verb": verb, "data": {"verb": verb, **data}}}
        activity = Activity(type="invoke", name="adaptiveCard/action", value=value)
        await self.adapter.process_activity(activity, self.bot.on_turn)
        [response] = [
            a for a in self.adapter.activity_buffer[before:] if a.type == "invokeResponse"
        ]
        assert 200 == response.value.status
        body: dict[str, Any] = response.value.body
        return body

    async def submit(self, **fields: Any) -> RequestRecord:
        body = request_fields(**fields)
        store = self.service.store
        store.redis.xadd(store.keys.requests, {"request": json.dumps(body)})
        await asyncio.to_thread(drain, self.service.consumers[0])
        return store.get(body["id"])


@pytest.fixture
def dialogue(settings: Settings, store: Store, authority: Authority) -> Iterator[Dialogue]:
    service = Service(settings, store=store, authority=authority)
    service.consumers[0].ensure_group()
    adapter = TestAdapter(template_or_conversation=template("bob"))
    channel = mount_teams(service, teams_settings(), adapter=adapter)
    assert channel is not None
    yield Dialogue(service, channel, adapter)
    for consumer in service.consumers:
        consumer.close()
    assert [] == [e for card in sent_cards(adapter) for e in schema_errors(card)]


def sent_cards(adapter: TestAdapter) -> list[dict[str, Any]]:
    """Every Adaptive Card the bot sent, updated or answered an invoke with."""
    cards = []
    for activity in [*adapter.activity_buffer, *adapter.updated_activities]:
        cards += [a.content for a in activity.attachments or [] if a.content_type == CARD]
        body = activity.value.body if activity.type == "invokeResponse" else None
        if isinstance(body, dict) and body.get("type") == CARD:
            cards.append(body["value"])
    return cards


async def test_help_lists_the_commands(dialogue: Dialogue) -> None:
    """``help`` (and anything the bot does not know) lists the five commands."""
    said = await dialogue.text("bob", "help")
    for command in ("`pending`", "`show ID`", "`approve ID [reason]`", "`reject ID reason`",
                    "`help`"):  # fmt: skip
        assert command in said
    assert "Unknown subcommand `hello`" in await dialogue.text("bob", "hello there")
    assert "Slack command or the CLI" in await dialogue.text("bob", "stats")


async def test_pending_lists_what_the_reviewer_may_decide(dialogue: Dialogue) -> None:
    """bob (manager) sees the high-risk wire; alice (no manager role) does not."""
    wire = await dialogue.submit(action="wire", params={"to": "x"})
    refund = await dialogue.submit()
    bob = await dialogue.text("bob", "pending")
    assert wire.id in bob and refund.id in bob and "2 pending requests" in bob
    alice = await dialogue.text("alice", "pending")
    assert refund.id in alice and wire.id not in alice


async def test_show_sends_the_card(dialogue: Dialogue) -> None:
    """``show ID`` answers with the approval card (a valid Adaptive Card 1.5)."""
    record = await dialogue.submit()
    [answer] = await dialogue.say("bob", f"show {record.id}")
    [attachment] = answer.attachments
    assert CARD == attachment.content_type
    assert [] == schema_errors(attachment.content)
    assert record.id in json.dumps(attachment.content)
    assert "No request r-nope" in await dialogue.text("bob", "show r-nope")


async def test_approve_and_reject_by_text(dialogue: Dialogue) -> None:
    """``approve ID reason`` and ``reject ID reason`` decide through the Decider, as teams."""
    one, two = await dialogue.submit(), await dialogue.submit()
    assert "approved" in (await dialogue.text("bob", f"approve {one.id} checked it")).lower()
    decided = dialogue.service.store.get(one.id)
    assert (State.APPROVED, "bob", "teams") == (decided.state,
        decided.decision.reviewers[0].user_id, decided.decision.reviewers[0].channel)  # fmt: skip
    assert "needs a reason" in await dialogue.text("bob", f"reject {two.id}")
    assert State.PENDING == dialogue.service.store.get(two.id).state
    await dialogue.text("bob", f"reject {two.id} wrong customer")
    assert ("wrong customer", State.REJECTED) == (
        dialogue.service.store.get(two.id).decision.reason,
        dialogue.service.store.get(two.id).state,
    )
    assert "already" in await dialogue.text("carol", f"approve {one.id}")


async def test_a_stranger_is_refused_and_audited(dialogue: Dialogue) -> None:
    """mallory is not in the directory: refused, told why, audited as teams:<object id>."""
    record = await dialogue.submit()
    said = await dialogue.text("mallory", f"approve {record.id}")
    assert said.startswith("⛔")
    assert State.PENDING == dialogue.service.store.get(record.id).state
    refused = [e for e in audit_entries(dialogue.service.store.redis) if e["kind"] == "refused"]
    assert ("teams:" + AAD["mallory"], "teams") == (refused[-1]["actor"],
                                                  refused[-1]["details"]["channel"])  # fmt: skip


async def test_card_actions_answer_with_the_card(dialogue: Dialogue) -> None:
    """Action.Execute: refresh and approve answer with a card; an unknown request, a missing
    id and another request's form are errors."""
    record = await dialogue.submit()
    body = await dialogue.invoke("carol", "refresh", request_id=record.id)
    assert (200, CARD) == (body["statusCode"], body["type"])
    assert [] == schema_errors(body["value"])
    body = await dialogue.invoke("carol", "approve", request_id=record.id)
    assert "Approved by Carol Chen" in json.dumps(body["value"])
    for data, words in [
        ({"request_id": "r-nope"}, "No request r-nope"),
        ({}, "no request id"),
        ({"request_id": record.id, "param.amount": "1"}, "only with 'modify'"),
    ]:
        body = await dialogue.invoke("carol", "approve", **data)
        assert (400, "application/vnd.microsoft.error") == (body["statusCode"], body["type"])
        assert words in body["value"]["message"]  # fmt: skip


async def test_messages_store_where_the_bot_may_post(dialogue: Dialogue) -> None:
    """A personal chat is stored under its user's object id; a channel under its name."""
    await dialogue.say("alice", "help")
    book = ConversationBook(dialogue.service.store)
    assert "a:alice" == book.conversation_of(user=AAD["alice"])
    reference = json.loads(book.reference("a:alice") or "{}")
    assert ("a:alice", "https://smba.test/") == (reference["conversation"]["id"],
                                                 reference["serviceUrl"])  # fmt: skip
    dialogue.adapter.template = template("alice", "19:ops@thread.tacv2;messageid=17")
    update = Activity(
        type="conversationUpdate",
        channel_data={"channel": {"id": "19:ops@thread.tacv2", "name": "Ops"}},
    )
    await dialogue.adapter.process_activity(update, dialogue.bot.on_turn)
    assert "19:ops@thread.tacv2" == book.conversation_of(channel="#ops")


async def test_proactive_post_and_update(dialogue: Dialogue) -> None:
    """The channel posts a card in bob's chat (continue_conversation) and updates it there."""
    await dialogue.say("bob", "help")
    record = await dialogue.submit()
    route = Route(Destination(kind="user", target="bob"), ("bob",))
    [ref] = await dialogue.channel.post_card(record, route)
    assert ("teams", "a:bob") == (ref.channel, ref.conversation)
    posted = dialogue.adapter.activity_buffer[-1]
    assert [] == schema_errors(posted.attachments[0].content)
    decided = (await asyncio.to_thread(dialogue.service.decider.approve, record.id,
               dialogue.bot.ctx.people.reviewer(AAD["carol"]))).record  # fmt: skip
    await dialogue.channel.update_card(decided, ref)
    [updated] = dialogue.adapter.updated_activities
    assert ref.message == updated.id
    assert "Approved by Carol Chen" in json.dumps(updated.attachments[0].content)


async def test_a_planted_service_url_is_not_sent_to(store: Store) -> None:
    """A reference changed in Redis to point elsewhere: the channel refuses to send there (the
    bot's token would go with the call), and says it is gone."""
    settings = teams_settings(auth_disabled=False, app_id="app", tenant_id=TENANT,
                              app_password="x")  # fmt: skip
    book = ConversationBook(store)
    reference = {"serviceUrl": "https://evil.example/", "channelId": "msteams",
                 "conversation": {"id": "a:bob"}, "bot": {"id": "28:hitl-bot"}}  # fmt: skip
    book.save("a:bob", json.dumps(reference), user=AAD["bob"])
    adapter = TestAdapter()
    channel = TeamsChannel(adapter, settings, book, TeamsPeople(None))
    with pytest.raises(ChannelError, match="not a Teams service URL") as caught:
        await channel.send(json.dumps(reference), Activity(type="message", text="hi"))
    assert caught.value.gone
    assert [] == adapter.activity_buffer
