"""The Teams implementation of :class:`hitl.bot.channel.Channel`: cards, replies and digests in
Microsoft Teams, sent proactively through botbuilder.

A bot may post in a Teams conversation only with the ``ConversationReference`` Teams gave it
there, so the bot stores one wherever it is installed or messaged
(:class:`~hitl.queue.conversations.ConversationBook`), and every post, update and reply is a
``continue_conversation`` on that reference. A :class:`~hitl.bot.channel.Route` becomes Teams
conversations: a ``channel:`` destination the Teams channel of that name (``teams:Approvals``,
``#approvals``) or conversation id; an on-call or user destination the personal chats of the
people it means (by their ``teams_id``); nothing known: the default channel, with a note::

    channel = TeamsChannel(adapter, settings, ConversationBook(store), TeamsPeople(policy))
    refs = await channel.post_card(record, Route(Destination(kind="user", target="bob"), ("bob",)))
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botbuilder.core import BotAdapter, TurnContext
from botbuilder.schema import Activity, ActivityTypes, Attachment, ConversationReference
from msrest.exceptions import HttpOperationError

from hitl.bot.channel import ChannelError, Route, digest_ref_name
from hitl.bot.teams.cards import approval_card, digest_card
from hitl.bot.teams.people import TeamsPeople
from hitl.bot.teams.settings import TeamsSettings
from hitl.errors import HitlError
from hitl.models import CardRef, RequestRecord
from hitl.queue.conversations import ConversationBook
from hitl.queue.digest import Digest

if TYPE_CHECKING:
    from hitl.bot.teams.bot import TeamsBot

__all__ = ["CARD_TYPE", "CHANNEL", "DIGEST", "TeamsChannel", "card_activity", "text_activity"]

log = logging.getLogger("hitl.teams")

CHANNEL = "teams"
"""``CardRef.channel`` of the cards this channel posts."""
DIGEST = digest_ref_name(CHANNEL)
CARD_TYPE = "application/vnd.microsoft.card.adaptive"


def card_activity(card: dict[str, Any], summary: str = "") -> Activity:
    """A message carrying one Adaptive Card. ``summary`` (what a notification shows) is not the
    message's text: Teams would show text above the card, and read agent text in it as markdown."""
    return Activity(
        type=ActivityTypes.message,
        summary=summary[:300] or None,
        attachments=[Attachment(content_type=CARD_TYPE, content=card)],
    )


def text_activity(text: str) -> Activity:
    """A message of hitl's: plain text as written (``textFormat: plain``, no markdown)."""
    return Activity(type=ActivityTypes.message, text=text, text_format="plain")


@dataclass(frozen=True)
class Target:
    """One Teams conversation to post in, its reference, and a line saying why it is here."""

    conversation: str
    reference: str
    notice: str = ""


def _gone(exc: Exception) -> bool:
    """The conversation or the message no longer exists, or the bot was removed from it."""
    if not isinstance(exc, HttpOperationError) or exc.response is None:
        return False
    return int(exc.response.status_code) in (403, 404)


class TeamsChannel:
    """Posts, updates and replies to approval cards in Teams (see the module docstring)."""

    name = CHANNEL

    def __init__(
        self,
        adapter: BotAdapter,
        settings: TeamsSettings,
        book: ConversationBook,
        people: TeamsPeople,
    ) -> None:
        self.adapter = adapter
        self.settings = settings
        self.book = book
        self.people = people
        self.bot: TeamsBot | None = None
        """The bot answering this channel's conversations (set by :func:`mount_teams`)."""

    # -- lifecycle (the adapter opens its HTTP sessions per call) -------------------------------

    async def start(self) -> None:
        """Nothing to open: botbuilder's connector clients are made per conversation."""

    async def stop(self) -> None:
        """Nothing to close."""

    # -- sending -------------------------------------------------------------------------------

    async def _continue(
        self, reference_json: str, logic: Callable[[TurnContext], Awaitable[None]]
    ) -> None:
        """Run ``logic`` in the conversation of ``reference_json`` (a proactive turn); what it
        raises is raised here as a :class:`ChannelError` (the adapter's ``on_turn_error`` would
        only log it)."""
        try:
            reference = ConversationReference().deserialize(json.loads(reference_json))
        except ValueError as exc:
            raise ChannelError(f"unreadable conversation reference: {exc}", gone=True) from None
        if not self.settings.trusts(str(reference.service_url or "")):
            # A reference changed in Redis must not take the bot's access token elsewhere.
            log.error("not sending to %r: not a Teams service URL (HITL_TEAMS_SERVICE_HOSTS)",
                      reference.service_url)  # fmt: skip
            raise ChannelError(f"{reference.service_url!r} is not a Teams service URL", gone=True)
        failed: list[Exception] = []

        async def guarded(turn: TurnContext) -> None:
            try:
                await logic(turn)
            except Exception as exc:  # botbuilder's HTTP and auth errors have no common base
                failed.append(exc)

        try:
            await self.adapter.continue_conversation(reference, guarded, self.settings.app_id)
        except Exception as exc:  # acquiring a token, opening the connector
            failed.append(exc)
        if failed:
            raise ChannelError(f"Teams refused it: {failed[0]}", gone=_gone(failed[0]))

    async def send(self, reference_json: str, activity: Activity) -> str:
        """Send ``activity`` in a conversation; returns the new activity's id."""
        sent: list[str] = []

        async def logic(turn: TurnContext) -> None:
            response = await turn.send_activity(activity)
            sent.append(str(response.id) if response is not None and response.id else "")

        await self._continue(reference_json, logic)
        if not sent or not sent[0]:
            raise ChannelError("Teams did not return the id of the message it posted")
        return sent[0]

    async def update(self, reference_json: str, activity_id: str, activity: Activity) -> None:
        """Replace the message ``activity_id`` in a conversation with ``activity``."""
        activity.id = activity_id

        async def logic(turn: TurnContext) -> None:
            await turn.update_activity(activity)

        await self._continue(reference_json, logic)

    async def _reference(self, conversation: str) -> str:
        try:
            reference = await asyncio.to_thread(self.book.reference, conversation)
        except HitlError as exc:
            raise ChannelError(str(exc)) from exc
        if reference is None:
            raise ChannelError(f"no stored reference for Teams conversation {conversation}",
                               gone=True)  # fmt: skip
        return reference

    # -- Channel protocol ----------------------------------------------------------------------

    async def post_card(
        self, record: RequestRecord, route: Route, notice: str = ""
    ) -> list[CardRef]:
        """Post the card in each conversation ``route`` means that has no copy yet."""
        have = {c.conversation for c in record.cards if c.channel == CHANNEL}
        refs: list[CardRef] = []
        for target in await self.targets(route):
            if target.conversation in have:
                continue
            line = " ".join(filter(None, [f"⏫ {notice}" if notice else "", target.notice]))
            card = approval_card(record, notice=line)
            try:
                message = await self.send(
                    target.reference, card_activity(card, record.request.title)
                )
            except ChannelError as exc:
                log.warning("card for %s not posted to %s: %s", record.id, target.conversation,
                            exc)  # fmt: skip
                continue
            refs.append(CardRef(channel=CHANNEL, conversation=target.conversation, message=message))
            have.add(target.conversation)
        return refs

    async def update_card(self, record: RequestRecord, ref: CardRef) -> None:
        """``update_activity`` of one copy with the card as the request stands."""
        reference = await self._reference(ref.conversation)
        activity = card_activity(approval_card(record), record.request.title)
        await self.update(reference, ref.message, activity)

    async def reply(self, record: RequestRecord, text: str, mention: Route | None = None) -> None:
        """A reply in each conversation that has a copy (in the card's thread in a channel),
        naming ``mention``'s people."""
        names = [self.people.name(p) for p in mention.people] if mention is not None else []
        said = text + (f" ({', '.join(dict.fromkeys(names))})" if names else "")
        seen: set[str] = set()
        for card in record.cards:
            if card.channel != CHANNEL or card.conversation in seen:
                continue
            seen.add(card.conversation)
            try:
                reference = await self._reference(card.conversation)
                await self.send(_in_thread(reference, card.message), text_activity(said))
            except ChannelError as exc:
                log.warning("reply for %s failed in %s: %s", record.id, card.conversation, exc)

    async def tell(self, route: Route, text: str) -> None:
        """A message (no card) to wherever ``route`` means now."""
        for target in await self.targets(route):
            try:
                await self.send(target.reference, text_activity(text))
            except ChannelError as exc:
                log.warning("message to %s failed: %s", target.conversation, exc)

    async def post_digest(
        self, digest: Digest, records: Mapping[str, RequestRecord | None], route: Route
    ) -> list[CardRef]:
        """Post the digest card where ``route`` means."""
        refs: list[CardRef] = []
        for target in await self.targets(route):
            card = digest_card(digest, records)
            try:
                message = await self.send(target.reference, card_activity(card, digest.dest))
            except ChannelError as exc:
                log.error("digest %s not posted to %s: %s", digest.id, target.conversation, exc)
                continue
            refs.append(CardRef(channel=DIGEST, conversation=target.conversation, message=message))
        return refs

    async def update_digest(
        self, ref: CardRef, digest: Digest, records: Mapping[str, RequestRecord | None]
    ) -> None:
        reference = await self._reference(ref.conversation)
        await self.update(reference, ref.message, card_activity(digest_card(digest, records)))

    # -- routing -------------------------------------------------------------------------------

    async def targets(self, route: Route) -> list[Target]:
        """The Teams conversations ``route`` means (see the module docstring)."""
        try:
            return await asyncio.to_thread(self._targets, route)
        except HitlError as exc:
            raise ChannelError(str(exc)) from exc

    def _targets(self, route: Route) -> list[Target]:
        dest = route.destination
        if dest is None or not dest.target:
            return self._default("")
        if dest.kind == "channel":
            name = route.conversation_in(CHANNEL)
            if name is None:  # another platform's channel: Teams shows it in its default place
                return self._default("")
            found = self._channel(name)
            if found is not None:
                return [found]
            return self._default(f"⚠️ Posted here: hitl knows no Teams channel {name!r}.")
        targets: list[Target] = []
        for person in dict.fromkeys(route.people):
            aad = self.people.teams_id(person)
            hit = self.book.find(user=aad) if aad else None
            if hit is not None:
                targets.append(Target(*hit))
        if targets:
            return targets
        return self._default(f"⚠️ Nobody in Teams is {route.where} right now.")

    def _channel(self, name: str) -> Target | None:
        hit = self.book.find(channel=name)
        if hit is not None:
            return Target(*hit)
        reference = self.book.reference(name)  # a conversation id
        return Target(name, reference) if reference is not None else None

    def _default(self, notice: str) -> list[Target]:
        default = self.settings.default_channel
        found = self._channel(default) if default else None
        if found is None:
            return []
        return [Target(found.conversation, found.reference, notice)]


def _in_thread(reference_json: str, message_id: str) -> str:
    """The reference of the thread under ``message_id`` in a team channel (unchanged in a chat)."""
    data = json.loads(reference_json)
    conversation = data.get("conversation") or {}
    if conversation.get("conversationType") == "channel" and message_id:
        base = str(conversation.get("id", "")).split(";", 1)[0]
        data["conversation"] = {**conversation, "id": f"{base};messageid={message_id}"}
    return json.dumps(data)
