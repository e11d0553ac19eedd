"""The ``/hitl`` slash command: pending, show, approve, reject, pause, resume, stop, stats,
oncall, help.

Every answer is ephemeral (only the caller sees it). Usage errors are answered in the
acknowledgement itself; anything that reads the store acknowledges first and answers through
``response_url``::

    /hitl pending                 requests you may decide, with buttons, 5 per page
    /hitl approve r-42 checked with the customer
    /hitl reject r-42 use the staging account
    /hitl pause support-bot it keeps refunding the same order
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from hitl.bot.cards import RISK_EMOJI, age_words, format_time
from hitl.bot.commands import USAGE, Parsed, help_text, parse
from hitl.bot.directory import reviewers_of
from hitl.bot.slack.blocks import card_blocks, card_text, esc, notice_blocks, pending_blocks
from hitl.bot.slack.channel import slack_user_id
from hitl.bot.slack.context import SlackContext
from hitl.bot.slack.payloads import SlashCommand
from hitl.errors import HitlError, NotFound, RefusedAttempt
from hitl.handlers import pending
from hitl.handlers.controls import CONTROL_USAGE, Overrides, control_command
from hitl.handlers.metrics import governance_of, stats, stats_lines
from hitl.models import Risk

__all__ = ["USAGE", "Parsed", "parse", "register", "run"]

log = logging.getLogger("hitl.slack")


def register(app: AsyncApp, ctx: SlackContext) -> None:
    """Attach the slash command listener to ``app``."""

    @app.command(ctx.settings.command)
    async def hitl_command(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        try:
            command = SlashCommand.model_validate(body)
        except ValidationError:
            await ack(text="hitl could not read this command.", response_type="ephemeral")
            return
        parsed = parse(command.text)
        if parsed.name in ("help", "unknown") or parsed.usage:
            text = parsed.usage
            if parsed.name in ("help", "unknown"):
                text = (text + "\n" if text else "") + help_text(ctx.settings.command)
            await ack(text=text, response_type="ephemeral")
            return
        await ack()
        await run(ctx, command, parsed, respond)


async def _say(
    respond: AsyncRespond,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    *,
    mrkdwn: bool = False,
) -> None:
    """An ephemeral answer. ``text`` is plain and escaped here, unless ``mrkdwn`` says it is
    already safe mrkdwn (escaped where it quotes anyone, with live mentions of hitl's own)."""
    md = text if mrkdwn else esc(text)
    await respond(text=md, blocks=blocks or notice_blocks(text), response_type="ephemeral")


async def run(
    ctx: SlackContext, command: SlashCommand, parsed: Parsed, respond: AsyncRespond
) -> None:
    """Carry out a parsed command and answer the caller."""
    reviewer = ctx.reviewer(command.user_id, command.user_name)
    try:
        if parsed.name == "pending":
            size = ctx.settings.page_size
            page = await ctx.run(
                lambda: pending(
                    ctx.store, reviewer_id=reviewer.user_id, authority=ctx.authority, limit=size
                )
            )
            blocks = pending_blocks(page.records, offset=0, total=page.total, page_size=size)
            await _say(respond, f"{page.total} pending requests you may decide", blocks)
        elif parsed.name == "show":
            record = await ctx.run(ctx.store.get, parsed.request_id)
            await _say(respond, card_text(record), card_blocks(record), mrkdwn=True)
        elif parsed.name == "approve":
            result = await ctx.run(ctx.decider.approve, parsed.request_id, reviewer, parsed.reason)
            await _say(respond, f":white_check_mark: `{parsed.request_id}`: {result.message}")
        elif parsed.name == "reject":
            result = await ctx.run(ctx.decider.reject, parsed.request_id, reviewer, parsed.reason)
            await _say(respond, f":no_entry_sign: `{parsed.request_id}`: {result.message}")
        elif parsed.name in CONTROL_USAGE:
            overrides = Overrides(ctx.store, ctx.authority, ctx.decider)
            text = await ctx.run(control_command, overrides, parsed.reason, reviewer)
            await _say(respond, f":octagonal_sign: {text}")
        elif parsed.name == "stats":
            await _say(respond, await stats_text(ctx, reviewer.user_id))
        elif parsed.name == "oncall":
            text = oncall_text(ctx)  # names escaped inside; the mentions must stay live
            await _say(
                respond,
                text,
                [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}],
                mrkdwn=True,
            )
    except (RefusedAttempt, NotFound) as exc:
        await _say(respond, f":no_entry: {exc}")
    except HitlError as exc:
        await _say(respond, f":warning: {exc}")


async def stats_text(ctx: SlackContext, reviewer_id: str) -> str:
    """What is waiting (by risk, the oldest, the next deadline) and the channel's counters."""
    records = await ctx.run(ctx.store.pending, 0, 0)
    mine = await ctx.run(
        lambda: pending(ctx.store, reviewer_id=reviewer_id, authority=ctx.authority, limit=1)
    )
    now = ctx.dispatcher.clock()
    by_risk = {risk: 0 for risk in Risk}
    for record in records:
        by_risk[record.verdict.risk] += 1
    lines = [f"*{len(records)} pending* ({mine.total} you may decide)"]
    lines.append(" · ".join(f"{RISK_EMOJI[r]} {r.value}: {n}" for r, n in by_risk.items()))
    if records:
        oldest = min(records, key=lambda r: r.created_at)
        age = age_words(now - oldest.created_at)
        lines.append(f"Oldest: `{oldest.id}`, waiting {age}")
        deadlines = [r.deadline for r in records if r.deadline is not None]
        if deadlines:
            lines.append(f"Next deadline: {format_time(min(deadlines))}")
    s, d = ctx.dispatcher.stats[ctx.channel.name], ctx.channel.delivery
    lines.append(
        f"Slack: {s.posted} cards posted ({ctx.channel.fallback_posts} to the fallback channel, "
        f"{ctx.dispatcher.backlog(ctx.channel.name)} waiting to be posted), {s.updated} updates, "
        f"{d.rate_limited} rate-limited calls, {d.retried} retries"
    )
    figures = await ctx.run(lambda: stats(ctx.store, governance=governance_of(ctx.authority)))
    lines.append("*Governance*")
    lines += [esc(line) for line in stats_lines(figures)[:-1]]  # the pending line is above
    return "\n".join(lines)


def oncall_text(ctx: SlackContext) -> str:
    """Who is on call now for each schedule of the policy (with a mention when in Slack)."""
    authority = ctx.authority
    config = getattr(authority, "config", None)
    schedules = getattr(config, "schedules", None)
    oncall = getattr(authority, "oncall", None)
    if not schedules or not callable(oncall):
        return "No on-call schedules: the policy in use has none."
    at = datetime.datetime.fromtimestamp(ctx.dispatcher.clock(), datetime.UTC)
    lines = [f"*On call now* ({format_time(at.timestamp())})"]
    for name in schedules:
        who = oncall(name, at)
        if who is None:
            lines.append(f"• {name}: nobody")
            continue
        directory = reviewers_of(authority)
        entry = directory.reviewer(who) if directory is not None else None
        label = esc(entry.display_name if entry is not None and entry.display_name else who)
        slack = slack_user_id(authority, who)
        mention = f" (<@{slack}>)" if slack else ""
        lines.append(f"• {name}: {label}{mention}")
    return "\n".join(lines)
