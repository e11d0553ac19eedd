"""Modal submissions: Reject (with its required reason) and Modify (typed params).

What can be checked without the store's transaction is checked before acknowledging, so that the
reviewer sees the problem in the form itself (an empty reason, "not a number", a value the
``param_schema`` refuses, params changed by someone else since the form opened); the decision is
then made after the acknowledgement, and a refusal (already decided, not authorized) is told to
the reviewer in the conversation of the card. Nothing fails silently.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp

from hitl.bot.slack.blocks import (
    DIGEST_REJECT_VIEW,
    MODIFY_VIEW,
    REASON_BLOCK,
    REJECT_VIEW,
    VALUE,
    decided_line,
)
from hitl.bot.slack.context import SlackContext, params_hash
from hitl.bot.slack.modals import block_id, modify_fields, parse_modify, schema_errors
from hitl.bot.slack.payloads import ViewSubmission
from hitl.errors import HitlError, NotFound, RefusedAttempt
from hitl.handlers.batch import decide_digest
from hitl.handlers.decisions import MAX_REASON
from hitl.models import State

__all__ = ["on_digest_reject", "on_modify", "on_reject", "register"]

log = logging.getLogger("hitl.slack")


def register(app: AsyncApp, ctx: SlackContext) -> None:
    """Attach the modal listeners to ``app``."""

    @app.view(REJECT_VIEW)
    async def reject(ack: AsyncAck, body: dict[str, Any]) -> None:
        submission = _parse(body)
        if submission is None:
            await ack()
            return
        await on_reject(ctx, submission, ack)

    @app.view(MODIFY_VIEW)
    async def modify(ack: AsyncAck, body: dict[str, Any]) -> None:
        submission = _parse(body)
        if submission is None:
            await ack()
            return
        await on_modify(ctx, submission, ack)

    @app.view(DIGEST_REJECT_VIEW)
    async def digest_reject(ack: AsyncAck, body: dict[str, Any]) -> None:
        submission = _parse(body)
        if submission is None:
            await ack()
            return
        await on_digest_reject(ctx, submission, ack)


def _reason(submission: ViewSubmission) -> tuple[str, dict[str, str]]:
    """The typed reason, or the error to show on the reason input."""
    state = submission.values.get(REASON_BLOCK, {}).get(VALUE, {})
    reason = str(state.get("value") or "")
    if not reason.strip():
        return reason, {REASON_BLOCK: "Say why: the agent learns from it."}
    if len(reason) > MAX_REASON:
        return reason, {REASON_BLOCK: f"Keep it under {MAX_REASON} characters."}
    return reason, {}


def _parse(body: dict[str, Any]) -> ViewSubmission | None:
    try:
        submission = ViewSubmission.model_validate(body)
        submission.meta  # noqa: B018 - validates private_metadata now, not halfway through
        return submission
    except ValidationError as exc:
        log.warning("ignoring a view_submission hitl cannot read: %s", exc)
        return None


async def _refused(ctx: SlackContext, submission: ViewSubmission, text: str) -> None:
    await ctx.ephemeral(submission.meta.channel, submission.user.id, text)


async def on_reject(ctx: SlackContext, submission: ViewSubmission, ack: AsyncAck) -> None:
    """Reject with the reason typed in the modal."""
    state = submission.values.get(REASON_BLOCK, {}).get(VALUE, {})
    reason = str(state.get("value") or "")
    if not reason.strip():
        await ack(
            response_action="errors", errors={REASON_BLOCK: "Say why: the agent learns from it."}
        )
        return
    if len(reason) > MAX_REASON:
        await ack(
            response_action="errors",
            errors={REASON_BLOCK: f"Keep it under {MAX_REASON} characters."},
        )
        return
    await ack()
    reviewer = ctx.reviewer(submission.user.id, submission.user.label)
    await _attempt(ctx, submission, "Not rejected", ctx.decider.reject, submission.meta.id,
                   reviewer, reason)  # fmt: skip


async def on_modify(ctx: SlackContext, submission: ViewSubmission, ack: AsyncAck) -> None:
    """Approve with the params typed in the modal (validated against ``param_schema``)."""
    meta = submission.meta
    try:
        record = await ctx.run(ctx.store.find, meta.id)
    except HitlError as exc:
        await ack(response_action="errors", errors={REASON_BLOCK: f"Not modified: {exc}"})
        return
    if record is None:
        await ack(
            response_action="errors", errors={REASON_BLOCK: f"No request {meta.id} any more."}
        )
        return
    reviewer = ctx.reviewer(submission.user.id, submission.user.label)
    if record.state is not State.PENDING:
        # The form closes; the handler refuses the late attempt (audited) and we say who won.
        await ack()
        await _attempt(ctx, submission, "Not modified", ctx.precheck, meta.id, reviewer, "modify")
        return
    first = next((block_id(s) for s in modify_fields(record)), REASON_BLOCK)
    if meta.params_hash and meta.params_hash != params_hash(record.params):
        await ack(
            response_action="errors",
            errors={
                first: "Someone changed these parameters after you opened this form. Close it "
                "and click Modify again to see the current values."
            },
        )
        return
    changed, errors, reason = parse_modify(record, submission.values)
    errors = errors or schema_errors(record, changed)
    if not errors and len(reason) > MAX_REASON:
        errors = {REASON_BLOCK: f"Keep it under {MAX_REASON} characters."}
    if errors:
        await ack(response_action="errors", errors=errors)
        return
    await ack()
    result = await _attempt(
        ctx, submission, "Not modified", ctx.decider.modify, meta.id, reviewer, changed, reason
    )
    if result is None or result.decision is not None:
        return
    after = result.record.verdict
    if (after.risk, after.rule) != (record.verdict.risk, record.verdict.rule):
        await _refused(
            ctx,
            submission,
            f":arrows_counterclockwise: `{meta.id}`: your change moved it to {after.risk.value} "
            f"risk ({after.rule or 'no rule'}), so it goes back to review: "
            f"{decided_line(result.record)}.",
        )


async def _attempt(
    ctx: SlackContext, submission: ViewSubmission, failed: str, fn: Any, *args: Any
) -> Any:
    """Run a handler; tell the reviewer (only) why it was refused. None when refused."""
    try:
        return await ctx.run(fn, *args)
    except (RefusedAttempt, NotFound) as exc:
        await _refused(ctx, submission, f":no_entry: {failed}: {exc}")
    except HitlError as exc:
        await _refused(ctx, submission, f":warning: {failed}: {exc}")
    return None


async def on_digest_reject(ctx: SlackContext, submission: ViewSubmission, ack: AsyncAck) -> None:
    """ "Reject all" of a digest, with the reason typed in the modal."""
    reason, errors = _reason(submission)
    if errors:
        await ack(response_action="errors", errors=errors)
        return
    await ack()
    digests = ctx.digests
    if digests is None:
        return
    reviewer = ctx.reviewer(submission.user.id, submission.user.label)
    digest_id = submission.meta.digest_id
    batch = await _attempt(
        ctx,
        submission,
        "Nothing was rejected",
        lambda: decide_digest(
            ctx.decider, digests, digest_id, reviewer, approve=False, reason=reason
        ),
    )
    if batch is not None:
        await _refused(ctx, submission, f":no_entry_sign: {batch.message}")
