"""The Slack channel: a Bolt app (HTTP or Socket Mode), approval cards, ``/hitl`` commands.

::

    from hitl.bot.slack import mount_slack
    channel = mount_slack(service)        # inside `hitl serve`; None without Slack settings

The parts: :mod:`~hitl.bot.slack.blocks` renders cards and modals (pure),
:class:`SlackChannel` posts and updates them within Slack's limits when the service's
:class:`~hitl.bot.dispatch.Dispatcher` says so (it implements :class:`~hitl.bot.channel.Channel`),
the listener modules (``actions``, ``views``, ``commands``) each ``register(app, ctx)``, and
``app``/``mount`` wire.
"""

from __future__ import annotations

from hitl.bot.slack.app import build_app, make_client
from hitl.bot.slack.channel import SlackChannel
from hitl.bot.slack.context import SlackContext
from hitl.bot.slack.delivery import Caller, DeliveryError, Pacer
from hitl.bot.slack.mount import events_handler, mount_slack
from hitl.bot.slack.settings import SlackSettings

__all__ = [
    "Caller",
    "DeliveryError",
    "Pacer",
    "SlackChannel",
    "SlackContext",
    "SlackSettings",
    "build_app",
    "events_handler",
    "make_client",
    "mount_slack",
]
