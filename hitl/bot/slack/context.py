"""What every Slack listener needs: the handlers, the channel, the settings, and who clicked.

The listeners translate a Slack event into a handler call and a handler result into a reply;
this is the one object they share::

    ctx = SlackContext(decider=service.decider, channel=channel, settings=settings)
    reviewer = ctx.reviewer("U0BOB", "bob")      # Reviewer(user_id="bob", display_name="Bob Brown")
    result = await ctx.run(ctx.decider.approve, "r-42", reviewer)
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from hitl.bot.slack.channel import SlackChannel
from hitl.bot.slack.delivery import DeliveryError
from hitl.bot.slack.settings import SlackSettings
from hitl.errors import AlreadyDecided, NotAuthorized
from hitl.handlers import Authority, Decider, describe_decision
from hitl.models import RequestRecord, Reviewer, State
from hitl.queue.audit import AuditEvent
from hitl.queue.store import Store
from hitl.signing import canonical_json

__all__ = ["Attempt", "SlackContext", "params_hash"]

T = TypeVar("T")
Attempt = Literal["approve", "reject", "modify"]


def params_hash(params: dict[str, Any]) -> str:
    """A short hash of the params a form was built from (to notice a concurrent change)."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:16]


@dataclass
class SlackContext:
    decider: Decider
    channel: SlackChannel
    settings: SlackSettings

    @property
    def store(self) -> Store:
        return self.decider.store

    @property
    def authority(self) -> Authority:
        return self.decider.authority

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a (synchronous, Redis-backed) handler off the event loop."""
        return await asyncio.to_thread(fn, *args)

    def reviewer(self, slack_user: str, name: str = "") -> Reviewer:
        """The reviewer behind a Slack user: their directory id and name when the policy knows
        them (so a Slack click and a Teams click are one person), else the Slack id."""
        lookup = getattr(self.authority, "reviewer", None)
        entry = lookup(slack_user) if callable(lookup) else None
        if entry is not None:
            return Reviewer(
                user_id=str(entry.id),
                display_name=str(getattr(entry, "display_name", "") or name)[:256],
                channel="slack",
            )
        return Reviewer(user_id=slack_user, display_name=name[:256], channel="slack")

    def precheck(self, request_id: str, reviewer: Reviewer, attempt: Attempt) -> RequestRecord:
        """May ``reviewer`` open the Reject / Modify form? Refusals are audited and raised.

        The same rules as :class:`~hitl.handlers.Decider` (which checks again on submit): a
        decided request refuses everyone; anyone who may decide, and the requester, may reject;
        modifying is approving, so it needs a vote the policy accepts.
        """
        record = self.store.get(request_id)
        if record.state is not State.PENDING:
            said = describe_decision(record.decision) if record.decision else record.state.value
            self._audit_refusal(record, reviewer, attempt, f"already {said}", late=True)
            raise AlreadyDecided(f"request {record.id} is already {said}", record.decision)
        requester = record.request.requested_by
        reason = ""
        if attempt == "reject":
            mine = requester is not None and requester.casefold() == reviewer.user_id.casefold()
            if not mine and not self.authority.can_decide(
                record.verdict, reviewer.user_id, requester
            ):
                roles = ", ".join(record.verdict.roles) or "a reviewer role"
                reason = f"{reviewer.user_id} may not decide this request (needs one of: {roles})"
        else:
            votes = record.votes if attempt == "approve" else []
            check = self.authority.check_vote(record.verdict, votes, reviewer.user_id, requester)
            if not check.ok:
                reason = check.reason
        if reason:
            self._audit_refusal(record, reviewer, attempt, reason)
            raise NotAuthorized(reason)
        return record

    def _audit_refusal(
        self,
        record: RequestRecord,
        reviewer: Reviewer,
        attempt: str,
        reason: str,
        late: bool = False,
    ) -> None:
        details: dict[str, Any] = {"attempt": attempt, "reason": reason, "channel": "slack"}
        if late:
            details["late"] = True
        event = AuditEvent(
            "refused", record.id, reviewer.user_id, details, record.verdict.policy_version
        )
        self.store.append_events([event])

    async def ephemeral(self, conversation: str, user: str, text: str) -> None:
        """A message only ``user`` sees (a DM from the bot when there is no conversation)."""
        from hitl.bot.slack.blocks import notice_blocks

        blocks = notice_blocks(text)
        try:
            if conversation:
                await self.channel.caller.call(
                    "chat.postEphemeral", channel=conversation, user=user, text=text, blocks=blocks
                )
                return
        except DeliveryError:
            pass
        try:
            await self.channel.caller.call(
                "chat.postMessage", channel=user, text=text, blocks=blocks
            )
        except DeliveryError:
            return
