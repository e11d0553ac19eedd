"""``/hitl`` subcommands through the signed endpoint: answers, usage, authorization, paging."""

from __future__ import annotations

import asyncio
import json

import pytest

from hitl.bot.slack.blocks import PAGE
from hitl.bot.slack.commands import parse
from hitl.models import Outcome, State
from tests.bot.conftest import SlackHarness
from tests.scenarios.helpers import audit_kinds


async def answer(harness: SlackHarness, text: str, user: str = "U0BOB", name: str = "bob") -> str:
    """Send the command; return the text of its answer (the ack or the response_url post)."""
    before = len(harness.slack.responses())
    status, body = await harness.command(text, user, name)
    assert 200 == status
    if body:
        return str(json.loads(body)["text"])
    calls = await harness.slack.wait_for(
        lambda: harness.slack.responses()[before:], what=f"the answer to /hitl {text}"
    )
    assert "ephemeral" == calls[0].args["response_type"]
    return json.dumps(calls[0].args, ensure_ascii=False)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", "/hitl pending"),
        ("help", "/hitl oncall"),
        ("frobnicate", "Unknown subcommand `frobnicate`"),
        ("show", "Missing the request id"),
        ("approve", "Missing the request id"),
        ("reject r-1", "A rejection needs a reason"),
        ("stats now", "`stats` takes no arguments"),
    ],
)
async def test_usage_answers(harness: SlackHarness, text: str, expected: str) -> None:
    """help, an unknown subcommand or a missing argument is answered with usage at once."""
    status, body = await harness.command(text, "U0BOB", "bob")
    assert 200 == status
    answer = json.loads(body)
    assert "ephemeral" == answer["response_type"]
    assert expected in answer["text"]


def test_parse() -> None:
    """The command line splits into subcommand, id and free-text reason."""
    assert ("approve", "r-42", "looks fine to me") == (
        parse("approve r-42 looks fine to me").name,
        parse("approve r-42 looks fine to me").request_id,
        parse("approve r-42 looks fine to me").reason,
    )
    assert "reject" == parse("REJECT r-1 no").name


async def test_pending_lists_only_what_the_caller_may_decide(harness: SlackHarness) -> None:
    """Alice (standard) sees the medium request but not the manager-only one; bob sees both."""
    medium = await harness.submit_request()
    high = await harness.submit_request(action="wire", params={"amount": 9000})
    alice = await answer(harness, "pending", "U0ALICE", "alice")
    assert medium.id in alice and high.id not in alice
    bob = await answer(harness, "pending")
    assert medium.id in bob and high.id in bob
    assert "hitl_approve" in bob


async def test_pending_is_paginated(harness: SlackHarness) -> None:
    """7 requests, 5 a page: a Next button; clicking it replaces the list with the rest."""
    ids = {(await harness.submit_request()).id for _ in range(7)}
    first = await answer(harness, "pending")
    shown = {i for i in ids if i in first}
    assert 5 == len(shown)
    assert '"value": "5"' in first
    before = len(harness.slack.responses())
    await harness.click(PAGE, "5", "U0BOB", "bob", ephemeral=True)
    page = await harness.slack.wait_for(lambda: harness.slack.responses()[before:])
    assert page[0].args["replace_original"] is True
    rest = {i for i in ids if i in json.dumps(page[0].args)}
    assert ids - shown == rest


async def test_show(harness: SlackHarness) -> None:
    """``show ID`` answers with the card, privately."""
    record = await harness.submit_request(summary="Refund the lamp")
    assert "Refund the lamp" in await answer(harness, f"show {record.id}")
    assert "no request 'nope'" in await answer(harness, "show nope")


async def test_approve_and_reject_commands(harness: SlackHarness) -> None:
    """``approve ID reason`` and ``reject ID reason`` decide through the handlers."""
    one = await harness.submit_request()
    two = await harness.submit_request()
    assert "approved by Bob Brown" in await answer(harness, f"approve {one.id} checked the order")
    decision = harness.store.get(one.id).decision
    assert decision is not None and "checked the order" == decision.reason
    assert "rejected by Bob Brown" in await answer(harness, f"reject {two.id} duplicate refund")
    decision = harness.store.get(two.id).decision
    assert decision is not None and Outcome.REJECTED == decision.outcome


async def test_unauthorized_command_is_refused_and_audited(harness: SlackHarness) -> None:
    """Alice may not approve a manager-only request from the command line either."""
    record = await harness.submit_request(action="wire", params={"amount": 9000})
    text = await answer(harness, f"approve {record.id}", "U0ALICE", "alice")
    assert "manager" in text
    assert State.PENDING == harness.store.get(record.id).state
    assert "refused" in audit_kinds(harness.store.redis, record.id)


async def test_approve_a_decided_request_says_who_won(harness: SlackHarness) -> None:
    """A late approve names the earlier decision."""
    record = await harness.submit_request()
    await answer(harness, f"reject {record.id} no", "U0CAROL", "carol")
    assert "already rejected by Carol Chen (carol)" in await answer(harness, f"approve {record.id}")


async def test_stats(harness: SlackHarness) -> None:
    """``stats`` counts what is waiting, by risk, reports the channel's delivery, and gives the
    governance figures of ``hitl stats``."""
    await harness.submit_and_post()
    await harness.submit_and_post(action="wire", params={"amount": 1})
    text = await answer(harness, "stats")
    assert "2 pending" in text
    assert "medium: 1" in text and "high: 1" in text
    assert "cards posted" in text
    assert "approval rate (decided by people)" in text and "late answers: 0" in text


async def test_oncall(harness: SlackHarness) -> None:
    """``oncall`` names who is on call for each schedule, mentioning them when in Slack."""
    text = await answer(harness, "oncall")
    assert "managers: Bob Brown (<@U0BOB>)" in text
    assert "nobody-in-slack: Frank Foster" in text
    blocks = json.dumps(harness.slack.responses()[-1].args["blocks"])
    assert "(<@U0BOB>)" in blocks, "the mention in the blocks must stay a live mention"


async def test_command_answers_are_acknowledged_before_work(harness: SlackHarness) -> None:
    """A command that reads the store is acknowledged empty, answered via response_url."""
    await harness.submit_request()
    status, body = await harness.command("pending", "U0BOB", "bob")
    assert (200, "") == (status, body)
    await harness.slack.wait_for(lambda: harness.slack.responses())
    await asyncio.sleep(0)


async def test_pause_resume_and_stop_commands(harness: SlackHarness) -> None:
    """Any reviewer pauses; a stranger may not; resuming needs a manager; each is audited."""
    text = await answer(harness, "pause support-bot refunds in a loop", "U0ALICE", "alice")
    assert "Paused agent support-bot" in text
    assert "not a reviewer" in await answer(harness, "pause other-bot x", "U0NOBODY", "nobody")
    assert "needs the role manager" in await answer(harness, "resume support-bot", "U0ALICE")
    assert "Resumed agent support-bot" in await answer(harness, "resume support-bot", "U0BOB")
    assert "needs a reason" in await answer(harness, "stop chat-1", "U0BOB")
    assert "Stopped session chat-1" in await answer(harness, "stop chat-1 customer left", "U0BOB")
    kinds = [
        k for k in audit_kinds(harness.store.redis) if k.startswith("control_") or k == "refused"
    ]
    assert ["control_pause", "refused", "refused", "control_resume", "control_stop"] == kinds
    raw = harness.store.redis.get("hitl:control:agent:support-bot")
    assert '"kind":"resume"' in str(raw)
