"""Slack through the dispatcher: routing, pacing, Retry-After, retries, the fallback channel, the
backlog, the sweep, card updates and escalation notices, against the Slack stand-in."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hitl.bot.slack.blocks import APPROVE
from hitl.config import Settings
from hitl.models import CardRef, Destination, Reviewer, State
from hitl.queue.scheduler import Notification, StreamSink
from hitl.queue.store import Store
from tests.bot.conftest import Factory, SlackHarness


def thread_replies(harness: SlackHarness) -> list[dict[str, Any]]:
    return [c.args for c in harness.slack.calls_to("chat.postMessage") if c.args.get("thread_ts")]


# -- routing -----------------------------------------------------------------------------------


async def test_channel_destination(harness: SlackHarness) -> None:
    """A medium request goes to the policy's channel; the card is recorded on the request."""
    record = await harness.submit_and_post()
    assert "#approvals" == harness.slack.cards_for(record.id)[0].args["channel"]
    assert ("slack", "CAPPROVALS") == (record.cards[0].channel, record.cards[0].conversation)


async def test_oncall_destination_is_a_dm(harness: SlackHarness) -> None:
    """A high request routed to the managers' on-call is DM'd to bob (conversations.open)."""
    record = await harness.submit_and_post(action="wire", params={"amount": 9000})
    opened = harness.slack.calls_to("conversations.open")
    assert "U0BOB" == opened[-1].args["users"]
    assert "DU0BOB" == record.cards[0].conversation


async def test_requester_alone_on_call_goes_to_the_default_channel(harness: SlackHarness) -> None:
    """bob asks and bob is the only manager on call: the card goes where others can see it."""
    record = await harness.submit_and_post(
        action="wire", params={"amount": 9000}, requested_by="U0BOB"
    )
    card = harness.slack.cards_for(record.id)[0]
    assert "#approvals" == card.args["channel"]
    assert [] == [c for c in harness.slack.calls_to("conversations.open")]


async def test_user_destination_is_a_dm(harness: SlackHarness) -> None:
    """``user:bob`` DMs bob by his Slack id from the directory."""
    record = await harness.submit_and_post(action="ask_bob")
    assert "DU0BOB" == record.cards[0].conversation


async def test_oncall_nobody_in_slack_goes_to_default_channel(harness: SlackHarness) -> None:
    """An on-call with no Slack user posts to the default channel, saying so."""
    record = await harness.submit_and_post(action="ping_frank")
    card = harness.slack.cards_for(record.id)[0]
    assert "#approvals" == card.args["channel"]
    assert "Nobody in Slack is oncall:nobody-in-slack" in json.dumps(card.args["blocks"])


# -- Slack's limits ----------------------------------------------------------------------------


async def test_posts_are_paced_per_channel(make_harness: Factory) -> None:
    """Five cards for one channel go out one per pace interval (after the burst)."""
    h = await make_harness(pace_interval_s=0.2, pace_burst=1)
    records = [await h.submit_request() for _ in range(5)]
    await h.slack.wait_for(lambda: all(h.store.get(r.id).cards for r in records), timeout=10)
    times = sorted(c.at for c in h.slack.posts("#approvals"))
    assert 5 == len(times)
    # Pace 0.2 s: four intervals after the first post. Measured over the whole run, not per
    # gap: on a loaded 2-core box one post can arrive late and the next one on time.
    assert times[-1] - times[0] >= 4 * 0.2 * 0.9


@pytest.mark.slow
async def test_429_storm_loses_no_card(make_harness: Factory) -> None:
    """5 s of 429s: every card is posted once, where it belongs, honouring Retry-After."""
    h = await make_harness()
    h.slack.rate_limit(5.0, retry_after=1)
    records = [await h.submit_request() for _ in range(20)]
    await h.slack.wait_for(
        lambda: all(h.store.get(r.id).cards for r in records), timeout=30, what="all cards"
    )
    for r in records:
        assert 1 == len(h.slack.cards_for(r.id))
        assert "CAPPROVALS" == h.store.get(r.id).cards[0].conversation
    assert [] == h.slack.posts("#hitl-fallback")
    limited = sorted(c.at for c in h.slack.rejected if c.status == 429)
    assert limited
    waves = [limited[0]]
    for at in limited[1:]:
        if at - waves[-1] > 0.3:
            waves.append(at)
    assert all(b - a >= 0.9 for a, b in zip(waves, waves[1:], strict=False))
    assert len(waves) <= 7


@pytest.mark.slow
async def test_calls_queued_by_the_pacer_wait_out_retry_after(make_harness: Factory) -> None:
    """A 429 (Retry-After: 3) while cards queue for one channel: nothing reaches
    chat.postMessage for 3 s after it (the stand-in flags early calls), and every card is
    posted once."""
    h = await make_harness(pace_interval_s=1.0, pace_burst=1)
    h.slack.slow(0.3)
    h.slack.rate_limit_once(3, methods={"chat.postMessage"})
    records = [await h.submit_request() for _ in range(4)]
    await h.slack.wait_for(
        lambda: all(h.store.get(r.id).cards for r in records), timeout=30, what="all cards"
    )
    assert [1, 1, 1, 1] == [len(h.slack.cards_for(r.id)) for r in records]
    assert 1 == len([c for c in h.slack.rejected if c.status == 429])
    answered, until = h.slack.throttled["chat.postMessage"]
    after = [c.at - answered for c in h.slack.calls_to("chat.postMessage") if c.at > answered]
    assert 4 == len(after)
    assert min(after) >= 3.0


async def test_server_errors_are_retried(harness: SlackHarness) -> None:
    """Three 500s in a row, then Slack recovers: the card is posted once, where it belongs."""
    harness.slack.fail(times=3, methods={"chat.postMessage"})
    record = await harness.submit_and_post()
    assert "CAPPROVALS" == record.cards[0].conversation
    assert 3 == len([c for c in harness.slack.rejected if c.status == 500])
    assert harness.channel.delivery.retried >= 3


async def test_refused_channel_goes_to_fallback(harness: SlackHarness) -> None:
    """A channel that refuses the card sends it to the fallback channel, with the reason."""
    harness.slack.refuse("#approvals")
    record = await harness.submit_and_post()
    assert "CHITLFALLBACK" == record.cards[0].conversation
    card = harness.slack.posts("#hitl-fallback")[0]
    assert "refused it (channel_not_found)" in json.dumps(card.args["blocks"])
    assert 1 == harness.channel.fallback_posts


async def test_failing_destination_after_retries_goes_to_fallback(make_harness: Factory) -> None:
    """A channel still failing after every retry: the fallback channel gets the card."""
    h = await make_harness(max_attempts=2)
    h.slack.refuse("#approvals", error="internal_error")
    record = await h.submit_and_post()
    assert "CHITLFALLBACK" == record.cards[0].conversation


async def test_nowhere_to_post_keeps_it_in_the_backlog(harness: SlackHarness) -> None:
    """Nowhere to post: the request stays pending, backlogged, posted once Slack accepts."""
    harness.slack.refuse("#approvals")
    harness.slack.refuse("#hitl-fallback")
    record = await harness.submit_request()
    await harness.slack.wait_for(lambda: harness.dispatcher.backlog("slack"), what="the backlog")
    assert State.PENDING == harness.store.get(record.id).state
    assert [] == harness.store.get(record.id).cards
    harness.slack._refused.clear()
    posted = await harness.slack.wait_for(lambda: harness.store.get(record.id).cards)
    assert "CAPPROVALS" == posted[0].conversation


async def test_sweep_posts_requests_without_a_card(harness: SlackHarness) -> None:
    """A pending request nobody posted (a crash) is found by the sweep and posted once."""
    harness.service.consumers[0].on_stored = None  # stored, then the process died
    record = await harness.submit_request()
    assert [] == harness.slack.cards_for(record.id)
    assert 1 == await harness.dispatcher.sweep()
    assert 0 == await harness.dispatcher.sweep()
    assert 1 == len(harness.slack.cards_for(record.id))


async def test_sweep_runs_at_start(make_harness: Factory, store: Store, settings: Settings) -> None:
    """Requests left without a card before the service started get their card at start."""
    first = await make_harness()
    first.service.consumers[0].on_stored = None
    record = await first.submit_request()
    await make_harness()
    await first.slack.wait_for(lambda: first.store.get(record.id).cards, what="the swept card")


# -- updates -----------------------------------------------------------------------------------


async def test_unchanged_card_is_not_updated_again(harness: SlackHarness) -> None:
    """update_cards skips copies that already show the current state (Slack's update budget)."""
    record = await harness.submit_and_post()
    await harness.dispatcher.update_cards(harness.store.get(record.id))
    await asyncio.sleep(0.3)
    assert [] == harness.slack.calls_to("chat.update")


async def test_card_decided_while_posting_is_corrected(harness: SlackHarness) -> None:
    """A decision that lands between rendering and recording the card still reaches the card."""
    harness.slack.slow(0.3)
    record = await harness.submit_request()
    who = Reviewer(user_id="carol", display_name="Carol Chen", channel="cli")
    await asyncio.sleep(0.1)
    await asyncio.to_thread(harness.service.decider.approve, record.id, who)
    harness.slack.slow(0.0)
    await harness.slack.wait_for(
        lambda: any(
            "Approved by Carol Chen" in json.dumps(c.args["blocks"])
            for c in harness.slack.calls_to("chat.update")
        ),
        what="the correcting update",
    )


# -- escalation --------------------------------------------------------------------------------


async def test_notify_replies_in_thread_and_dms_the_next_target(harness: SlackHarness) -> None:
    """Escalation: thread reply, DM copy to the target; a decision updates both copies."""
    record = await harness.submit_and_post()
    target = Destination(kind="oncall", target="managers")
    await harness.dispatcher.escalate(record, target, "Escalated: nobody answered in 10 minutes")
    reply = thread_replies(harness)[-1]
    assert record.cards[0].message == reply["thread_ts"]
    assert "<@U0BOB>" in reply["text"]
    dm = harness.slack.posts("DU0BOB")[-1]
    assert "Escalated: nobody answered" in json.dumps(dm.args["blocks"])
    cards = harness.store.get(record.id).cards
    assert {"CAPPROVALS", "DU0BOB"} == {c.conversation for c in cards}
    await harness.click(APPROVE, record.id, "U0BOB", "bob", channel="DU0BOB")
    await harness.slack.wait_for(
        lambda: (
            {c.args["channel"] for c in harness.slack.calls_to("chat.update")}
            >= {"CAPPROVALS", "DU0BOB"}
        ),
        what="both copies updated",
    )


async def test_scheduler_notifications_are_delivered(harness: SlackHarness) -> None:
    """Escalations and reminders from the notify stream reach the thread and the target."""
    record = await harness.submit_and_post()
    sink = StreamSink(harness.store)
    sink.send(
        Notification(
            kind="escalated",
            key=f"esc:{record.id}:1",
            request_id=record.id,
            level=1,
            target=Destination(kind="channel", target="#managers"),
            text="Escalated to you (level 1 of 2)",
        )
    )
    copy = await harness.slack.wait_for(lambda: harness.slack.posts("#managers"))
    assert "Escalated to you (level 1 of 2)" in json.dumps(copy[0].args["blocks"])
    assert record.cards[0].message == thread_replies(harness)[-1]["thread_ts"]
    sink.send(
        Notification(
            kind="reminder",
            key=f"remind:{record.id}:1",
            request_id=record.id,
            text="Reminder: still waiting",
        )  # fmt: skip
    )
    await harness.slack.wait_for(
        lambda: any("Reminder: still waiting" in r["text"] for r in thread_replies(harness))
    )


class BatchingStore(Store):
    """The real store, recording the size of each ``add_cards`` batch."""

    batches: list[int]

    def add_cards(self, items: Any, actor: str = "bot") -> list[str]:
        self.batches.append(len(items))
        return super().add_cards(items, actor)


async def test_cards_are_recorded_in_batches_when_the_store_can(harness: SlackHarness) -> None:
    """Cards are recorded many per Store.add_cards call; unknown ids are reported."""
    one = await harness.submit_and_post()  # their own cards are recorded before the swap
    two = await harness.submit_and_post()
    store = BatchingStore(
        harness.store.redis,
        signer=harness.store.signer,
    )
    store.batches = []
    harness.dispatcher.recorder.store = store
    ref = CardRef(channel="slack", conversation="C9", message="1.2")
    failed = await asyncio.to_thread(
        harness.dispatcher.recorder.record_batch,
        [(one.id, ref), (two.id, ref), ("r-gone", ref)],
        "slack",
    )
    assert [3] == store.batches
    assert ["", "", "no request 'r-gone'"] == failed
    assert ref in harness.store.get(two.id).cards
