"""The dispatcher through its real entry points (the intake, ``hitl:events``, ``hitl:notify``),
with two channels that implement the ``Channel`` seam by keeping what they were asked to show."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from hitl.bot.channel import Channel, ChannelError, Route, digest_ref_name
from hitl.bot.dispatch import GROUP, LEGACY_GROUP, Dispatcher
from hitl.bot.recorder import CardRecorder
from hitl.config import Settings
from hitl.models import CardRef, Destination, RequestRecord, Reviewer, State
from hitl.queue.digest import Digest
from hitl.queue.scheduler import Notification, StreamSink
from hitl.queue.store import Store
from hitl.service import Service
from tests.bot.conftest import fast_dispatch, request_fields, slack_policy
from tests.scenarios.helpers import audit_entries, drain

T = TypeVar("T")
BOB = Reviewer(user_id="bob", display_name="Bob Brown", channel="cli")


@dataclass
class Recorder:
    """A channel with no platform behind it: it keeps every call, and refuses or fails when a
    test tells it to (``refusals`` posts answer nothing, ``update_errors`` are raised in turn)."""

    name: str
    posts: list[tuple[str, Route, str]] = field(default_factory=list)
    updates: list[tuple[str, str, State]] = field(default_factory=list)
    replies: list[tuple[str, str, Route | None]] = field(default_factory=list)
    told: list[tuple[Route, str]] = field(default_factory=list)
    digests: list[tuple[str, list[str], Route]] = field(default_factory=list)
    digest_updates: list[list[State | None]] = field(default_factory=list)
    refusals: int = 0
    refused: list[float] = field(default_factory=list)
    """When each refusal happened (monotonic)."""
    update_errors: list[ChannelError] = field(default_factory=list)
    running: bool = False
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False

    def _ref(self, kind: str, where: str) -> CardRef:
        return CardRef(channel=kind, conversation=where, message=f"m{next(self._ids)}")

    async def post_card(
        self, record: RequestRecord, route: Route, notice: str = ""
    ) -> list[CardRef]:
        if self.refusals:
            self.refusals -= 1
            self.refused.append(time.monotonic())
            return []
        where = route.conversation or ",".join(route.people) or "default"
        if any(c.channel == self.name and c.conversation == where for c in record.cards):
            return []
        self.posts.append((record.id, route, notice))
        return [self._ref(self.name, where)]

    async def update_card(self, record: RequestRecord, ref: CardRef) -> None:
        if self.update_errors:
            raise self.update_errors.pop(0)
        self.updates.append((record.id, ref.message, record.state))

    async def reply(self, record: RequestRecord, text: str, mention: Route | None = None) -> None:
        self.replies.append((record.id, text, mention))

    async def tell(self, route: Route, text: str) -> None:
        self.told.append((route, text))

    async def post_digest(
        self, digest: Digest, records: Mapping[str, RequestRecord | None], route: Route
    ) -> list[CardRef]:
        self.digests.append((digest.id, list(records), route))
        return [self._ref(digest_ref_name(self.name), route.conversation or "default")]

    async def update_digest(
        self, ref: CardRef, digest: Digest, records: Mapping[str, RequestRecord | None]
    ) -> None:
        self.digest_updates.append([r.state if r else None for r in records.values()])


async def eventually(predicate: Callable[[], T], what: str, within: float = 10.0) -> T:
    """Wait for ``predicate`` to hold (a positive signal), failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Rig:
    service: Service
    a: Recorder
    b: Recorder

    @property
    def store(self) -> Store:
        return self.service.store

    @property
    def dispatcher(self) -> Dispatcher:
        return self.service.dispatcher

    async def submit(self, **fields: Any) -> RequestRecord:
        """XADD a request and run the real intake once (it hands the record to the dispatcher)."""
        body = request_fields(**fields)
        self.store.redis.xadd(self.store.keys.requests, {"request": json.dumps(body)})
        await asyncio.to_thread(drain, self.service.consumers[0])
        return self.store.get(body["id"])

    async def carded(self, record: RequestRecord, n: int = 2) -> RequestRecord:
        """Wait until ``n`` copies of the card are recorded on the request."""

        def recorded() -> RequestRecord | None:
            now = self.store.get(record.id)
            return now if len(now.cards) >= n else None

        return await eventually(recorded, f"{n} recorded copies of {record.id}")


async def start_rig(settings: Settings, store: Store, **overrides: Any) -> Rig:
    service = Service(
        settings, store=store, authority=slack_policy(), dispatch=fast_dispatch(**overrides)
    )
    service.consumers[0].ensure_group()
    a, b = Recorder("alpha"), Recorder("beta")
    service.add_channel(a)
    service.add_channel(b)
    await service.dispatcher.start()
    return Rig(service, a, b)


@pytest.fixture
async def rig(settings: Settings, store: Store) -> AsyncIterator[Rig]:
    """A service with two recording channels, its dispatcher running."""
    rig = await start_rig(settings, store)
    try:
        yield rig
    finally:
        await rig.dispatcher.stop()
        for consumer in rig.service.consumers:
            consumer.close()


def test_recorder_is_a_channel() -> None:
    """The test double satisfies the Protocol (checked by mypy here)."""
    channel: Channel = Recorder("alpha")
    assert "alpha" == channel.name


async def test_every_channel_gets_the_card_and_every_copy_is_recorded(rig: Rig) -> None:
    """A stored request that needs people: a card in each channel, both copies on the request,
    each audited with the channel as the actor."""
    record = await rig.carded(await rig.submit())
    assert {"alpha", "beta"} == {c.channel for c in record.cards}
    assert [(record.id, "#approvals")] == [(i, r.conversation) for i, r, _ in rig.a.posts]
    posted = [e for e in audit_entries(rig.store.redis) if e["kind"] == "card_posted"]
    assert {"alpha", "beta"} == {e["actor"] for e in posted if e["request_id"] == record.id}
    assert 1 == rig.dispatcher.stats["alpha"].posted
    assert rig.a.running and rig.b.running


async def test_requests_that_need_nobody_get_no_card(rig: Rig) -> None:
    """An auto-approved request is not posted (only reviews are)."""
    record = await rig.submit()
    decided = record.model_copy(update={"state": State.APPROVED})
    assert [] == await rig.dispatcher.post_card(rig.a, decided)


async def test_route_resolves_people_without_the_requester(rig: Rig) -> None:
    """An on-call destination means the people on call now; the requester is left out."""
    record = await rig.carded(await rig.submit(action="wire", params={"amount": 9000}))
    route = rig.a.posts[0][1]
    assert ("bob",) == route.people and "oncall:managers" == route.where
    own = await rig.submit(action="wire", params={"amount": 1}, requested_by="U0BOB")
    assert () == rig.dispatcher.route(own.verdict.destination, "U0BOB").people
    assert record.cards


async def test_a_refused_card_waits_in_the_backlog_with_back_off(
    settings: Settings, store: Store
) -> None:
    """A channel that posts nothing: the card is backlogged and retried, later each time, until
    it is posted; the other channel is not held up."""
    rig = await start_rig(settings, store, backlog_retry_s=0.1)
    try:
        rig.a.refusals = 3
        record = await rig.submit()
        await rig.carded(record, 2)
        posted = time.monotonic()
        tries = [*rig.a.refused, posted]
        gaps = [b - a for a, b in zip(tries, tries[1:], strict=False)]
        assert 3 == len(rig.a.refused)
        assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4
        await eventually(lambda: rig.dispatcher.backlog() == 0, "the backlog emptied")
        assert 1 == len(rig.b.posts)
    finally:
        await rig.dispatcher.stop()
        rig.service.consumers[0].close()


async def test_a_change_re_renders_every_copy_once(rig: Rig) -> None:
    """A decision (from anywhere) updates each channel's copy; an unchanged record is not
    rendered again."""
    record = await rig.carded(await rig.submit())
    await asyncio.to_thread(rig.service.decider.approve, record.id, BOB)
    await eventually(lambda: rig.a.updates and rig.b.updates, "both copies updated")
    assert State.APPROVED == rig.a.updates[0][2]
    await rig.dispatcher.update_cards(rig.store.get(record.id))
    other = await rig.carded(await rig.submit())  # the stream has moved past the decision
    await asyncio.to_thread(rig.service.decider.approve, other.id, BOB)
    await eventually(lambda: len(rig.a.updates) == 2, "the other request's update")
    assert [record.id, other.id] == [u[0] for u in rig.a.updates]


async def test_failed_updates_are_retried_and_gone_copies_forgotten(rig: Rig) -> None:
    """An update that fails is tried again; one whose message is gone is not."""
    record = await rig.carded(await rig.submit())
    rig.a.update_errors = [ChannelError("timeout")]
    rig.b.update_errors = [ChannelError("message_not_found", gone=True)]
    await asyncio.to_thread(rig.service.decider.approve, record.id, BOB)
    await eventually(lambda: rig.a.updates, "the retried update")
    assert [] == rig.b.updates and [] == rig.b.update_errors


async def test_escalation_replies_and_brings_the_card_to_the_target(rig: Rig) -> None:
    """An escalation from the notify stream: a reply under the copies mentioning the target's
    people, and a copy (with the text on top) where the target is."""
    record = await rig.carded(await rig.submit())
    StreamSink(rig.store).send(
        Notification(
            kind="escalated",
            key=f"esc:{record.id}:1",
            request_id=record.id,
            level=1,
            target=Destination(kind="oncall", target="managers"),
            text="Escalated to you",
        )
    )
    await eventually(lambda: len(rig.store.get(record.id).cards) == 4, "the escalated copies")
    reply = rig.a.replies[0]
    assert "Escalated to you" == reply[1] and reply[2] is not None and ("bob",) == reply[2].people
    assert ("bob",) == rig.a.posts[-1][1].people and "Escalated to you" == rig.a.posts[-1][2]


async def test_reminders_reply_and_tell_the_target(rig: Rig) -> None:
    """A reminder replies under every copy and tells its target, in each channel."""
    record = await rig.carded(await rig.submit())
    await rig.dispatcher.deliver(
        Notification(
            kind="reminder",
            key="r1",
            request_id=record.id,
            text="Still waiting",
            target=Destination(kind="channel", target="#managers"),
        )
    )
    for channel in (rig.a, rig.b):
        assert [(record.id, "Still waiting", None)] == channel.replies
        assert "#managers" == channel.told[0][0].conversation
    assert 1 == rig.dispatcher.stats["beta"].notified


async def test_digest_is_posted_recorded_and_re_rendered_once(rig: Rig) -> None:
    """A digest goes to every channel, is recorded on each request it lists, and a batch of
    decisions re-renders it once per channel."""
    records = [await rig.submit(action="lookup", params={"q": str(i)}) for i in range(3)]
    digest = await asyncio.to_thread(rig.service.digests.post, "channel:#approvals")
    assert digest is not None
    await eventually(lambda: rig.a.digests and rig.b.digests, "the digest in both channels")
    assert sorted(r.id for r in records) == sorted(rig.a.digests[0][1])
    listed = await eventually(
        lambda: all(len(rig.store.get(r.id).cards) == 2 for r in records), "digest refs"
    )
    assert listed
    assert {"alpha-digest", "beta-digest"} == {
        c.channel for c in rig.store.get(records[0].id).cards
    }
    for r in records:
        await asyncio.to_thread(rig.service.decider.approve, r.id, BOB)
    await eventually(
        lambda: rig.a.digest_updates and State.PENDING not in rig.a.digest_updates[-1],
        "the digest showing every decision",
    )
    assert len(rig.a.digest_updates) <= 2  # debounced: not one render per decision


async def test_sweep_posts_only_where_a_card_is_missing(rig: Rig) -> None:
    """A pending request with a card in one channel only gets a card in the other."""
    rig.service.consumers[0].on_stored = None  # stored, then the process died
    record = await rig.submit()
    assert [] == record.cards
    refs = await rig.dispatcher.post_card(rig.a, record)
    assert 1 == len(refs)
    assert 1 == await rig.dispatcher.sweep()
    assert 0 == await rig.dispatcher.sweep()
    assert [record.id] == [p[0] for p in rig.b.posts]
    assert 1 == len(rig.a.posts)


async def test_sweep_at_start_posts_what_was_left(settings: Settings, store: Store) -> None:
    """Requests stored while no dispatcher ran get their cards when one starts."""
    idle = Service(settings, store=store, authority=slack_policy())
    idle.consumers[0].ensure_group()
    body = request_fields()
    store.redis.xadd(store.keys.requests, {"request": json.dumps(body)})
    await asyncio.to_thread(drain, idle.consumers[0])
    idle.consumers[0].close()
    rig = await start_rig(settings, store)
    try:
        await rig.carded(store.get(body["id"]))
        assert 1 == rig.dispatcher.stats["alpha"].swept
    finally:
        await rig.dispatcher.stop()
        rig.service.consumers[0].close()


async def test_new_group_starts_where_the_slack_group_stopped(
    settings: Settings, store: Store
) -> None:
    """Upgrading from the Slack channel's own group: a notification it had read is not
    delivered again, one it had not read is delivered."""
    sink = StreamSink(store)
    store.redis.xgroup_create(store.keys.notify, LEGACY_GROUP, id="$", mkstream=True)
    first = await start_rig(settings, store)  # a request with cards, for the notices
    record = await first.carded(await first.submit())
    await first.dispatcher.stop()
    first.service.consumers[0].close()
    store.redis.xgroup_destroy(store.keys.notify, GROUP)
    sink.send(Notification(kind="reminder", key="old", request_id=record.id, text="old"))
    store.redis.xreadgroup(LEGACY_GROUP, "slack-1", {store.keys.notify: ">"})
    sink.send(Notification(kind="reminder", key="new", request_id=record.id, text="new"))
    rig = await start_rig(settings, store)
    try:
        await eventually(lambda: rig.a.replies, "the unread notification")
        assert ["new"] == [text for _, text, _ in rig.a.replies]
    finally:
        await rig.dispatcher.stop()
        rig.service.consumers[0].close()


class BrokenStore(Store):
    """The real store, whose add_cards fails in a way nobody planned for."""

    def add_cards(self, items: Any, actor: str = "bot") -> list[str]:
        raise RuntimeError("disk on fire")


async def test_a_copy_that_cannot_be_recorded_does_not_hang_its_poster(store: Store) -> None:
    """An unexpected failure while recording: record() still returns (the copy is logged)."""
    recorder = CardRecorder(BrokenStore(store.redis, signer=store.signer))
    ref = CardRef(channel="alpha", conversation="c", message="m")
    await asyncio.wait_for(recorder.record([("r-1", ref)], "alpha"), 5)
