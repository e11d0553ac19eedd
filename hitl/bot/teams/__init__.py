"""Microsoft Teams: approval cards as Adaptive Cards (Universal Actions), posted and updated by a
botbuilder bot at ``POST /api/messages``.

Every ``botbuilder`` import stays inside this package, behind the
:class:`~hitl.bot.channel.Channel` protocol: Microsoft has archived the Bot Framework SDK in
favour of the Microsoft 365 Agents SDK, and an adapter on that SDK can replace this one folder
without touching the dispatcher, the handlers or the other channels::

    channel = mount_teams(service)          # None without MICROSOFT_APP_ID
"""

from __future__ import annotations

from hitl.bot.teams.cards import (
    MAX_CARD_BYTES,
    TeamsAction,
    approval_card,
    digest_card,
    parse_action,
    request_id_of,
)
from hitl.bot.teams.channel import TeamsChannel
from hitl.bot.teams.mount import mount_teams
from hitl.bot.teams.settings import TeamsSettings

__all__ = [
    "MAX_CARD_BYTES",
    "TeamsAction",
    "TeamsChannel",
    "TeamsSettings",
    "approval_card",
    "digest_card",
    "mount_teams",
    "parse_action",
    "request_id_of",
]
