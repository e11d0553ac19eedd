"""Digests in Slack: bursts fold into one message with checkboxes; Approve selected, Approve all
and Reject all decide each request on its own; the digest message follows the decisions."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hitl.bot.slack.blocks import DIGEST_ALL, DIGEST_PICK, DIGEST_REJECT, DIGEST_SELECTED
from hitl.bot.slack.channel import DIGEST
from hitl.bot.slack.modals import DIGEST_REJECT_VIEW
from hitl.models import Outcome, RequestRecord, State
from tests.bot.conftest import Factory, SlackHarness
from tests.bot.slack_server import Call


def digest_posts(h: SlackHarness) -> list[Call]:
    return [c for c in h.slack.posts() if DIGEST_PICK in json.dumps(c.args.get("blocks"))]


def options(call: Call) -> list[str]:
    return [
        o["value"]
        for b in call.args["blocks"]
        if b["type"] == "actions" and b.get("block_id", "").startswith("pick:")
        for o in b["elements"][0]["options"]
    ]


def ticked(*ids: str) -> dict[str, Any]:
    return {"pick:0": {DIGEST_PICK: {"type": "checkboxes",
                                     "selected_options": [{"value": i} for i in ids]}}}  # fmt: skip


def told(h: SlackHarness) -> list[str]:
    out = [str(c.args.get("text", "")) for c in h.slack.responses()]
    return out + [str(c.args.get("text", "")) for c in h.slack.calls_to("chat.postEphemeral")]


async def posted_digest(h: SlackHarness, n: int) -> tuple[list[RequestRecord], Call]:
    """Submit ``n`` digest-eligible requests, post their digest, return them and its message."""
    records = [await h.submit_request(action="lookup", params={"q": f"q{i}"}) for i in range(n)]
    assert [] == [c for r in records for c in h.slack.cards_for(r.id)]
    digest = await asyncio.to_thread(h.service.digests.post, "channel:#approvals")
    assert digest is not None
    posts = await h.slack.wait_for(lambda: digest_posts(h), what="the digest message")
    return [h.store.get(r.id) for r in records], posts[0]


async def test_burst_beyond_the_pace_is_folded(
    make_harness: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond HITL_CHANNEL_PACE cards wait for a digest, and the sweep leaves them alone."""
    monkeypatch.setenv("HITL_CHANNEL_PACE", "2/60")
    h = await make_harness()
    records = [await h.submit_request() for _ in range(4)]
    await h.slack.wait_for(lambda: len(h.slack.posts()) >= 2)
    await asyncio.sleep(0.3)
    assert 2 == len(h.slack.posts())
    assert 0 == await h.dispatcher.sweep()
    assert [0, 0] == [len(h.store.get(r.id).cards) for r in records[2:]]


async def test_digest_message_lists_each_request_with_a_checkbox(harness: SlackHarness) -> None:
    """The digest has one checkbox per request and the three buttons; each request records it."""
    records, post = await posted_digest(harness, 3)
    assert sorted(r.id for r in records) == sorted(options(post))
    text = json.dumps(post.args["blocks"])
    for action in (DIGEST_SELECTED, DIGEST_ALL, DIGEST_REJECT, "Approve all 3"):
        assert action in text
    for r in records:
        refs = await harness.slack.wait_for(lambda r=r: harness.store.get(r.id).cards)
        assert DIGEST == refs[0].channel


async def test_approve_selected_then_reject_all(harness: SlackHarness) -> None:
    """Approve selected, then Reject all with a reason; the digest message follows."""
    records, post = await posted_digest(harness, 3)
    digest_id = next(
        e["value"]
        for b in post.args["blocks"]
        if b.get("block_id") == "hitl_digest_actions"
        for e in b["elements"]
    )
    first, second, third = records
    await harness.slack.wait_for(lambda: all(harness.store.get(r.id).cards for r in records))
    await harness.click(DIGEST_SELECTED, digest_id, "U0BOB", "bob", channel="CAPPROVALS",
                        state=ticked(first.id, second.id))  # fmt: skip
    said = await harness.slack.wait_for(lambda: told(harness), what="the batch answer")
    assert "2 approved" in said[0]
    assert State.APPROVED == harness.store.get(first.id).state
    assert State.PENDING == harness.store.get(third.id).state

    def updated_with(text: str) -> Call | None:
        hits = [c for c in harness.slack.calls_to("chat.update") if text in json.dumps(c.args)]
        return hits[-1] if hits else None

    update = await harness.slack.wait_for(lambda: updated_with("Approved by Bob Brown"))
    assert [third.id] == options(update)

    await harness.click(DIGEST_REJECT, digest_id, "U0BOB", "bob", channel="CAPPROVALS")
    opened = await harness.slack.wait_for(lambda: harness.slack.calls_to("views.open"))
    view = opened[0].args["view"]
    assert DIGEST_REJECT_VIEW == view["callback_id"]
    assert "Reject all 1" == view["title"]["text"]
    reason = {"reason": {"v": {"type": "plain_text_input", "value": "not needed"}}}
    await harness.submit(DIGEST_REJECT_VIEW, reason, view["private_metadata"], "U0BOB", "bob")
    decision = await harness.slack.wait_for(lambda: harness.store.get(third.id).decision)
    assert Outcome.REJECTED == decision.outcome and "not needed" == decision.reason
    await harness.slack.wait_for(lambda: updated_with("Every request in this digest"))


async def test_approve_all_is_per_request_and_authorized(harness: SlackHarness) -> None:
    """Approve all decides each request on its own: the requester's own is refused."""
    records = [
        await harness.submit_request(action="lookup", requested_by=who)
        for who in ("U0REQ", "dave", "U0REQ")
    ]
    digest = await asyncio.to_thread(harness.service.digests.post, "channel:#approvals")
    assert digest is not None
    await harness.slack.wait_for(lambda: digest_posts(harness))
    await harness.click(DIGEST_ALL, digest.id, "U0DAVE", "dave")
    said = await harness.slack.wait_for(lambda: told(harness))
    assert "2 approved" in said[0] and "1 refused" in said[0]
    assert State.PENDING == harness.store.get(records[1].id).state


async def test_approve_selected_needs_a_tick(harness: SlackHarness) -> None:
    """Nothing ticked: a hint, nothing decided."""
    records, _ = await posted_digest(harness, 2)
    digest_id = harness.service.digests.digest_of(records[0].id)
    assert digest_id is not None
    await harness.click(DIGEST_SELECTED, digest_id, "U0BOB", "bob", state=ticked())
    said = await harness.slack.wait_for(lambda: told(harness))
    assert "Tick the requests" in said[0]
    assert all(harness.store.get(r.id).state is State.PENDING for r in records)


async def test_forged_selection_decides_nothing(harness: SlackHarness) -> None:
    """A payload that ticks a request the digest does not list decides nothing."""
    records, _ = await posted_digest(harness, 2)
    other = await harness.submit_and_post()
    digest_id = harness.service.digests.digest_of(records[0].id)
    assert digest_id is not None
    await harness.click(DIGEST_SELECTED, digest_id, "U0BOB", "bob",
                        state=ticked(records[0].id, other.id))  # fmt: skip
    said = await harness.slack.wait_for(lambda: told(harness))
    assert "not in digest" in said[0]
    assert State.PENDING == harness.store.get(records[0].id).state
    assert State.PENDING == harness.store.get(other.id).state
