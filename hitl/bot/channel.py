"""The seam every channel adapter (Slack, Teams) implements, and what it is handed.

:class:`~hitl.bot.dispatch.Dispatcher` does what every channel needs: it reads changes
(``hitl:events``) and notifications (``hitl:notify``), decides where a card goes (a
:class:`Route`: a named channel, or the people an on-call or user destination means now, the
requester left out), records every posted copy on the request, keeps a backlog of cards that could
not be posted, sweeps for pending requests without a card, re-renders every copy after a change
and routes digests and notices. A channel only translates that into its platform: render the card,
make the call, within the platform's limits::

    class Teams:                              # satisfies Channel; the dispatcher does the rest
        name = "teams"
        async def post_card(self, record, route, notice=""): ...   # -> [CardRef(channel="teams")]
        ...

    service.add_channel(Teams(...))

A channel names its copies ``CardRef(channel=channel.name)`` and its digest messages
``CardRef(channel=digest_ref_name(channel.name))``; the dispatcher keeps the two apart by that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from hitl.errors import HitlError
from hitl.models import CardRef, Destination, RequestRecord
from hitl.queue.digest import Digest

__all__ = ["Channel", "ChannelError", "Route", "digest_ref_name"]


PLATFORMS = ("slack", "teams")
"""The prefixes a ``channel:`` destination may carry to name one platform's channel."""


def digest_ref_name(channel: str) -> str:
    """``CardRef.channel`` of a digest message posted by ``channel`` (``"slack-digest"``)."""
    return f"{channel}-digest"


class ChannelError(HitlError):
    """A channel could not do what it was asked, for good (its own retries are spent).

    ``gone``: the message no longer exists (deleted, archived channel); not worth updating again.
    Anything else is tried again later by the dispatcher.
    """

    def __init__(self, message: str, *, gone: bool = False) -> None:
        super().__init__(message)
        self.gone = gone


@dataclass(frozen=True)
class Route:
    """Where a card or a message goes, as the policy means it now (no platform in it).

    ``Route()`` (no destination) means the channel's default place.
    """

    destination: Destination | None = None
    people: tuple[str, ...] = ()
    """For ``oncall:`` and ``user:`` destinations: the directory ids they mean now, the requester
    left out (a card DMed only to the person who asked, who may not approve it, helps nobody)."""

    @property
    def conversation(self) -> str | None:
        """The channel a ``channel:`` destination names (``#ops``); None otherwise."""
        dest = self.destination
        if dest is not None and dest.kind == "channel" and dest.target:
            return dest.target
        return None

    def conversation_in(self, platform: str) -> str | None:
        """The channel a ``channel:`` destination names in ``platform``: ``channel:teams:Ops``
        is ``Ops`` in Teams and nothing in Slack; ``channel:slack:#ops`` the reverse; an
        unprefixed ``channel:#ops`` is meant for every platform (each finds its ``#ops``)."""
        target = self.conversation
        if target is None:
            return None
        head, sep, rest = target.partition(":")
        if sep and head in PLATFORMS:
            return rest.strip() or None if head == platform else None
        return target

    @property
    def where(self) -> str:
        """``oncall:managers``, ``channel:#ops``, or ``default``: for notices and logs."""
        dest = self.destination
        return f"{dest.kind}:{dest.target}" if dest is not None and dest.target else "default"


class Channel(Protocol):
    """A chat platform the dispatcher posts to (see the module docstring).

    Every method raises :class:`ChannelError` for a failure that is not worth retrying at once;
    a method that posts returns the copies it posted (``[]``: none; the dispatcher retries later).
    """

    @property
    def name(self) -> str:
        """``CardRef.channel`` of this channel's cards, and its name in logs and stats."""
        ...

    async def start(self) -> None:
        """Open connections; called inside the service's event loop before any other method."""
        ...

    async def stop(self) -> None:
        """Close what :meth:`start` opened."""
        ...

    async def post_card(
        self, record: RequestRecord, route: Route, notice: str = ""
    ) -> list[CardRef]:
        """Post the card where ``route`` means in this channel, except where ``record.cards``
        already has a copy; ``notice`` is a line above the card (why it is here). A destination
        that refuses the card may send it to the channel's fallback place."""
        ...

    async def update_card(self, record: RequestRecord, ref: CardRef) -> None:
        """Re-render the copy at ``ref`` (one of this channel's) to show ``record`` as it is."""
        ...

    async def reply(self, record: RequestRecord, text: str, mention: Route | None = None) -> None:
        """A reply under every posted copy (a thread), mentioning the people of ``mention``."""
        ...

    async def tell(self, route: Route, text: str) -> None:
        """A message (no card) to wherever ``route`` means."""
        ...

    async def post_digest(
        self, digest: Digest, records: Mapping[str, RequestRecord | None], route: Route
    ) -> list[CardRef]:
        """Post one message listing the digest's requests (``None``: no longer stored)."""
        ...

    async def update_digest(
        self, ref: CardRef, digest: Digest, records: Mapping[str, RequestRecord | None]
    ) -> None:
        """Re-render the digest message at ``ref``."""
        ...
