"""The Slack implementation of :class:`hitl.bot.channel.Channel`: post, update, notify.

Where a card goes comes from the verdict: a channel (``channel:#ops``), or a DM to the people an
on-call schedule or a user destination means now (``conversations.open``). Every posted copy is
recorded on the request (``Store.add_card``) so that it can be updated later, whoever changes the
request: a background task reads the ``hitl:events`` stream through the consumer group ``slack``
and calls ``chat.update`` on every copy of each changed request. A second task delivers the
scheduler's escalations and reminders from ``hitl:notify`` (reply in the card's thread, DM the
next target with a copy of the card).

Nothing is lost: a card that cannot be posted where it belongs goes to the fallback channel with
the reason; one that cannot be posted anywhere is kept in a backlog and tried again, and a
periodic sweep posts any pending request that has no Slack card (after a crash, say)::

    channel = SlackChannel(client, store, authority, settings)
    await channel.start()                 # consumers, backlog and sweep (inside the event loop)
    refs = await channel.post_card(record)
    service.stored_hooks.append(channel.on_stored)    # called from the intake thread
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import hashlib
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from redis.exceptions import ResponseError
from slack_sdk.web.async_client import AsyncWebClient

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
from hitl.errors import HitlError
from hitl.handlers import Authority
from hitl.identity import canonical_id
from hitl.models import CardRef, Destination, RequestRecord, State, VerdictKind
from hitl.queue.digest import Digest, Digests
from hitl.queue.scheduler import dest_key
from hitl.queue.store import Store

__all__ = [
    "CHANNEL",
    "DIGEST",
    "GROUP",
    "ChannelStats",
    "SlackChannel",
    "Target",
    "fingerprint",
    "slack_user_id",
]

log = logging.getLogger("hitl.slack")

GROUP = "slack"
"""The consumer group this channel reads ``hitl:events`` and ``hitl:notify`` with."""
CHANNEL = "slack"
"""``CardRef.channel`` of the cards this channel posts."""
DIGEST = "slack-digest"
"""``CardRef.channel`` of a digest message that lists the request (updated like a card)."""
DIGEST_DEBOUNCE_S = 0.5
"""A batch decision changes many requests of one digest: its message is re-rendered once."""
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GONE = frozenset({"message_not_found", "channel_not_found", "cant_update_message", "is_archived"})
"""chat.update errors after which a copy is not worth updating again."""
_REMEMBER = 50_000


def slack_user_id(authority: Authority, reviewer_id: str) -> str | None:
    """The Slack user id of a reviewer: from the policy's directory, or the id itself if it is
    one (``U0BOB``)."""
    lookup = getattr(authority, "reviewer", None)
    if callable(lookup):
        entry = lookup(reviewer_id)
        slack_id = getattr(entry, "slack_id", None)
        if isinstance(slack_id, str) and slack_id:
            return slack_id
    return reviewer_id if _SLACK_USER.match(reviewer_id) else None


def fingerprint(record: RequestRecord) -> str:
    """Changes whenever what a card shows changes (everything but the list of cards)."""
    raw = record.model_dump_json(exclude={"cards"})
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class Target:
    """One place to post a card: a channel id or name, and a line saying why it is here."""

    conversation: str
    notice: str = ""
    people: tuple[str, ...] = ()
    """Slack user ids this target means (for mentions in thread replies)."""


@dataclass
class ChannelStats:
    posted: int = 0
    fallback: int = 0
    backlog: int = 0
    updated: int = 0
    notified: int = 0
    swept: int = 0
    digests: int = 0


class SlackChannel:
    """Posts, updates and notifies about approval cards in Slack (see the module docstring)."""

    name = CHANNEL

    def __init__(
        self,
        client: AsyncWebClient,
        store: Store,
        authority: Authority,
        settings: SlackSettings,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        digests: Digests | None = None,
    ) -> None:
        self.client = client
        self.digests = digests
        """Where the scheduler keeps digests (``service.digests``): needed to render and update
        digest messages and to leave folded requests to their digest."""
        self.store = store
        self.authority = authority
        self.settings = settings
        self.clock = clock
        self.caller = Caller(client, settings, sleep=sleep)
        self.stats = ChannelStats()
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._inflight: set[str] = set()
        self._posted: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._backlog: dict[str, float] = {}
        self._stale: set[str] = set()
        self._rendered: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._dms: dict[str, str] = {}
        self._channel_ids: dict[str, str] = {}
        self._posting = asyncio.Semaphore(64)
        self._identity: dict[str, Any] | None = None
        self._to_record: list[tuple[str, CardRef, asyncio.Future[None]]] = []
        self._dirty_digests: dict[tuple[str, str], str] = {}
        self._digest_task: asyncio.Task[None] | None = None
        self._recorder: asyncio.Task[None] | None = None
        self._identity_lock = asyncio.Lock()
        self.bolt: Any = None
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
        """Start the background work; call from inside the event loop that serves the app."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self.client.session is None or self.client.session.closed:
            # One connection pool for every call (the SDK opens one per call otherwise).
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s)
            )
            self.client.session = self._session
        await asyncio.to_thread(self._ensure_group, self.store.keys.events)
        self._tasks = [
            asyncio.create_task(self._warm_up()),
            asyncio.create_task(self._consume(self.store.keys.events, self._on_events)),
            asyncio.create_task(self._maintain()),
        ]
        if self.settings.consume_notifications:
            stream = f"{self.store.keys.prefix}notify"
            await asyncio.to_thread(self._ensure_group, stream)
            self._tasks.append(asyncio.create_task(self._consume(stream, self._on_notices)))

    async def stop(self) -> None:
        """Stop the background work and close the HTTP session this channel opened."""
        if self._stop is not None:
            self._stop.set()
        if self._digest_task is not None:
            self._tasks.append(self._digest_task)
            self._digest_task = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            if self.client.session is self._session:
                self.client.session = None
            self._session = None
        self._loop = None

    # -- Channel protocol ----------------------------------------------------------------------

    async def post_card(self, record: RequestRecord) -> list[CardRef]:
        """Post the card where the verdict routes it; returns the copies posted (recorded)."""
        if record.state is not State.PENDING or record.id in self._inflight:
            return []
        self._inflight.add(record.id)
        try:
            async with self._posting:
                refs = await self._post_routed(record)
        finally:
            self._inflight.discard(record.id)
        if refs:
            self._backlog.pop(record.id, None)
            self._remember_posted(record.id)
        else:
            self._backlog[record.id] = time.monotonic() + self.settings.backlog_retry_s
            self.stats.backlog = len(self._backlog)
            log.error(
                "card for %s could not be posted anywhere; it stays in the backlog", record.id
            )
        return refs

    async def update_cards(self, record: RequestRecord) -> None:
        """Re-render every Slack copy of the card (skipping copies that already show this)."""
        mark = fingerprint(record)
        blocks: list[dict[str, Any]] | None = None
        for card in record.cards:
            if card.channel == DIGEST:
                self._digest_changed(card, record.id)
            if card.channel != CHANNEL:
                continue
            key = (card.conversation, card.message)
            if self._rendered.get(key) == mark:
                continue
            if blocks is None:
                blocks = card_blocks(record)
            try:
                await self.caller.call(
                    "chat.update",
                    channel=card.conversation,
                    ts=card.message,
                    text=card_text(record),
                    blocks=blocks,
                )
            except DeliveryError as exc:
                if exc.error in _GONE:
                    log.info("card %s/%s is gone (%s)", card.conversation, card.message, exc)
                    self._remember(key, mark)
                else:
                    log.warning("could not update card of %s: %s", record.id, exc)
                    self._stale.add(record.id)
                continue
            self._remember(key, mark)
            self.stats.updated += 1

    async def notify(self, record: RequestRecord, target: Destination | None, text: str) -> None:
        """Tell ``target`` about ``record``: a reply in the thread of every posted copy, and a
        copy of the card (with ``text`` on top) in each place ``target`` means that has none."""
        requester = record.request.requested_by
        targets = await self.route(target, exclude=requester) if target is not None else []
        people = [p for t in targets for p in t.people]
        mention = " ".join(f"<@{p}>" for p in people)
        await self.reply_in_threads(record, text, mentions=mention)
        have = {c.conversation for c in record.cards if c.channel == CHANNEL}
        for t in targets:
            conversation = self._channel_ids.get(t.conversation, t.conversation)
            if conversation in have:
                continue
            notice = f":arrow_double_up: {text}" + (f"\n{t.notice}" if t.notice else "")
            ref = await self._post_one(record, t.conversation, notice)
            if ref is not None:
                have.add(ref.conversation)
        self.stats.notified += 1

    async def reply_in_threads(self, record: RequestRecord, text: str, mentions: str = "") -> None:
        """A reply under each posted copy of the card (one per conversation): ``text`` (which
        may quote the agent) escaped, then hitl's own ``mentions``."""
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

    async def tell(self, target: Destination | None, text: str) -> None:
        """A plain message (no card) to wherever ``target`` means now."""
        for t in await self.route(target):
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

    # -- intake hook ---------------------------------------------------------------------------

    def on_stored(self, records: list[RequestRecord]) -> None:
        """``service.stored_hooks`` entry: post cards for new pending requests (thread-safe).

        Called from the intake thread; the posting runs on the channel's event loop and the intake
        does not wait for Slack. Before ``start()`` (or after ``stop()``) nothing is posted here;
        the sweep posts those requests once the channel runs.
        """
        todo = [
            r for r in records if r.state is State.PENDING and r.verdict.kind is VerdictKind.REVIEW
        ]
        loop = self._loop
        if not todo or loop is None or loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.post_records(todo), loop)
        future.add_done_callback(_log_failure)

    async def post_records(self, records: Iterable[RequestRecord]) -> int:
        """Post cards for several requests at once; returns how many got at least one copy."""
        todo = [r for r in records if r.id not in self._posted]
        results = await asyncio.gather(*(self.post_card(r) for r in todo))
        return sum(1 for refs in results if refs)

    # -- routing -------------------------------------------------------------------------------

    async def route(
        self, destination: Destination | None, exclude: str | None = None
    ) -> list[Target]:
        """Where a destination means now: a channel, or the DMs of the people it resolves to.

        ``exclude`` (the requester) is left out of the people: a card DMed only to the person who
        asked, who may not approve it, would leave the request unseen by anyone who may.
        """
        default = self.settings.default_channel or self.settings.fallback_channel
        if destination is None or not destination.target:
            return [Target(default)] if default else []
        if destination.kind == "channel":
            return [Target(destination.target)]
        people = self._resolve(destination, exclude)
        targets: list[Target] = []
        for user in people:
            try:
                conversation = await self._open_dm(user)
            except DeliveryError as exc:
                log.warning("cannot open a DM with %s: %s", user, exc)
                continue
            targets.append(Target(conversation, people=(user,)))
        if targets:
            return targets
        where = f"{destination.kind}:{destination.target}"
        if not default:
            return []
        return [Target(default, notice=f":warning: Nobody in Slack is {where} right now.")]

    def _resolve(self, destination: Destination, exclude: str | None = None) -> list[str]:
        resolve = getattr(self.authority, "resolve", None)
        ids: list[str]
        if callable(resolve):
            at = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
            ids = list(resolve(destination, at))
        else:
            ids = [destination.target] if destination.kind == "user" else []
        if exclude:
            same = getattr(self.authority, "same_person", None)
            ids = [
                i
                for i in ids
                if not (
                    same(i, exclude) if callable(same) else canonical_id(i) == canonical_id(exclude)
                )
            ]
        found = [slack_user_id(self.authority, i) for i in ids]
        return list(dict.fromkeys(f for f in found if f))

    async def _open_dm(self, user: str) -> str:
        known = self._dms.get(user)
        if known:
            return known
        data = await self.caller.call("conversations.open", users=user)
        conversation = str(data["channel"]["id"])
        self._dms[user] = conversation
        return conversation

    # -- posting -------------------------------------------------------------------------------

    async def _post_routed(self, record: RequestRecord) -> list[CardRef]:
        targets = await self.route(record.verdict.destination, exclude=record.request.requested_by)
        have = {c.conversation for c in record.cards if c.channel == CHANNEL}
        refs: list[CardRef] = []
        if not targets:
            targets = (
                [Target(self.settings.fallback_channel)] if self.settings.fallback_channel else []
            )
        for target in targets:
            if self._channel_ids.get(target.conversation, target.conversation) in have:
                continue
            ref = await self._post_one(record, target.conversation, target.notice)
            if ref is not None:
                refs.append(ref)
        return refs

    async def _post_one(
        self, record: RequestRecord, conversation: str, notice: str
    ) -> CardRef | None:
        """Post one copy (to the fallback channel if ``conversation`` refuses it) and record it."""
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
            self.stats.fallback += 1
        ref = CardRef(channel=CHANNEL, conversation=str(data["channel"]), message=str(data["ts"]))
        self._channel_ids[conversation] = ref.conversation
        await self._add_card(record, ref)
        self.stats.posted += 1
        return ref

    async def _post_message(self, record: RequestRecord, conversation: str, notice: str) -> Any:
        blocks = card_blocks(record, notice=notice)
        data = await self.caller.call(
            "chat.postMessage",
            pace_key=conversation,
            channel=conversation,
            text=card_text(record),
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        self._remember((str(data["channel"]), str(data["ts"])), fingerprint(record))
        return data

    async def _add_card(self, record: RequestRecord, ref: CardRef) -> None:
        """Record where the card went. Cards are recorded one transaction after another by one
        worker: every ``add_card`` appends to the audit chain, so concurrent ones would only
        collide on its head and retry."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._to_record.append((record.id, ref, done))
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._record_cards())
        await done

    async def _record_cards(self) -> None:
        while self._to_record:
            batch, self._to_record = self._to_record[:200], self._to_record[200:]
            failed = await asyncio.to_thread(self._record_batch, [(i, r) for i, r, _ in batch])
            for (request_id, ref, done), error in zip(batch, failed, strict=True):
                if error:
                    log.error("card of %s posted at %s/%s but not recorded: %s", request_id,
                              ref.conversation, ref.message, error)  # fmt: skip
                if not done.done():
                    done.set_result(None)

    def _record_batch(self, items: list[tuple[str, CardRef]]) -> list[str]:
        """Record cards; ``""`` per item on success, else why not. Uses one transaction for the
        whole batch when the store offers ``add_cards`` (see docs/slack.md)."""
        add_cards = getattr(self.store, "add_cards", None)
        if callable(add_cards) and len(items) > 1:
            try:
                missing = set(add_cards(items, "slack"))
                return [f"no request {i!r}" if i in missing else "" for i, _ in items]
            except HitlError as exc:
                log.warning("recording %d cards at once failed (%s); one by one", len(items), exc)
        failed: list[str] = []
        for request_id, ref in items:
            error = ""
            for attempt in range(5):
                try:
                    self.store.add_card(request_id, ref, "slack")
                    error = ""
                    break
                except HitlError as exc:
                    error = str(exc)
                    time.sleep(0.1 * 2**attempt)
            failed.append(error)
        return failed

    def _remember(self, key: tuple[str, str], mark: str) -> None:
        self._rendered[key] = mark
        self._rendered.move_to_end(key)
        while len(self._rendered) > _REMEMBER:
            self._rendered.popitem(last=False)

    def _remember_posted(self, request_id: str) -> None:
        self._posted[request_id] = None
        while len(self._posted) > _REMEMBER:
            self._posted.popitem(last=False)

    # -- digests -------------------------------------------------------------------------------

    async def post_digest(self, digest: Digest) -> list[CardRef]:
        """Post a digest where its destination means now; record it on each request it lists
        (``CardRef.channel == "slack-digest"``) so that decisions re-render it."""
        records = await self._digest_records(digest)
        if not any(r is not None and r.state is State.PENDING for r in records.values()):
            return []
        refs: list[CardRef] = []
        targets = await self.route(digest.destination)
        if not targets and self.settings.fallback_channel:
            targets = [Target(self.settings.fallback_channel)]
        for target in targets:
            try:
                data = await self.caller.call(
                    "chat.postMessage",
                    pace_key=target.conversation,
                    channel=target.conversation,
                    text=digest_text(digest),
                    blocks=digest_blocks(digest, records),
                    unfurl_links=False,
                    unfurl_media=False,
                )
            except DeliveryError as exc:
                log.error("digest %s not posted to %s: %s", digest.id, target.conversation, exc)
                continue
            ref = CardRef(
                channel=DIGEST, conversation=str(data["channel"]), message=str(data["ts"])
            )
            self._remember((ref.conversation, ref.message), _digest_mark(records))
            await asyncio.gather(
                *(self._add_card(r, ref) for r in records.values() if r is not None)
            )
            refs.append(ref)
            self.stats.digests += 1
        if not refs:
            # The digest's requests are off the digest queue: give each its own card instead.
            pending = [r for r in records.values() if r is not None and r.state is State.PENDING]
            await self.post_records(pending)
        return refs

    async def _digest_records(self, digest: Digest) -> dict[str, RequestRecord | None]:
        ids = digest.request_ids
        found = await asyncio.to_thread(lambda: [self.store.find(i) for i in ids])
        return dict(zip(ids, found, strict=True))

    def _digest_changed(self, ref: CardRef, request_id: str) -> None:
        self._dirty_digests[(ref.conversation, ref.message)] = request_id
        if self._digest_task is None or self._digest_task.done():
            self._digest_task = asyncio.create_task(self._refresh_digests())

    async def _refresh_digests(self) -> None:
        await asyncio.sleep(DIGEST_DEBOUNCE_S)
        dirty, self._dirty_digests = self._dirty_digests, {}
        for (conversation, ts), request_id in dirty.items():
            try:
                await self._refresh_digest(conversation, ts, request_id)
            except (HitlError, DeliveryError) as exc:
                log.warning("digest message %s/%s not updated: %s", conversation, ts, exc)

    async def _refresh_digest(self, conversation: str, ts: str, request_id: str) -> None:
        if self.digests is None:
            return
        digests = self.digests
        digest_id = await asyncio.to_thread(digests.digest_of, request_id)
        if digest_id is None:
            return
        digest = await asyncio.to_thread(digests.get, digest_id)
        records = await self._digest_records(digest)
        mark = _digest_mark(records)
        if self._rendered.get((conversation, ts)) == mark:
            return
        await self.caller.call(
            "chat.update",
            channel=conversation,
            ts=ts,
            text=digest_text(digest),
            blocks=digest_blocks(digest, records),
        )
        self._remember((conversation, ts), mark)
        self.stats.updated += 1

    def _left_to_digest(self, record: RequestRecord) -> bool:
        """Folded into a digest (posted, or waiting for the next one): no card of its own."""
        if self.digests is None:
            return False
        if self.digests.digest_of(record.id) is not None:
            return True
        return record.id in self.digests.waiting(dest_key(record.verdict.destination))

    # -- background work -----------------------------------------------------------------------

    def _lock(self, request_id: str) -> asyncio.Lock:
        lock = self._locks.get(request_id)
        if lock is None:
            lock = self._locks[request_id] = asyncio.Lock()
        return lock

    async def refresh(self, request_id: str) -> None:
        """Update every copy of one request's card from its current record."""
        lock = self._lock(request_id)
        try:
            async with lock:
                record = await asyncio.to_thread(self.store.find, request_id)
                if record is not None:
                    await self.update_cards(record)
        finally:
            if not lock.locked() and self._locks.get(request_id) is lock:
                del self._locks[request_id]

    async def _on_events(self, entries: list[dict[str, str]]) -> None:
        # A request created by this change ("submitted") has no card yet: nothing to update.
        wanted = (e for e in entries if "submitted" not in e.get("kinds", "").split(","))
        ids = [i for i in dict.fromkeys(e.get("request_id", "") for e in wanted) if i]
        if not ids:
            return
        records = await asyncio.to_thread(lambda: [self.store.find(i) for i in ids])
        # Most events need nothing (the card this process just posted, say): read them all at
        # once and refresh (locked, re-read) only the requests some copy of which is behind.
        stale = [r.id for r in records if r is not None and self._behind(r)]
        await asyncio.gather(*(self.refresh(i) for i in stale))

    def _behind(self, record: RequestRecord) -> bool:
        mark = fingerprint(record)
        return any(
            c.channel == DIGEST or self._rendered.get((c.conversation, c.message)) != mark
            for c in record.cards
            if c.channel in (CHANNEL, DIGEST)
        )

    async def _on_notices(self, entries: list[dict[str, str]]) -> None:
        from hitl.queue.scheduler import Notification

        for fields in entries:
            try:
                notice = Notification.from_fields(fields)
            except ValueError as exc:
                log.error("unreadable notification %r: %s", fields, exc)
                continue
            await self.deliver(notice)

    async def deliver(self, notice: Any) -> None:
        """Deliver one scheduler :class:`~hitl.queue.scheduler.Notification`."""
        if notice.kind == "digest":
            await self.post_digest(Digest.model_validate(notice.data.get("digest") or {}))
            return
        if not notice.request_id:
            log.info("a %s notification without a request is not shown in Slack", notice.kind)
            return
        record = await asyncio.to_thread(self.store.find, notice.request_id)
        if record is None:
            return
        if notice.kind == "escalated":
            await self.notify(record, notice.target, notice.text)
            return
        if notice.thread:
            await self.reply_in_threads(record, notice.text)
        if notice.target is not None:
            await self.tell(notice.target, notice.text)
        self.stats.notified += 1

    async def _maintain(self) -> None:
        """Retry the backlog and stale cards, and sweep for pending requests without a card."""
        assert self._stop is not None
        next_sweep = 0.0
        # The first sweep is for what was left before this process started; later ones only for
        # requests older than sweep_min_age_s. Fresh requests belong to the intake's dispatcher,
        # which may still be folding them into a digest.
        started = self.clock()
        first = True
        tick = min(self.settings.backlog_retry_s, self.settings.sweep_s or 3600.0, 5.0)
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_sweep:
                    self.stats.swept += await self.sweep(
                        self.settings.sweep_min_age_s, created_before=started if first else None
                    )
                    first = False
                    next_sweep = now + (self.settings.sweep_s or float("inf"))
                due = [i for i, at in self._backlog.items() if at <= now]
                for request_id in due:
                    record = await asyncio.to_thread(self.store.find, request_id)
                    if record is None or record.state is not State.PENDING:
                        self._backlog.pop(request_id, None)
                        continue
                    await self.post_card(record)
                self.stats.backlog = len(self._backlog)
                stale, self._stale = self._stale, set()
                await asyncio.gather(*(self.refresh(i) for i in stale))
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive a Redis or Slack outage
                log.exception("slack maintenance failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=tick)

    async def sweep(self, min_age_s: float = 0.0, created_before: float | None = None) -> int:
        """Post cards for pending requests that have no Slack card and are older than
        ``min_age_s`` (and created before ``created_before``); returns how many were posted."""
        records = await asyncio.to_thread(self.store.pending, 0, 0)
        now = self.clock()
        todo = [
            r
            for r in records
            if r.verdict.kind is VerdictKind.REVIEW
            and not any(c.channel in (CHANNEL, DIGEST) for c in r.cards)
            and r.id not in self._inflight
            and now - r.created_at >= min_age_s
            and (created_before is None or r.created_at < created_before)
        ]
        if todo:
            folded = await asyncio.to_thread(lambda: [self._left_to_digest(r) for r in todo])
            todo = [r for r, skip in zip(todo, folded, strict=True) if not skip]
        if not todo:
            return 0
        log.info("posting %d pending requests that have no Slack card", len(todo))
        results = await asyncio.gather(*(self.post_card(r) for r in todo))
        return sum(1 for refs in results if refs)

    # -- stream consumption --------------------------------------------------------------------

    def _ensure_group(self, stream: str) -> None:
        try:
            self.store.redis.xgroup_create(stream, GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read(self, stream: str, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        reply = self.store.redis.xreadgroup(
            GROUP, self.consumer, {stream: ">"}, count=200, block=block_ms
        )
        return _entries(reply)

    def _claim(self, stream: str) -> list[tuple[str, dict[str, str]]]:
        reply = self.store.redis.xautoclaim(
            stream, GROUP, self.consumer, min_idle_time=60_000, start_id="0-0", count=200
        )
        raw = reply[1] if isinstance(reply, list | tuple) and len(reply) > 1 else []
        return [(_text(i), _fields(f)) for i, f in raw if f]

    def _ack(self, stream: str, ids: list[str]) -> None:
        if ids:
            self.store.redis.xack(stream, GROUP, *ids)

    async def _consume(
        self, stream: str, handle: Callable[[list[dict[str, str]]], Awaitable[None]]
    ) -> None:
        assert self._stop is not None
        next_claim = 0.0
        while not self._stop.is_set():
            try:
                batch: list[tuple[str, dict[str, str]]] = []
                if time.monotonic() >= next_claim:
                    batch = await asyncio.to_thread(self._claim, stream)
                    next_claim = time.monotonic() + 30.0
                if not batch:
                    batch = await asyncio.to_thread(self._read, stream, 250)
                if batch:
                    await handle([fields for _, fields in batch])
                    await asyncio.to_thread(self._ack, stream, [i for i, _ in batch])
            except asyncio.CancelledError:
                raise
            except Exception:  # keep consuming through a Redis outage
                log.exception("reading %s failed", stream)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=1.0)


def _digest_mark(records: dict[str, RequestRecord | None]) -> str:
    marks = ",".join(fingerprint(r) if r is not None else "-" for r in records.values())
    return hashlib.blake2b(marks.encode(), digest_size=12).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in dict(raw).items()}


def _entries(reply: Any) -> list[tuple[str, dict[str, str]]]:
    """XREADGROUP's reply (RESP2 list or RESP3 dict) as ``[(id, fields)]``."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    out: list[tuple[str, dict[str, str]]] = []
    for _name, messages in streams:
        for entry_id, fields in messages or []:
            if fields is not None:  # an entry deleted while pending
                out.append((_text(entry_id), _fields(fields)))
    return out


def _log_failure(future: Any) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.error("posting cards failed: %s", exc, exc_info=exc)
