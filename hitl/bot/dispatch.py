"""The channel-neutral dispatcher: what every channel needs, done once for all of them.

Each :class:`~hitl.bot.channel.Channel` (Slack today, Teams next) only renders and calls its
platform. The dispatcher, one per service, does the rest:

- new pending requests from the intake (:meth:`Dispatcher.on_stored`, thread-safe) get a card in
  every channel, where the verdict's destination means now (:meth:`Dispatcher.route`);
- every posted copy is recorded on the request (:class:`~hitl.bot.recorder.CardRecorder`:
  ``Store.add_cards``, batched by one worker);
- a card that could not be posted anywhere waits in a backlog and is tried again with back-off,
  and a sweep posts pending requests that have no card in a channel (after a crash, or a request
  stored by another process);
- changes (``hitl:events``) re-render every copy that does not show the current state yet, and a
  copy whose update failed is tried again; a digest message is re-rendered once per batch;
- notifications (``hitl:notify``): an escalation replies under every copy and brings the card to
  the next target, reminders and expiries reply and tell the target, digests are posted;
- notifier targets (email, SMS, PagerDuty, Jira) are handed to the ``outbox``
  (:class:`~hitl.bot.notify.Outbox`) at review, at each escalation and at the decision; it
  sends in its own tasks, so nothing here waits for a provider.

Both streams are read through one consumer group (``hitl-channels``) with
:class:`~hitl.queue.streams.GroupReader`, so with several replicas each entry is handled once::

    dispatcher = Dispatcher(store, [slack], authority=policy, digests=digests)
    await dispatcher.start()              # inside the event loop; starts the channels too
    dispatcher.on_stored(records)         # from the intake's thread
    await dispatcher.stop()
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import ResponseError

from hitl.bot.channel import Channel, ChannelError, Route, digest_ref_name
from hitl.bot.recorder import CardRecorder
from hitl.errors import ConfigError, HitlError
from hitl.identity import canonical_id
from hitl.models import CardRef, Destination, RequestRecord, State, VerdictKind
from hitl.queue.digest import Digest, Digests

if TYPE_CHECKING:
    from hitl.bot.notify import Outbox
from hitl.queue.scheduler import Notification, dest_key
from hitl.queue.store import Store
from hitl.queue.streams import Entry, GroupReader, consumer_name, follow

__all__ = [
    "GROUP",
    "LEGACY_GROUP",
    "DispatchSettings",
    "DispatchStats",
    "Dispatcher",
    "People",
    "fingerprint",
]

log = logging.getLogger("hitl.dispatch")

GROUP = "hitl-channels"
"""The consumer group the dispatcher reads ``hitl:events`` and ``hitl:notify`` with."""
LEGACY_GROUP = "slack"
"""The group the Slack channel read them with before: a new group starts where it stopped."""
DIGEST_DEBOUNCE_S = 0.5
"""A batch decision changes many requests of one digest: its message is re-rendered once."""
MAX_BACKLOG_WAIT_S = 300.0
_REMEMBER = 50_000


@runtime_checkable
class People(Protocol):
    """Who a destination means: the policy's directory and on-call rotations
    (:class:`hitl.policies.Policy` is one). Without it a ``user:`` destination means that id."""

    def resolve(self, destination: Destination, at: datetime.datetime) -> list[str]: ...

    def same_person(self, a: str, b: str) -> bool: ...


class DispatchSettings(BaseModel):
    """How often the dispatcher retries and sweeps. Immutable."""

    model_config = ConfigDict(frozen=True)

    backlog_retry_s: float = Field(default=15.0, gt=0.0)
    """First retry of a card that could not be posted anywhere; doubles up to 5 minutes."""
    sweep_s: float = Field(default=60.0, ge=0.0)
    """How often pending requests without a card are looked for (0: only at start)."""
    sweep_min_age_s: float = Field(default=30.0, ge=0.0)
    """A request younger than this is left to the normal posting path by the sweep."""
    notifications: bool = True
    """Deliver the scheduler's escalations, reminders and digests from ``<prefix>notify``."""
    concurrency: int = Field(default=64, gt=0)
    """Cards being posted at once (each channel paces its own calls)."""

    @classmethod
    def from_env(cls) -> DispatchSettings:
        """``HITL_CARD_SWEEP_S`` and ``HITL_CARD_SWEEP_MIN_AGE_S`` (seconds) over the defaults:
        a card that a ``hitl serve`` killed between storing a request and posting its card never
        posted appears after at most their sum (90 s by default)."""
        values: dict[str, float] = {}
        for name, field in (
            ("HITL_CARD_SWEEP_S", "sweep_s"),
            ("HITL_CARD_SWEEP_MIN_AGE_S", "sweep_min_age_s"),
        ):
            if text := os.environ.get(name):
                try:
                    values[field] = float(text)
                except ValueError:
                    raise ConfigError(f"{name} must be seconds, got {text!r}") from None
        return cls.model_validate(values)


@dataclass
class DispatchStats:
    """Per channel: what the dispatcher had it do."""

    posted: int = 0
    backlog: int = 0
    updated: int = 0
    notified: int = 0
    swept: int = 0
    digests: int = 0


@dataclass
class _Backlog:
    due: float
    attempts: int = 1


def fingerprint(record: RequestRecord) -> str:
    """Changes whenever what a card shows changes (everything but the list of cards)."""
    raw = record.model_dump_json(exclude={"cards"})
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


def _digest_mark(records: dict[str, RequestRecord | None]) -> str:
    marks = ",".join(fingerprint(r) if r is not None else "-" for r in records.values())
    return hashlib.blake2b(marks.encode(), digest_size=12).hexdigest()


class Dispatcher:
    """Posts, records, updates and notifies through every channel (see the module docstring).

    ``channels`` is shared with the caller (``Service.channels``): channels added before
    :meth:`start` take part.
    """

    def __init__(
        self,
        store: Store,
        channels: list[Channel],
        *,
        people: object = None,
        digests: Digests | None = None,
        settings: DispatchSettings | None = None,
        clock: Callable[[], float] = time.time,
        outbox: Outbox | None = None,
    ) -> None:
        self.store = store
        self.outbox = outbox
        """Where notifier targets go (None: they are not told)."""
        self.channels = channels
        self.people: People | None = people if isinstance(people, People) else None
        self.digests = digests
        """Where the scheduler keeps digests: to render digest messages and to leave requests
        folded into one to it."""
        self.settings = settings or DispatchSettings.from_env()
        self.clock = clock
        self.stats: dict[str, DispatchStats] = collections.defaultdict(DispatchStats)
        self.recorder = CardRecorder(store)
        """Writes posted copies onto their requests (many per transaction)."""
        self.consumer = consumer_name()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started: list[Channel] = []
        self._posting: asyncio.Semaphore | None = None
        self._inflight: set[tuple[str, str]] = set()
        self._posted: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self._backlog: dict[tuple[str, str], _Backlog] = {}
        self._stale: set[str] = set()
        self._rendered: collections.OrderedDict[tuple[str, str, str], str] = (
            collections.OrderedDict()
        )
        self._locks: dict[str, asyncio.Lock] = {}
        self._dirty_digests: dict[tuple[str, str, str], tuple[Channel, CardRef, str]] = {}
        self._digest_task: asyncio.Task[None] | None = None

    def channel(self, name: str) -> Channel | None:
        return next((c for c in self.channels if c.name == name), None)

    def backlog(self, channel: str | None = None) -> int:
        """Cards waiting to be posted (in ``channel``, or in all)."""
        return sum(1 for name, _ in self._backlog if channel is None or name == channel)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the channels and the background work (inside the serving event loop)."""
        if not self.channels and self.outbox is None:
            return
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._posting = asyncio.Semaphore(self.settings.concurrency)
        for channel in self.channels:
            await channel.start()
            self._started.append(channel)
        if self.outbox is not None:
            await self.outbox.start()
        keys = self.store.keys
        streams = [(keys.events, self._on_events)]
        if self.settings.notifications:
            streams.append((keys.notify, self._on_notices))
        for stream, handle in streams:
            reader = GroupReader(self.store.redis, stream, GROUP, consumer=self.consumer, start="$")
            await asyncio.to_thread(self._ensure_group, reader)
            self._tasks.append(asyncio.create_task(follow(reader, handle, self._stop)))
        # Now, not when the task first runs: what is stored from here on is the intake's to post.
        self._tasks.append(asyncio.create_task(self._maintain(started=self.clock())))

    def _ensure_group(self, reader: GroupReader) -> None:
        """Create the group where the Slack channel's own group stopped, if it had one, so that
        nothing queued during an upgrade is skipped."""
        try:
            groups: Any = self.store.redis.xinfo_groups(reader.stream)
        except ResponseError:  # no stream yet: ensure_group creates it
            groups = []
        for group in groups:
            if group.get("name") == LEGACY_GROUP and group.get("last-delivered-id"):
                reader.start = str(group["last-delivered-id"])
        reader.ensure_group()

    async def stop(self) -> None:
        """Stop the background work, then the channels."""
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
        if self.outbox is not None:
            await self.outbox.stop()
        for channel in reversed(self._started):
            try:
                await channel.stop()
            except Exception:  # one channel's failure must not keep the others open
                log.exception("stopping channel %s failed", channel.name)
        self._started = []
        self._loop = None

    # -- new requests --------------------------------------------------------------------------

    def on_stored(self, records: list[RequestRecord]) -> None:
        """Post cards for newly stored requests that need people (thread-safe; does not wait).

        Called from the intake's thread; the posting runs on the dispatcher's event loop. Before
        :meth:`start` (or after :meth:`stop`) nothing is posted here: the sweep posts those
        requests once the dispatcher runs.
        """
        todo = [
            r for r in records if r.state is State.PENDING and r.verdict.kind is VerdictKind.REVIEW
        ]
        loop = self._loop
        if not todo or loop is None or loop.is_closed():
            return
        future = asyncio.run_coroutine_threadsafe(self.post_records(todo), loop)
        future.add_done_callback(_log_failure)
        outbox = self.outbox
        for record in todo:
            if outbox is not None and record.verdict.notify:
                loop.call_soon_threadsafe(outbox.review, record)

    async def post_records(
        self, records: Iterable[RequestRecord], channels: Sequence[Channel] | None = None
    ) -> int:
        """Post cards for several requests in every channel (or in ``channels``); returns how
        many cards were posted somewhere."""
        todo = list(records)
        jobs = [
            self.post_card(channel, r)
            for channel in (self.channels if channels is None else channels)
            for r in todo
            if (channel.name, r.id) not in self._posted
        ]
        results = await asyncio.gather(*jobs)
        return sum(1 for refs in results if refs)

    async def post_card(
        self, channel: Channel, record: RequestRecord, route: Route | None = None, notice: str = ""
    ) -> list[CardRef]:
        """Post ``record``'s card in ``channel`` (where its destination means, or ``route``) and
        record the copies; nothing posted: it goes to the backlog."""
        key = (channel.name, record.id)
        if record.state is not State.PENDING or key in self._inflight:
            return []
        routed = route is None  # the card's own place (not an escalation's copy): backlog it
        self._inflight.add(key)
        try:
            if route is None:
                route = self.route(record.verdict.destination, record.request.requested_by)
            refs = await self._post(channel, record, route, notice)
        finally:
            self._inflight.discard(key)
        if refs:
            self._backlog.pop(key, None)
            self._posted[key] = None
            while len(self._posted) > _REMEMBER:
                self._posted.popitem(last=False)
        elif routed:
            late = self._backlog.get(key)
            attempts = late.attempts + 1 if late is not None else 1
            delay = min(MAX_BACKLOG_WAIT_S, self.settings.backlog_retry_s * 2 ** (attempts - 1))
            self._backlog[key] = _Backlog(time.monotonic() + delay, attempts)
            log.error(
                "card for %s could not be posted anywhere in %s; retrying in %.0fs",
                record.id,
                channel.name,
                delay,
            )
        self.stats[channel.name].backlog = self.backlog(channel.name)
        return refs

    async def _post(
        self, channel: Channel, record: RequestRecord, route: Route, notice: str
    ) -> list[CardRef]:
        assert self._posting is not None, "start() the dispatcher first"
        try:
            async with self._posting:
                refs = await channel.post_card(record, route, notice)
        except ChannelError as exc:
            log.warning("card for %s not posted in %s: %s", record.id, channel.name, exc)
            return []
        except Exception:  # an adapter's bug: the card goes to the backlog, the others go on
            log.exception("card for %s not posted in %s", record.id, channel.name)
            return []
        mark = fingerprint(record)
        for ref in refs:
            self._remember(ref, mark)
        await self.recorder.record([(record.id, ref) for ref in refs], channel.name)
        self.stats[channel.name].posted += len(refs)
        return refs

    # -- routing -------------------------------------------------------------------------------

    def route(self, destination: Destination | None, exclude: str | None = None) -> Route:
        """Where ``destination`` means now: a channel, or the people it resolves to (without
        ``exclude``, the requester)."""
        if destination is None or not destination.target or destination.kind == "channel":
            return Route(destination)
        if self.people is not None:
            at = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
            ids = list(self.people.resolve(destination, at))
        else:
            ids = [destination.target] if destination.kind == "user" else []
        if exclude:
            ids = [i for i in ids if not self._same(i, exclude)]
        return Route(destination, tuple(dict.fromkeys(ids)))

    def _same(self, a: str, b: str) -> bool:
        if self.people is not None:
            return self.people.same_person(a, b)
        return canonical_id(a) == canonical_id(b)

    # -- what each copy shows ------------------------------------------------------------------

    def _remember(self, ref: CardRef, mark: str) -> None:
        key = (ref.channel, ref.conversation, ref.message)
        self._rendered[key] = mark
        self._rendered.move_to_end(key)
        while len(self._rendered) > _REMEMBER:
            self._rendered.popitem(last=False)

    def _shows(self, ref: CardRef) -> str | None:
        return self._rendered.get((ref.channel, ref.conversation, ref.message))

    # -- updates -------------------------------------------------------------------------------

    def _owner(self, ref: CardRef) -> tuple[Channel, bool] | None:
        """The channel that posted ``ref``, and whether it is a digest message."""
        for channel in self.channels:
            if ref.channel == channel.name:
                return channel, False
            if ref.channel == digest_ref_name(channel.name):
                return channel, True
        return None

    async def update_cards(self, record: RequestRecord) -> None:
        """Re-render every posted copy that does not show ``record`` as it is yet."""
        mark = fingerprint(record)
        for ref in record.cards:
            owner = self._owner(ref)
            if owner is None:
                continue
            channel, is_digest = owner
            if is_digest:
                self._digest_changed(channel, ref, record.id)
                continue
            if self._shows(ref) == mark:
                continue
            try:
                await channel.update_card(record, ref)
            except ChannelError as exc:
                if exc.gone:
                    log.info("card %s/%s is gone (%s)", ref.conversation, ref.message, exc)
                    self._remember(ref, mark)
                else:
                    log.warning("could not update card of %s: %s", record.id, exc)
                    self._stale.add(record.id)
                continue
            self._remember(ref, mark)
            self.stats[channel.name].updated += 1

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

    async def _on_events(self, entries: list[Entry]) -> None:
        # A request created by this change ("submitted") has no card yet: nothing to update.
        wanted = (e.fields for e in entries)
        wanted = (f for f in wanted if "submitted" not in f.get("kinds", "").split(","))
        ids = [i for i in dict.fromkeys(f.get("request_id", "") for f in wanted) if i]
        if not ids:
            return
        records = await asyncio.to_thread(lambda: [self.store.find(i) for i in ids])
        if self.outbox is not None:
            for record in records:
                if record is not None and record.state is not State.PENDING:
                    self.outbox.decided(record)
        # Most events need nothing (the card this process just posted, say): read them all at
        # once and refresh (locked, re-read) only the requests some copy of which is behind.
        stale = [r.id for r in records if r is not None and self._behind(r)]
        await asyncio.gather(*(self.refresh(i) for i in stale))

    def _behind(self, record: RequestRecord) -> bool:
        mark = fingerprint(record)
        for ref in record.cards:
            owner = self._owner(ref)
            if owner is not None and (owner[1] or self._shows(ref) != mark):
                return True
        return False

    # -- notifications -------------------------------------------------------------------------

    async def _on_notices(self, entries: list[Entry]) -> None:
        for entry in entries:
            try:
                notice = Notification.from_fields(entry.fields)
            except ValueError as exc:
                log.error("unreadable notification %r: %s", entry.fields, exc)
                continue
            await self.deliver(notice)

    async def deliver(self, notice: Notification) -> None:
        """Deliver one scheduler notification through every channel."""
        if notice.kind == "digest":
            await self.post_digest(Digest.model_validate(notice.data.get("digest") or {}))
            return
        if not notice.request_id:
            log.info("a %s notification without a request is not shown in channels", notice.kind)
            return
        record = await asyncio.to_thread(self.store.find, notice.request_id)
        if record is None:
            return
        if notice.kind == "escalated":
            if self.outbox is not None and notice.level:
                self.outbox.escalated(record, notice.level, notice.text)
            await self.escalate(record, notice.target, notice.text)
            return
        route = self.route(notice.target) if notice.target is not None else None
        for channel in self.channels:
            try:
                if notice.thread:
                    await channel.reply(record, notice.text)
                if route is not None:
                    await channel.tell(route, notice.text)
            except ChannelError as exc:
                log.warning("%s notice for %s failed in %s: %s", notice.kind, record.id,
                            channel.name, exc)  # fmt: skip
                continue
            self.stats[channel.name].notified += 1

    async def escalate(self, record: RequestRecord, target: Destination | None, text: str) -> None:
        """Tell ``target`` about ``record``: a reply under every posted copy (mentioning the
        people ``target`` means), and a copy of the card, with ``text`` on top, in each place
        ``target`` means that has none."""
        route = self.route(target, record.request.requested_by) if target is not None else None
        for channel in self.channels:
            try:
                await channel.reply(record, text, mention=route)
            except ChannelError as exc:
                log.warning("thread reply for %s failed in %s: %s", record.id, channel.name, exc)
            if route is not None:
                await self.post_card(channel, record, route, notice=text)
            self.stats[channel.name].notified += 1

    # -- digests -------------------------------------------------------------------------------

    async def post_digest(self, digest: Digest) -> list[CardRef]:
        """Post a digest in every channel and record it on each request it lists, so that
        decisions re-render it. A channel that cannot post it posts each pending request's own
        card instead (they have left the digest queue)."""
        records = await self._digest_records(digest)
        if not any(r is not None and r.state is State.PENDING for r in records.values()):
            return []
        route = self.route(digest.destination)
        out: list[CardRef] = []
        for channel in self.channels:
            try:
                refs = await channel.post_digest(digest, records, route)
            except ChannelError as exc:
                log.error("digest %s not posted in %s: %s", digest.id, channel.name, exc)
                refs = []
            mark = _digest_mark(records)
            for ref in refs:
                self._remember(ref, mark)
            listed = [(rid, ref) for ref in refs for rid, r in records.items() if r is not None]
            await self.recorder.record(listed, channel.name)
            self.stats[channel.name].digests += len(refs)
            out += refs
            if not refs:
                pending = [
                    r for r in records.values() if r is not None and r.state is State.PENDING
                ]
                await self.post_records(pending, [channel])
        return out

    async def _digest_records(self, digest: Digest) -> dict[str, RequestRecord | None]:
        ids = digest.request_ids
        found = await asyncio.to_thread(lambda: [self.store.find(i) for i in ids])
        return dict(zip(ids, found, strict=True))

    def _digest_changed(self, channel: Channel, ref: CardRef, request_id: str) -> None:
        key = (ref.channel, ref.conversation, ref.message)
        self._dirty_digests[key] = (channel, ref, request_id)
        if self._digest_task is None or self._digest_task.done():
            self._digest_task = asyncio.create_task(self._refresh_digests())

    async def _refresh_digests(self) -> None:
        await asyncio.sleep(DIGEST_DEBOUNCE_S)
        dirty, self._dirty_digests = self._dirty_digests, {}
        for channel, ref, request_id in dirty.values():
            try:
                await self._refresh_digest(channel, ref, request_id)
            except HitlError as exc:
                log.warning("digest message %s/%s not updated: %s", ref.conversation,
                            ref.message, exc)  # fmt: skip

    async def _refresh_digest(self, channel: Channel, ref: CardRef, request_id: str) -> None:
        digests = self.digests
        if digests is None:
            return
        digest_id = await asyncio.to_thread(digests.digest_of, request_id)
        if digest_id is None:
            return
        digest = await asyncio.to_thread(digests.get, digest_id)
        records = await self._digest_records(digest)
        mark = _digest_mark(records)
        if self._shows(ref) == mark:
            return
        await channel.update_digest(ref, digest, records)
        self._remember(ref, mark)
        self.stats[channel.name].updated += 1

    def _folded(self, records: list[RequestRecord]) -> list[bool]:
        """Per record: folded into a digest (posted, or waiting for the next one), so no card
        of its own."""
        digests = self.digests
        if digests is None:
            return [False] * len(records)
        return [
            digests.digest_of(r.id) is not None
            or r.id in digests.waiting(dest_key(r.verdict.destination))
            for r in records
        ]

    # -- the backlog and the sweep -------------------------------------------------------------

    async def _maintain(self, started: float) -> None:
        """Retry the backlog and stale cards, and sweep for pending requests without a card."""
        assert self._stop is not None
        next_sweep = 0.0
        # The first sweep is for what was left before this process started; later ones only for
        # requests older than sweep_min_age_s. Fresh requests belong to the intake's path,
        # which may still be folding them into a digest.
        first = True
        tick = min(self.settings.backlog_retry_s, self.settings.sweep_s or 3600.0, 5.0)
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_sweep:
                    await self.sweep(
                        self.settings.sweep_min_age_s, created_before=started if first else None
                    )
                    first = False
                    next_sweep = now + (self.settings.sweep_s or float("inf"))
                await self._retry_backlog(now)
                stale, self._stale = self._stale, set()
                await asyncio.gather(*(self.refresh(i) for i in stale))
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive a Redis or channel outage
                log.exception("dispatcher maintenance failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=tick)

    async def _retry_backlog(self, now: float) -> None:
        due = [key for key, late in self._backlog.items() if late.due <= now]
        for name, request_id in due:
            channel = self.channel(name)
            record = await asyncio.to_thread(self.store.find, request_id)
            if channel is None or record is None or record.state is not State.PENDING:
                self._backlog.pop((name, request_id), None)
                continue
            await self.post_card(channel, record)
        for channel in self.channels:
            self.stats[channel.name].backlog = self.backlog(channel.name)

    async def sweep(self, min_age_s: float = 0.0, created_before: float | None = None) -> int:
        """Post cards for pending requests that have no card in a channel and are older than
        ``min_age_s`` (and created before ``created_before``); returns how many were posted.
        Requests nothing was ever sent about get their notifier targets told too (stored while
        no dispatcher ran)."""
        records = await asyncio.to_thread(self.store.pending, 0, 0)
        now = self.clock()
        candidates = [
            r
            for r in records
            if r.verdict.kind is VerdictKind.REVIEW
            and now - r.created_at >= min_age_s
            and (created_before is None or r.created_at < created_before)
        ]
        if self.outbox is not None:
            await self.outbox.catch_up(candidates)
        posted = 0
        for channel in self.channels:
            names = (channel.name, digest_ref_name(channel.name))
            todo = [
                r
                for r in candidates
                if not any(c.channel in names for c in r.cards)
                and (channel.name, r.id) not in self._inflight
            ]
            if todo:
                folded = await asyncio.to_thread(self._folded, todo)
                todo = [r for r, skip in zip(todo, folded, strict=True) if not skip]
            if not todo:
                continue
            log.info("posting %d pending requests that have no card in %s", len(todo),
                     channel.name)  # fmt: skip
            results = await asyncio.gather(*(self.post_card(channel, r) for r in todo))
            swept = sum(1 for refs in results if refs)
            self.stats[channel.name].swept += swept
            posted += swept
        return posted


def _log_failure(future: concurrent.futures.Future[int]) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if exc is not None:
        log.error("posting cards failed: %s", exc, exc_info=exc)
