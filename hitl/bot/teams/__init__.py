"""Microsoft Teams: the approval card as an Adaptive Card (Universal Actions). Pure, no I/O.

The card is rendered from the same :class:`~hitl.bot.cards.CardView` as Slack's, so the two
never disagree; :func:`parse_action` turns what a reviewer clicked back into a typed
:class:`TeamsAction`. The Teams :class:`~hitl.bot.channel.Channel` (botbuilder) comes next and
keeps its botbuilder imports inside this package.
"""

from __future__ import annotations

from hitl.bot.teams.cards import (
    MAX_CARD_BYTES,
    TeamsAction,
    approval_card,
    parse_action,
    request_id_of,
)

__all__ = ["MAX_CARD_BYTES", "TeamsAction", "approval_card", "parse_action", "request_id_of"]
