"""The Teams bot: what a reviewer does in Teams, translated into handler calls.

- ``Action.Execute`` on a card (``adaptiveCard/action``): :meth:`TeamsBot.on_adaptive_card_invoke`
  approves, rejects or modifies through the one :class:`~hitl.handlers.Decider` and answers with
  the refreshed card; a refusal (not authorized, already decided, a second vote), a form error or
  an unknown request leaves the card as it is and tells the clicker why (a Universal Actions
  error response, shown to them alone); refusals are audited by the Decider. Every other copy is
  updated by the dispatcher from ``hitl:events``, as for a Slack click or the CLI.
- text messages: ``pending``, ``show ID``, ``approve ID [reason]``, ``reject ID reason``,
  ``help`` (the ``/hitl`` commands, parsed by :mod:`hitl.bot.commands`).
- every message, installation and conversation update stores the conversation's reference
  (:class:`~hitl.queue.conversations.ConversationBook`), so that cards can be posted there later.

The clicking user is Teams' authenticated ``from.aadObjectId``, mapped to a reviewer through the
directory's ``teams_id`` (:class:`~hitl.bot.teams.people.TeamsPeople`); nothing the card's data
says about who clicked is read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from botbuilder.core import TurnContext
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    AdaptiveCardInvokeResponse,
    AdaptiveCardInvokeValue,
)

from hitl.bot.cards import RISK_EMOJI
from hitl.bot.commands import USAGE, Parsed, parse
from hitl.bot.dispatch import Dispatcher
from hitl.bot.teams.cards import (
    APPROVE,
    APPROVE_ALL,
    MODIFY,
    REFRESH,
    REJECT,
    approval_card,
    digest_card,
    parse_action,
    request_id_of,
)
from hitl.bot.teams.channel import CARD_TYPE, card_activity, text_activity
from hitl.bot.teams.people import TeamsPeople
from hitl.errors import HitlError, InvalidRequest, NotFound, RefusedAttempt
from hitl.handlers import Decider, Result, pending
from hitl.handlers.batch import decide_digest
from hitl.handlers.controls import CONTROL_USAGE, Overrides, control_command
from hitl.models import RequestRecord, Reviewer
from hitl.queue.conversations import ConversationBook

__all__ = ["ERROR_TYPE", "TEAMS_COMMANDS", "TeamsBot", "TeamsContext", "help_text"]

log = logging.getLogger("hitl.teams")

T = TypeVar("T")
ERROR_TYPE = "application/vnd.microsoft.error"
TEAMS_COMMANDS = ("pending", "show", "approve", "reject", "pause", "resume", "stop", "help")
PAGE = 10
"""Requests listed by ``pending``."""


def help_text() -> str:
    """The commands the bot understands (write them to the bot, or mention it in a channel)."""
    lines = ["hitl - human approval for AI agents. Write to me:"]
    for name in TEAMS_COMMANDS:
        lines.append("• " + _for_teams(USAGE[name]))
    return "\n".join(lines)


@dataclass
class TeamsContext:
    """What the bot's handlers need: the decision path, the store (through it), the dispatcher
    (digests), where conversations are, and who Teams users are."""

    decider: Decider
    dispatcher: Dispatcher
    book: ConversationBook
    people: TeamsPeople
    tenant_id: str = ""
    """The app's tenant: activities from any other are ignored (empty: not checked, tests)."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a (synchronous, Redis-backed) handler off the event loop."""
        return await asyncio.to_thread(fn, *args)


def _card(card: dict[str, Any]) -> AdaptiveCardInvokeResponse:
    return AdaptiveCardInvokeResponse(status_code=200, type=CARD_TYPE, value=card)


def _error(message: str, code: str = "BadRequest") -> AdaptiveCardInvokeResponse:
    """Shown to the clicker alone; the card stays as it is."""
    return AdaptiveCardInvokeResponse(
        status_code=400, type=ERROR_TYPE, value={"code": code, "message": message[:1000]}
    )


class TeamsBot(TeamsActivityHandler):  # type: ignore[misc]  # botbuilder is untyped
    """The hitl bot in Teams (see the module docstring)."""

    def __init__(self, ctx: TeamsContext) -> None:
        super().__init__()
        self.ctx = ctx

    async def on_turn(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        tenant = _tenant_of(activity)
        if self.ctx.tenant_id and tenant != self.ctx.tenant_id:
            # A single-tenant app: nobody outside the tenant may click or register a chat.
            log.warning("ignoring a %s activity from tenant %r", activity.type, tenant)
            return
        if _places_the_bot(activity):
            await self._remember(activity)
        await super().on_turn(turn_context)

    # -- where the bot may post ----------------------------------------------------------------

    async def _remember(self, activity: Activity) -> None:
        """Store this conversation's reference, named after its user or its channel."""
        conversation = activity.conversation
        if conversation is None or not conversation.id:
            return
        reference = TurnContext.get_conversation_reference(activity)
        conversation_id = str(conversation.id).split(";", 1)[0]  # a thread: its channel
        data = reference.serialize()
        data["conversation"] = {**data.get("conversation", {}), "id": conversation_id}
        data.pop("activityId", None)
        kind = conversation.conversation_type or ""
        user = ""
        if kind == "personal" and activity.from_property is not None:
            user = activity.from_property.aad_object_id or ""
        channel = _channel_name(activity.channel_data, conversation_id) if kind == "channel" else ""
        try:
            await self.ctx.run(
                lambda: self.ctx.book.save(
                    conversation_id, json.dumps(data), user=user, channel=channel
                )
            )
        except HitlError as exc:  # the turn itself still works; the next message stores it
            log.warning("conversation %s not stored: %s", conversation_id, exc)

    # -- Action.Execute ------------------------------------------------------------------------

    def _clicker(self, turn_context: TurnContext) -> Reviewer:
        who = turn_context.activity.from_property
        aad = (who.aad_object_id or "") if who is not None else ""
        return self.ctx.people.reviewer(aad, (who.name or "") if who is not None else "")

    async def on_adaptive_card_invoke(
        self, turn_context: TurnContext, invoke_value: AdaptiveCardInvokeValue
    ) -> AdaptiveCardInvokeResponse:
        """Approve, reject, modify, refresh or "Approve all"; answers with the card as it now is,
        or with an error shown to the clicker alone (the card unchanged)."""
        action = invoke_value.action if isinstance(invoke_value.action, dict) else {}
        raw = action.get("data")
        data: dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
        data["verb"] = action.get("verb") or data.get("verb")
        reviewer = self._clicker(turn_context)
        if data["verb"] == APPROVE_ALL:
            return await self._approve_all(data, reviewer)
        try:
            request_id = request_id_of(data)
            record = await self.ctx.run(self.ctx.decider.store.find, request_id)
            if record is None:
                return _error(f"No request {request_id} (it may have been purged).", "NotFound")
            if data["verb"] == REFRESH:
                return _card(approval_card(record))
            parsed = parse_action(data, record)
            result = await self._decide(parsed.verb, record, reviewer, parsed.reason,
                                        parsed.params)  # fmt: skip
        except (RefusedAttempt, NotFound) as exc:
            return _error(f"Not done: {exc}", "Refused")
        except InvalidRequest as exc:
            return _error(str(exc), "BadRequest")
        except HitlError as exc:
            return _error(f"Not done: {exc}", "Unavailable")
        return _card(approval_card(result.record))

    async def _decide(
        self,
        verb: str,
        record: RequestRecord,
        reviewer: Reviewer,
        reason: str,
        params: dict[str, Any],
    ) -> Result:
        decider = self.ctx.decider
        if verb == APPROVE:
            return await self.ctx.run(decider.approve, record.id, reviewer, reason)
        if verb == REJECT:
            return await self.ctx.run(decider.reject, record.id, reviewer, reason)
        if verb == MODIFY:
            return await self.ctx.run(decider.modify, record.id, reviewer, params, reason)
        raise InvalidRequest(f"unknown card action {verb!r}")

    async def _approve_all(
        self, data: dict[str, Any], reviewer: Reviewer
    ) -> AdaptiveCardInvokeResponse:
        digests = self.ctx.dispatcher.digests
        digest_id = data.get("digest_id")
        if digests is None or not isinstance(digest_id, str) or not digest_id:
            return _error("This card carries no digest hitl knows.", "BadRequest")
        try:
            batch = await self.ctx.run(
                lambda: decide_digest(self.ctx.decider, digests, digest_id, reviewer, approve=True)
            )
            digest = await self.ctx.run(digests.get, digest_id)
            found = await self.ctx.run(
                lambda: [self.ctx.decider.store.find(i) for i in digest.request_ids]
            )
        except HitlError as exc:
            return _error(f"Nothing was approved: {exc}", "Refused")
        if not batch.decided:
            return _error(batch.message, "Refused")
        return _card(digest_card(digest, dict(zip(digest.request_ids, found, strict=True))))

    # -- text commands -------------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        """``pending``, ``show ID``, ``approve ID [reason]``, ``reject ID reason``, ``help``."""
        text = TurnContext.remove_recipient_mention(turn_context.activity) or ""
        parsed = parse(text)
        said = ""
        if parsed.name in ("help", "unknown"):
            said = (f"{parsed.usage}\n" if parsed.usage else "") + help_text()
        elif parsed.name not in TEAMS_COMMANDS:
            said = f"'{parsed.name}' is for the Slack command or the CLI (hitl {parsed.name})."
        elif parsed.usage:
            said = _for_teams(parsed.usage)
        if said:
            await turn_context.send_activity(text_activity(said))
            return
        reviewer = self._clicker(turn_context)
        try:
            answer = await self._command(parsed, reviewer)
        except (RefusedAttempt, NotFound) as exc:
            answer = text_activity(f"⛔ {exc}")
        except HitlError as exc:
            answer = text_activity(f"⚠️ {exc}")
        await turn_context.send_activity(answer)

    async def _command(self, parsed: Parsed, reviewer: Reviewer) -> Activity:
        store = self.ctx.decider.store
        if parsed.name in CONTROL_USAGE:
            overrides = Overrides(store, self.ctx.decider.authority, self.ctx.decider)
            said = await self.ctx.run(control_command, overrides, parsed.reason, reviewer)
            return text_activity(f"🛑 {_for_teams(said)}")
        if parsed.name == "pending":
            page = await self.ctx.run(
                lambda: pending(
                    store,
                    reviewer_id=reviewer.user_id,
                    authority=self.ctx.decider.authority,
                    limit=PAGE,
                )
            )
            if not page.records:
                return text_activity("Nothing is waiting for you.")
            lines = [
                f"{page.total} pending request{'s' if page.total != 1 else ''} you may decide:"
            ]
            for r in page.records:
                lines.append(f"{RISK_EMOJI[r.verdict.risk]} {r.id} · {r.request.title[:120]}")
            if page.total > len(page.records):
                lines.append(f"… and {page.total - len(page.records)} more.")
            lines.append("Write 'show ID' for a card with buttons.")
            return text_activity("\n".join(lines))
        record = await self.ctx.run(store.find, parsed.request_id)
        if record is None:
            return text_activity(f"No request {parsed.request_id} (it may have been purged).")
        if parsed.name == "show":
            return card_activity(approval_card(record), record.request.title)
        verb = APPROVE if parsed.name == "approve" else REJECT
        result = await self._decide(verb, record, reviewer, parsed.reason, {})
        return text_activity(f"✅ {record.id}: {result.message}")


def _places_the_bot(activity: Activity) -> bool:
    """A message, a conversation update or an installation (not an uninstallation): the bot is
    in that conversation and may post there later."""
    if activity.type == ActivityTypes.installation_update:
        return not str(activity.action or "").startswith("remove")
    return activity.type in (ActivityTypes.message, ActivityTypes.conversation_update)


def _tenant_of(activity: Activity) -> str:
    """The tenant an activity comes from: Teams' ``channelData.tenant.id`` (botbuilder reads
    ``conversation.tenantID``, which Teams spells ``tenantId``), else the conversation's."""
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = data.get("tenant")
    if isinstance(tenant, dict) and tenant.get("id"):
        return str(tenant["id"])
    conversation = activity.conversation
    return str(conversation.tenant_id or "") if conversation is not None else ""


def _for_teams(usage: str) -> str:
    """Slack's usage line as written to the bot (no slash command)."""
    return usage.replace("`/hitl ", "`").replace("with buttons", "write 'show ID' for buttons")


def _channel_name(channel_data: Any, conversation_id: str) -> str:
    """The name of the team channel a conversation is (the team's name for its General channel,
    whose id is the team's)."""
    data: dict[str, Any] = channel_data if isinstance(channel_data, dict) else {}
    channel, team = data.get("channel"), data.get("team")
    name = channel.get("name") if isinstance(channel, dict) else None
    if isinstance(name, str) and name:
        return name
    if isinstance(team, dict) and team.get("id") == conversation_id:
        team_name = team.get("name")
        return team_name if isinstance(team_name, str) else ""
    return ""
