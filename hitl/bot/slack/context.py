"""What every Slack listener needs: the handlers, the channel, the dispatcher (digests, the
channels' figures), the settings, and who clicked.

The listeners translate a Slack event into a handler call and a handler result into a reply;
this is the one object they share::

    ctx = SlackContext(service.decider, channel, settings, service.dispatcher)
    reviewer = ctx.reviewer("U0BOB", "bob")      # Reviewer(user_id="bob", display_name="Bob Brown")
    result = await ctx.run(ctx.decider.approve, "r-42", reviewer)
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from hitl.bot.directory import reviewers_of
from hitl.bot.dispatch import Dispatcher
from hitl.bot.slack.channel import SlackChannel
from hitl.bot.slack.delivery import DeliveryError
from hitl.bot.slack.settings import SlackSettings
from hitl.handlers import Authority, Decider
from hitl.models import RequestRecord, Reviewer
from hitl.queue.digest import Digests
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
    dispatcher: Dispatcher

    @property
    def digests(self) -> Digests | None:
        return self.dispatcher.digests

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
        directory = reviewers_of(self.authority)
        entry = directory.reviewer(slack_user) if directory is not None else None
        if entry is not None:
            return Reviewer(
                user_id=entry.id, display_name=(entry.display_name or name)[:256], channel="slack"
            )
        return Reviewer(user_id=slack_user, display_name=name[:256], channel="slack")

    def precheck(self, request_id: str, reviewer: Reviewer, attempt: Attempt) -> RequestRecord:
        """May ``reviewer`` open the Reject / Modify form? The Decider's own rules (it checks
        again on submit); refusals are audited and raised."""
        return Decider(self.store, self.authority).check(request_id, reviewer, attempt)

    async def ephemeral(self, conversation: str, user: str, text: str) -> None:
        """A message only ``user`` sees (a DM from the bot when there is no conversation)."""
        from hitl.bot.slack.blocks import notice_blocks, notice_text

        blocks, text = notice_blocks(text), notice_text(text)
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
