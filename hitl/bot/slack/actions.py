"""Button clicks: Approve, Reject, Modify, the "full text" buttons and ``/hitl pending`` paging.

Every listener acknowledges first (Slack wants an answer within 3 seconds), then calls the
handler off the event loop. The card itself is never edited here: the change goes through the
store, and :class:`~hitl.bot.dispatch.Dispatcher` re-renders every posted copy from the
``hitl:events`` stream, so a click, a CLI approval and an escalation all look the same. A refused
click (not authorized, already decided, a second vote) changes nothing, is audited by the
handler, and the clicker alone is told why.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from hitl.bot.slack.blocks import (
    APPROVE,
    DIGEST_ALL,
    DIGEST_PICK,
    DIGEST_REJECT,
    DIGEST_SELECTED,
    FULL,
    MODIFY,
    PAGE,
    PARTS,
    REJECT,
    SHOW,
    card_blocks,
    card_text,
    esc,
    pending_blocks,
)
from hitl.bot.slack.context import Attempt, SlackContext, params_hash
from hitl.bot.slack.modals import digest_reject_view, full_text_view, modify_view, reject_view
from hitl.bot.slack.payloads import BlockAction, CardMeta
from hitl.errors import HitlError, NotFound, RefusedAttempt
from hitl.handlers import pending
from hitl.handlers.batch import decide_digest
from hitl.models import RequestRecord, State

__all__ = [
    "on_approve",
    "on_digest",
    "on_digest_reject",
    "on_full",
    "on_open_form",
    "on_page",
    "on_show",
    "register",
    "tell",
]

log = logging.getLogger("hitl.slack")


def register(app: AsyncApp, ctx: SlackContext) -> None:
    """Attach the button listeners to ``app``."""

    @app.action(APPROVE)
    async def approve(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        click = _parse(body)
        if click is not None:
            await on_approve(ctx, click, respond)

    @app.action(REJECT)
    async def reject(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        click = _parse(body)
        if click is not None:
            await on_open_form(ctx, click, "reject", respond, client)

    @app.action(MODIFY)
    async def modify(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        click = _parse(body)
        if click is not None:
            await on_open_form(ctx, click, "modify", respond, client)

    @app.action(FULL)
    async def full(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        click = _parse(body)
        if click is not None:
            await on_full(ctx, click, respond, client)

    @app.action(SHOW)
    async def show(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        click = _parse(body)
        if click is not None:
            await on_show(ctx, click, respond)

    @app.action(PAGE)
    async def page(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        click = _parse(body)
        if click is not None:
            await on_page(ctx, click, respond)

    @app.action(DIGEST_PICK)
    async def pick(ack: AsyncAck) -> None:
        await ack()  # ticking a checkbox decides nothing; the buttons read the ticks

    @app.action(DIGEST_SELECTED)
    async def digest_selected(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        click = _parse(body)
        if click is not None:
            await on_digest(ctx, click, respond, selected=click.selected(DIGEST_PICK))

    @app.action(DIGEST_ALL)
    async def digest_all(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        click = _parse(body)
        if click is not None:
            await on_digest(ctx, click, respond, selected=None)

    @app.action(DIGEST_REJECT)
    async def digest_reject(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        click = _parse(body)
        if click is not None:
            await on_digest_reject(ctx, click, respond, client)


def _parse(body: dict[str, Any]) -> BlockAction | None:
    try:
        return BlockAction.model_validate(body)
    except ValidationError as exc:
        log.warning("ignoring a block_actions payload hitl cannot read: %s", exc)
        return None


async def tell(respond: AsyncRespond, text: str) -> None:
    """An ephemeral answer to the clicker only; the message they clicked stays as it is.
    ``text`` is plain (it may quote a request): it is escaped here."""
    try:
        await respond(text=esc(text), response_type="ephemeral", replace_original=False)
    except Exception:  # the answer is a courtesy: a dead response_url must not fail the click
        log.warning("could not answer through response_url", exc_info=True)


async def on_approve(ctx: SlackContext, click: BlockAction, respond: AsyncRespond) -> None:
    """Approve (one vote under a two-person rule); refusals are told to the clicker."""
    reviewer = ctx.reviewer(click.user.id, click.user.label)
    request_id = click.action.value
    try:
        result = await ctx.run(ctx.decider.approve, request_id, reviewer, "")
    except (RefusedAttempt, NotFound) as exc:
        await tell(respond, f":no_entry: {exc}")
        return
    except HitlError as exc:
        await tell(respond, f":warning: Not approved: {exc}")
        return
    if click.container.is_ephemeral:
        await tell(respond, f":white_check_mark: `{request_id}`: {result.message}")


async def on_open_form(
    ctx: SlackContext,
    click: BlockAction,
    attempt: Attempt,
    respond: AsyncRespond,
    client: AsyncWebClient,
) -> None:
    """Open the Reject or Modify modal, if the clicker may use it (else say why, audited)."""
    reviewer = ctx.reviewer(click.user.id, click.user.label)
    request_id = click.action.value
    try:
        record = await ctx.run(ctx.precheck, request_id, reviewer, attempt)
    except (RefusedAttempt, NotFound) as exc:
        await tell(respond, f":no_entry: {exc}")
        return
    except HitlError as exc:
        await tell(respond, f":warning: {exc}")
        return
    meta = CardMeta(
        id=record.id,
        channel=click.channel_id,
        ts=click.message_ts,
        params_hash=params_hash(record.params) if attempt == "modify" else "",
    ).dumps()
    view = reject_view(record, meta) if attempt == "reject" else modify_view(record, meta)
    await _open(client, click, view, respond, f"/hitl {attempt} {record.id}")


async def on_full(
    ctx: SlackContext, click: BlockAction, respond: AsyncRespond, client: AsyncWebClient
) -> None:
    """Show one shortened part of a card (reasoning, params, ...) whole, in a modal."""
    part, _, request_id = click.action.value.partition("|")
    if part not in PARTS:
        return
    record = await _find(ctx, request_id, respond)
    if record is None:
        return
    await _open(client, click, full_text_view(record, part), respond, f"/hitl show {record.id}")


async def _open(
    client: AsyncWebClient,
    click: BlockAction,
    view: dict[str, Any],
    respond: AsyncRespond,
    instead: str,
) -> None:
    try:
        await client.views_open(trigger_id=click.trigger_id, view=view)
    except SlackApiError as exc:
        log.warning("views.open failed: %s", exc)
        error = exc.response.get("error", "error") if exc.response is not None else "error"
        await tell(respond, f":warning: Slack would not open the form ({error}); try `{instead}`.")


async def _find(ctx: SlackContext, request_id: str, respond: AsyncRespond) -> RequestRecord | None:
    """The record, or None after telling the clicker why not (unknown id, store unreachable)."""
    try:
        record = await ctx.run(ctx.store.find, request_id)
    except HitlError as exc:
        await tell(respond, f":warning: {exc}")
        return None
    if record is None:
        await tell(respond, f"No request `{request_id}` (it may have been purged).")
    return record


async def on_show(ctx: SlackContext, click: BlockAction, respond: AsyncRespond) -> None:
    """The whole card, for the clicker only (from the ``/hitl pending`` list)."""
    record = await _find(ctx, click.action.value, respond)
    if record is None:
        return
    await respond(
        text=card_text(record),
        blocks=card_blocks(record),
        response_type="ephemeral",
        replace_original=False,
    )


async def on_page(ctx: SlackContext, click: BlockAction, respond: AsyncRespond) -> None:
    """Another page of ``/hitl pending`` (replaces the list the clicker was looking at)."""
    try:
        offset = max(0, int(click.action.value))
    except ValueError:
        offset = 0
    reviewer = ctx.reviewer(click.user.id, click.user.label)
    size = ctx.settings.page_size
    try:
        page = await ctx.run(
            lambda: pending(
                ctx.store,
                reviewer_id=reviewer.user_id,
                authority=ctx.authority,
                offset=offset,
                limit=size,
            )
        )
    except HitlError as exc:
        await tell(respond, f":warning: {exc}")
        return
    await respond(
        text=f"{page.total} pending requests you may decide",
        blocks=pending_blocks(page.records, offset=offset, total=page.total, page_size=size),
        response_type="ephemeral",
        replace_original=True,
    )


async def on_digest(
    ctx: SlackContext, click: BlockAction, respond: AsyncRespond, *, selected: list[str] | None
) -> None:
    """ "Approve selected" / "Approve all N": one Decider call per request, each authorized and
    audited; the clicker is told what happened to each (the digest message is re-rendered)."""
    digests = ctx.digests
    if digests is None:
        await tell(respond, ":warning: Digests are not available in this service.")
        return
    if selected is not None and not selected:
        await tell(respond, "Tick the requests to approve first, then click *Approve selected*.")
        return
    reviewer = ctx.reviewer(click.user.id, click.user.label)
    try:
        batch = await ctx.run(
            lambda: decide_digest(
                ctx.decider, digests, click.action.value, reviewer, approve=True, selected=selected
            )
        )
    except HitlError as exc:
        await tell(respond, f":no_entry: Nothing was approved: {exc}")
        return
    await tell(respond, f":white_check_mark: {batch.message}")


async def on_digest_reject(
    ctx: SlackContext, click: BlockAction, respond: AsyncRespond, client: AsyncWebClient
) -> None:
    """ "Reject all": a modal asks for the reason every agent will get."""
    digests = ctx.digests
    if digests is None:
        await tell(respond, ":warning: Digests are not available in this service.")
        return
    try:
        digest = await ctx.run(digests.get, click.action.value)
    except HitlError as exc:
        await tell(respond, f":no_entry: {exc}")
        return
    try:
        records = await ctx.run(lambda: [ctx.store.find(i) for i in digest.request_ids])
    except HitlError as exc:
        await tell(respond, f":warning: {exc}")
        return
    waiting = sum(1 for r in records if r is not None and r.state is State.PENDING)
    if not waiting:
        await tell(respond, "Every request in this digest has been decided already.")
        return
    meta = CardMeta(id=digest.id, digest_id=digest.id, channel=click.channel_id).dumps()
    view = digest_reject_view(digest, waiting, meta)
    await _open(client, click, view, respond, "/hitl reject ID reason")
