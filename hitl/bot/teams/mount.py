"""Run the Teams channel inside ``hitl serve``: one call from :class:`hitl.service.Service`.

::

    channel = mount_teams(service)     # before the aiohttp app starts; None without credentials

With ``MICROSOFT_APP_ID`` (and its tenant, and a password or a certificate) it adds
``POST /api/messages`` to the service's aiohttp app, next to ``/slack/events`` and ``/api/v1``:
a botbuilder ``CloudAdapter`` with ``ConfigurationBotFrameworkAuthentication`` (single tenant)
checks the Bot Framework's signed token on every request (401 otherwise) and runs
:class:`~hitl.bot.teams.bot.TeamsBot`. The channel joins ``service.channels``, so the service's
dispatcher posts, updates and notifies through it.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web
from botbuilder.core import BotAdapter, TurnContext
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
)
from botbuilder.schema import Activity
from botframework.connector.auth import CertificateServiceClientCredentialsFactory

from hitl.bot.teams.bot import TeamsBot, TeamsContext
from hitl.bot.teams.channel import TeamsChannel
from hitl.bot.teams.people import TeamsPeople
from hitl.bot.teams.settings import TeamsSettings
from hitl.queue.conversations import ConversationBook

if TYPE_CHECKING:
    from hitl.service import Service

__all__ = ["make_adapter", "messages_handler", "mount_teams"]

log = logging.getLogger("hitl.teams")


def make_adapter(settings: TeamsSettings) -> Any:
    """A ``CloudAdapter`` authenticating as the single-tenant app of ``settings`` (with a client
    secret, or a certificate); without authentication only when a test says so."""
    if settings.auth_disabled:
        config = SimpleNamespace(APP_ID="", APP_PASSWORD="", APP_TYPE="MultiTenant")
        return CloudAdapter(ConfigurationBotFrameworkAuthentication(config))
    config = SimpleNamespace(
        APP_ID=settings.app_id,
        APP_PASSWORD=settings.app_password or "certificate",
        APP_TYPE="SingleTenant",
        APP_TENANTID=settings.tenant_id,
    )
    factory = None
    if settings.uses_certificate:
        factory = CertificateServiceClientCredentialsFactory(
            settings.certificate_thumbprint,
            settings.certificate_key,
            settings.app_id,
            settings.tenant_id,
        )
    auth = ConfigurationBotFrameworkAuthentication(config, credentials_factory=factory)
    return CloudAdapter(auth)


async def _on_error(context: TurnContext, error: Exception) -> None:
    log.error("Teams turn failed (%s activity): %s", context.activity.type, error,
              exc_info=error)  # fmt: skip


def messages_handler(adapter: Any, bot: TeamsBot) -> Any:
    """An aiohttp handler for ``POST /api/messages``: a clear 4xx for what is not a signed
    activity, else the bot's turn (and its invoke response)."""

    async def handle(request: web.Request) -> web.Response:
        if "application/json" not in request.headers.get("Content-Type", ""):
            return web.json_response({"error": "send the activity as application/json"},
                                     status=415)  # fmt: skip
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "the body is not JSON"}, status=400)
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            return web.json_response({"error": "the body is not an activity"}, status=400)
        try:
            activity = Activity().deserialize(body)
        except Exception:  # msrest's DeserializationError and friends
            return web.json_response({"error": "the activity cannot be read"}, status=400)
        auth_header = request.headers.get("Authorization", "")
        try:
            response = await adapter.process_activity(auth_header, activity, bot.on_turn)
        except (PermissionError, jwt.PyJWTError):
            return web.json_response({"error": "unauthorized"}, status=401)
        if response is None:
            return web.Response(status=201)
        return web.json_response(response.body, status=int(response.status))

    return handle


def mount_teams(
    service: Service, settings: TeamsSettings | None = None, adapter: BotAdapter | None = None
) -> TeamsChannel | None:
    """Wire Teams into ``service`` (its aiohttp app, channels, decider, authority).

    Must be called before the aiohttp app is started. Returns the channel, or None when Teams is
    not configured. ``adapter`` replaces the ``CloudAdapter`` (tests: botbuilder's TestAdapter).
    """
    settings = settings or TeamsSettings.from_env()
    if not settings.enabled:
        log.info("Teams is off (set MICROSOFT_APP_ID, MICROSOFT_APP_TENANT_ID and a password)")
        return None
    adapter = adapter or make_adapter(settings)
    adapter.on_turn_error = _on_error
    book = ConversationBook(service.store)
    people = TeamsPeople(service.authority)
    channel = TeamsChannel(adapter, settings, book, people)
    tenant = "" if settings.auth_disabled else settings.tenant_id
    bot = TeamsBot(TeamsContext(service.decider, service.dispatcher, book, people, tenant))
    channel.bot = bot
    service.app.router.add_post(settings.path, messages_handler(adapter, bot))
    log.info("Teams activities at POST %s", settings.path)
    service.add_channel(channel)
    return channel
