"""The Slack implementation of :class:`hitl.bot.channel.Channel`: cards, replies and digests
in Slack, within Slack's limits.

The :class:`~hitl.bot.dispatch.Dispatcher` decides when and where (a
:class:`~hitl.bot.channel.Route`), records the copies, retries and sweeps; this class turns a
route into Slack conversations (a channel, or DMs opened with ``conversations.open`` for the
people an on-call or user destination means, by their Slack ids from the policy's directory) and
makes the Web API calls through :class:`~hitl.bot.slack.delivery.Caller` (pacing, ``Retry-After``,
back-off). A card its destination refuses goes to the fallback channel with the reason::

    channel = SlackChannel(client, authority, settings)
    await channel.start()                              # one HTTP session; checks the token
    refs = await channel.post_card(record, Route(Destination(kind="channel", target="#ops")))
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from hitl.bot.channel import Route, digest_ref_name
from hitl.bot.directory import reviewers_of
from hitl.bot.slack.blocks import (
    card_blocks,
    card_text,
    digest_blocks,
    digest_text,
    notice_blocks,
    notice_text,
)
from hitl.bot.slack.delivery import Caller, DeliveryError, DeliveryStats
from hitl.bot.slack.settings import SlackSettings
from hitl.handlers import Authority
from hitl.models import CardRef, RequestRecord
from hitl.queue.digest import Digest

__all__ = ["CHANNEL", "DIGEST", "SlackChannel", "Target", "slack_user_id"]

log = logging.getLogger("hitl.slack")

CHANNEL = "slack"
"""``CardRef.channel`` of the cards this channel posts."""
DIGEST = digest_ref_name(CHANNEL)
"""``CardRef.channel`` of a digest message that lists the request (updated like a card)."""
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")


def slack_user_id(authority: Authority, reviewer_id: str) -> str | None:
    """The Slack user id of a reviewer: from the policy's directory, or the id itself if it is
    one (``U0BOB``)."""
    directory = reviewers_of(authority)
    entry = directory.reviewer(reviewer_id) if directory is not None else None
    if entry is not None and entry.slack_id:
        return entry.slack_id
    return reviewer_id if _SLACK_USER.match(reviewer_id) else None


@dataclass(frozen=True)
class Target:
    """One Slack conversation to post in, and a line saying why it is here."""

    conversation: str
    notice: str = ""


class SlackChannel:
    """Posts, updates and replies to approval cards in Slack (see the module docstring)."""

    name = CHANNEL

    def __init__(
        self, client: AsyncWebClient, authority: Authority, settings: SlackSettings
    ) -> None:
        self.client = client
        self.authority = authority
        self.settings = settings
        self.caller = Caller(client, settings)
        self.fallback_posts = 0
        """Cards posted to the fallback channel because their destination refused them."""
        self._session: aiohttp.ClientSession | None = None
        self._warming: asyncio.Task[None] | None = None
        self._dms: dict[str, str] = {}
        self._channel_ids: dict[str, str] = {}
        self._identity: dict[str, Any] | None = None
        self._identity_lock = asyncio.Lock()
        self.bolt: AsyncApp | None = None
        """The Bolt app serving this channel (set by :func:`~hitl.bot.slack.mount_slack`)."""

    @property
    def delivery(self) -> DeliveryStats:
        return self.caller.stats

    async def whoami(self) -> dict[str, Any]:
        """The bot's identity (``auth.test``: ``team_id``, ``user_id``, ``bot_id``), cached.

        Fetched once, with the usual retries, so that a click never waits for it."""
        if self._identity is None:
            async with self._identity_lock:
                if self._identity is None:
                    data = await self.caller.call("auth.test")
                    self._identity = dict(data)
        return self._identity

    async def _warm_up(self) -> None:
        try:
            me = await self.whoami()
            log.info("Slack bot %s in team %s", me.get("user_id"), me.get("team_id"))
        except DeliveryError as exc:
            log.error("SLACK_BOT_TOKEN does not work (auth.test: %s); check the token", exc.error)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open one HTTP session for every call (the SDK opens one per call otherwise), share it
        with the Bolt app's listeners, and check the token in the background."""
        if self.client.session is None or self.client.session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s)
            )
            self.client.session = self._session
        if self.bolt is not None:
            self.bolt.client.session = self.client.session
        self._warming = asyncio.create_task(self._warm_up())

    async def stop(self) -> None:
        """Close the HTTP session this channel opened."""
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
            self._warming = None
        if self.bolt is not None:
            self.bolt.client.session = None
        if self._session is not None:
            await self._session.close()
            if self.client.session is self._session:
                self.client.session = None
            self._session = None

    # -- Channel protocol ----------------------------------------------------------------------

    async def post_card(
        self, record: RequestRecord, route: Route, notice: str = ""
    ) -> list[CardRef]:
        """Post the card in each conversation ``route`` means that has no copy yet (the fallback
        channel when it means none); ``notice`` (an escalation's text) goes on top."""
        targets = await self.targets(route)
        if not targets and self.settings.fallback_channel:
            targets = [Target(self.settings.fallback_channel)]
        have = {c.conversation for c in record.cards if c.channel == CHANNEL}
        refs: list[CardRef] = []
        for target in targets:
            if self._channel_ids.get(target.conversation, target.conversation) in have:
                continue
            lines = [f":arrow_double_up: {notice}" if notice else "", target.notice]
            ref = await self._post_one(record, target.conversation, "\n".join(filter(None, lines)))
            if ref is not None:
                refs.append(ref)
                have.add(ref.conversation)
        return refs

    async def update_card(self, record: RequestRecord, ref: CardRef) -> None:
        """``chat.update`` of one copy (raises :class:`DeliveryError`, ``gone`` when the message
        or its channel no longer exists)."""
        await self.caller.call(
            "chat.update",
            channel=ref.conversation,
            ts=ref.message,
            text=card_text(record),
            blocks=card_blocks(record),
        )

    async def reply(self, record: RequestRecord, text: str, mention: Route | None = None) -> None:
        """A reply under each posted copy of the card (one per conversation): ``text`` (which
        may quote the agent) escaped, then hitl's own mentions of ``mention``'s people."""
        people = [slack_user_id(self.authority, p) for p in mention.people] if mention else []
        mentions = " ".join(f"<@{p}>" for p in dict.fromkeys(people) if p)
        seen: set[str] = set()
        for card in record.cards:
            if card.channel != CHANNEL or card.conversation in seen:
                continue
            seen.add(card.conversation)
            try:
                await self.caller.call(
                    "chat.postMessage",
                    pace_key=card.conversation,
                    channel=card.conversation,
                    thread_ts=card.thread or card.message,
                    text=notice_text(text, mentions),
                    blocks=notice_blocks(text, mentions),
                )
            except DeliveryError as exc:
                log.warning("thread reply for %s failed: %s", record.id, exc)

    async def tell(self, route: Route, text: str) -> None:
        """A plain message (no card) to wherever ``route`` means now."""
        for t in await self.targets(route):
            try:
                await self.caller.call(
                    "chat.postMessage",
                    pace_key=t.conversation,
                    channel=t.conversation,
                    text=notice_text(text),
                    blocks=notice_blocks(text),
                )
            except DeliveryError as exc:
                log.warning("message to %s failed: %s", t.conversation, exc)

    async def post_digest(
        self, digest: Digest, records: Mapping[str, RequestRecord | None], route: Route
    ) -> list[CardRef]:
        """Post the digest message where ``route`` means (the fallback channel if nowhere)."""
        targets = await self.targets(route)
        if not targets and self.settings.fallback_channel:
            targets = [Target(self.settings.fallback_channel)]
        refs: list[CardRef] = []
        for target in targets:
            try:
                data = await self.caller.call(
                    "chat.postMessage",
                    pace_key=target.conversation,
                    channel=target.conversation,
                    text=digest_text(digest),
                    blocks=digest_blocks(digest, dict(records)),
                    unfurl_links=False,
                    unfurl_media=False,
                )
            except DeliveryError as exc:
                log.error("digest %s not posted to %s: %s", digest.id, target.conversation, exc)
                continue
            refs.append(CardRef(channel=DIGEST, conversation=str(data["channel"]),
                                message=str(data["ts"])))  # fmt: skip
        return refs

    async def update_digest(
        self, ref: CardRef, digest: Digest, records: Mapping[str, RequestRecord | None]
    ) -> None:
        await self.caller.call(
            "chat.update",
            channel=ref.conversation,
            ts=ref.message,
            text=digest_text(digest),
            blocks=digest_blocks(digest, dict(records)),
        )

    # -- routing -------------------------------------------------------------------------------

    async def targets(self, route: Route) -> list[Target]:
        """The Slack conversations ``route`` means: its channel, or DMs with its people who
        have a Slack id; the default channel (with a note) when that is nobody."""
        default = self.settings.default_channel or self.settings.fallback_channel
        if route.destination is None or not route.destination.target:
            return [Target(default)] if default else []
        if route.destination.kind == "channel":
            mine = route.conversation_in(CHANNEL)  # None: another platform's channel
            return [Target(mine)] if mine else [Target(default)] if default else []
        found = [slack_user_id(self.authority, p) for p in route.people]
        targets: list[Target] = []
        for user in dict.fromkeys(f for f in found if f):
            try:
                conversation = await self._open_dm(user)
            except DeliveryError as exc:
                log.warning("cannot open a DM with %s: %s", user, exc)
                continue
            targets.append(Target(conversation))
        if targets or not default:
            return targets
        return [Target(default, notice=f":warning: Nobody in Slack is {route.where} right now.")]

    async def _open_dm(self, user: str) -> str:
        known = self._dms.get(user)
        if known:
            return known
        data = await self.caller.call("conversations.open", users=user)
        conversation = str(data["channel"]["id"])
        self._dms[user] = conversation
        return conversation

    # -- posting -------------------------------------------------------------------------------

    async def _post_one(
        self, record: RequestRecord, conversation: str, notice: str
    ) -> CardRef | None:
        """Post one copy (to the fallback channel if ``conversation`` refuses it)."""
        fallback = self.settings.fallback_channel
        try:
            data = await self._post_message(record, conversation, notice)
        except DeliveryError as exc:
            log.warning("card for %s not posted to %s: %s", record.id, conversation, exc)
            if not fallback or fallback == conversation:
                return None
            why = f":warning: Posted here because {conversation} refused it ({exc.error})."
            try:
                data = await self._post_message(record, fallback, f"{notice}\n{why}".strip())
            except DeliveryError as again:
                log.error("card for %s not posted to the fallback channel: %s", record.id, again)
                return None
            self.fallback_posts += 1
        ref = CardRef(channel=CHANNEL, conversation=str(data["channel"]), message=str(data["ts"]))
        self._channel_ids[conversation] = ref.conversation
        return ref

    async def _post_message(self, record: RequestRecord, conversation: str, notice: str) -> Any:
        return await self.caller.call(
            "chat.postMessage",
            pace_key=conversation,
            channel=conversation,
            text=card_text(record),
            blocks=card_blocks(record, notice=notice),
            unfurl_links=False,
            unfurl_media=False,
        )
