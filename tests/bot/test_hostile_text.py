"""Agent-supplied text never pings anyone: a hostile summary, reasoning, context, params and plan
go through every place the real Bolt app and channel put agent text into Slack (cards and their
updates, modals, ephemeral answers, digests, escalation/reminder/expiry notices, thread replies,
``/hitl pending`` and ``/hitl show``), and no recorded Web API call carries ``<!``, ``<@`` or
``<http`` from it, neither in ``text`` nor in blocks."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from hitl.bot.slack.blocks import (
    APPROVE,
    DIGEST_ALL,
    FULL,
    MODIFY,
    REJECT,
    REJECT_VIEW,
    card_text,
    notice_blocks,
    notice_text,
)
from hitl.models import Destination, State
from hitl.queue.scheduler import Notification
from tests.bot.conftest import SlackHarness
from tests.bot.slack_server import Call

HOSTILE = "<!channel> <!here> <@U0BOB> <https://evil.example|bank.com> <!subteam^S123> & <#C0X>"
LIVE = "<@U0CAROL>"
"""The one mention hitl itself makes in this test (the escalation target), which must stay live."""
UNSAFE = re.compile(r"<(?!!date\^)[!@#]|<https?:", re.IGNORECASE)
"""A live mention, broadcast or link (hitl's own ``<!date^...>`` timestamps aside)."""


def hostile_fields(**fields: Any) -> dict[str, Any]:
    return {
        "summary": f"Refund {HOSTILE}",
        "reasoning": f"Because {HOSTILE}",
        "context": {"user_request": HOSTILE, "ticket": HOSTILE},
        "params": {"order_id": HOSTILE, "amount": 250.0},
        "plan": [HOSTILE, {"description": HOSTILE, "action": "refund", "params": {"x": HOSTILE}}],
        **fields,
    }


PLAIN_KEYS = {"value", "initial_value", "private_metadata", "action_id", "block_id", "_token"}
"""Form values and ids: data handed back to hitl, never rendered as mrkdwn."""


def rendered(value: Any) -> list[str]:
    """The strings Slack would parse as mrkdwn: everything except ``plain_text`` objects (shown
    literally; Slack does not expand mentions there) and form values."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return rendered(json.loads(value))
        except json.JSONDecodeError:
            pass
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for v in value for t in rendered(v)]
    if isinstance(value, dict) and value.get("type") != "plain_text":
        return [t for k, v in value.items() if k not in PLAIN_KEYS for t in rendered(v)]
    return []


def unsafe(calls: list[Call]) -> list[str]:
    """Every recorded call whose mrkdwn carries an unescaped mention or link."""
    found = []
    for call in calls:
        for text in rendered(call.args):
            text = text.replace(LIVE, "")
            for hit in UNSAFE.finditer(text):
                found.append(f"{call.method}: ...{text[max(0, hit.start() - 60) : hit.end()]}")
    return found


def methods(h: SlackHarness) -> set[str]:
    return {c.method for c in h.slack.calls}


async def test_hostile_text_is_escaped_in_every_slack_call(harness: SlackHarness) -> None:
    """Card, update, modals, ephemerals, /hitl, digest, notices: nothing from the agent pings."""
    h = harness
    record = await h.submit_and_post(**hostile_fields())
    rid = record.id
    # modals: the full-text views, Reject and Modify
    for part in ("reasoning", "context", "params", "plan"):
        await h.click(FULL, f"{part}|{rid}", "U0DAVE")
    await h.click(REJECT, rid, "U0BOB", "bob")
    await h.click(MODIFY, rid, "U0BOB", "bob")
    await h.slack.wait_for(lambda: len(h.slack.calls_to("views.open")) >= 6, what="6 modals")
    # ephemeral answers: an unauthorized click, /hitl pending and /hitl show
    await h.click(APPROVE, rid, "U0MALLORY", "mallory")
    await h.command("pending", "U0BOB", "bob")
    await h.command(f"show {rid}", "U0BOB", "bob")
    await h.slack.wait_for(lambda: len(h.slack.responses()) >= 3, what="3 ephemeral answers")
    # escalation (thread reply + a copy to the target), reminder, expiry (a DM), as the
    # scheduler words them: they quote the summary
    title = h.store.get(rid).request.title
    for kind, target in (
        ("escalated", Destination(kind="user", target="carol")),
        ("reminder", None),
        ("expired", Destination(kind="user", target="carol")),
    ):
        notice = Notification(
            kind=kind, key=f"{kind}:{rid}", request_id=rid, level=1, target=target,
            text=f"{kind}: “{title}” is waiting for a decision",
        )  # fmt: skip
        await h.dispatcher.deliver(notice)
    # a rejection from the modal (a view submission), then the card's update
    view = h.slack.calls_to("views.open")[4].args["view"]
    assert REJECT_VIEW == view["callback_id"]
    reason = {"reason": {"v": {"type": "plain_text_input", "value": f"no {HOSTILE}"}}}
    await h.submit(REJECT_VIEW, reason, view["private_metadata"], "U0BOB", "bob")
    await h.slack.wait_for(lambda: h.store.get(rid).state is State.REJECTED)
    await h.slack.wait_for(lambda: h.slack.calls_to("chat.update"), what="the card's update")
    # a digest of hostile requests, and "Approve all" on it
    for i in range(2):
        fields = hostile_fields(action="lookup", params={"q": f"{HOSTILE}{i}"}, plan=[HOSTILE])
        await h.submit_request(**fields)
    digest = await asyncio.to_thread(h.service.digests.post, "channel:#approvals")
    assert digest is not None
    await h.slack.wait_for(lambda: len(h.slack.posts()) >= 2, what="the digest")
    await h.click(DIGEST_ALL, digest.id, "U0DAVE", "dave")
    await h.slack.wait_for(lambda: len(h.slack.responses()) >= 4, what="the batch answer")
    await h.slack.wait_for(lambda: len(h.slack.calls_to("chat.update")) >= 2, what="digest update")

    expected = {"chat.postMessage", "chat.update", "views.open", "response_url"}
    assert expected <= methods(h)
    assert any(c.args.get("thread_ts") for c in h.slack.calls_to("chat.postMessage"))
    assert any(LIVE in json.dumps(c.args) for c in h.slack.calls), "hitl's own mention is live"
    assert [] == unsafe(h.slack.calls), "\n".join(unsafe(h.slack.calls))
    assert any("&lt;!channel&gt;" in str(c.args.get("text")) for c in h.slack.posts())


def test_top_level_text_uses_the_blocks_escaping() -> None:
    """card_text and notices escape like the blocks; hitl's own mentions stay live."""
    assert "&lt;!channel&gt;" in notice_text(HOSTILE)
    assert notice_text("x <!here>", LIVE).endswith(f"x &lt;!here&gt; {LIVE}")
    assert notice_blocks("<!here>", LIVE)[0]["text"]["text"] == f"&lt;!here&gt; {LIVE}"
    from tests.bot.test_blocks import record as make_record

    text = card_text(make_record(summary=HOSTILE))
    assert not UNSAFE.search(text), text
