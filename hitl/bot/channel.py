"""The seam every channel adapter (Slack, Teams, web inbox) implements.

The service keeps a list of channels. When a request needs humans it calls ``post_card``; when
anything about a request changes (a vote, a decision from any channel or the CLI, an escalation)
the change appears on the ``hitl:events`` stream and the service calls ``update_cards`` so every
posted copy shows the new state; the scheduler's escalations call ``notify``.
"""

from __future__ import annotations

from typing import Protocol

from hitl.models import CardRef, Destination, RequestRecord

__all__ = ["Channel"]


class Channel(Protocol):
    name: str

    async def post_card(self, record: RequestRecord) -> list[CardRef]:
        """Post the card where the verdict's destination says; return where it went."""
        ...

    async def update_cards(self, record: RequestRecord) -> None:
        """Re-render every copy in ``record.cards`` that belongs to this channel."""
        ...

    async def notify(self, record: RequestRecord, target: Destination, text: str) -> None:
        """Tell ``target`` about ``record`` (thread reply on the card + DM, or a channel post)."""
        ...
