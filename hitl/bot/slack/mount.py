"""Run the Slack channel inside ``hitl serve``: one call from :class:`hitl.service.Service`.

::

    channel = mount_slack(service)     # before the aiohttp app starts; None without Slack tokens

With ``SLACK_BOT_TOKEN`` and ``SLACK_SIGNING_SECRET`` it adds ``POST /slack/events`` to the
service's aiohttp app (HTTP mode: point the Slack app's request URLs there); with
``SLACK_APP_TOKEN`` it connects over Socket Mode instead (no public URL). Either way the channel
joins ``service.channels``: the service's dispatcher starts and stops it with the aiohttp app and
posts, updates and notifies through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from hitl.bot.slack.app import build_app, make_client
from hitl.bot.slack.channel import SlackChannel
from hitl.bot.slack.context import SlackContext
from hitl.bot.slack.settings import SlackSettings

if TYPE_CHECKING:
    from hitl.service import Service

__all__ = ["events_handler", "mount_slack"]

log = logging.getLogger("hitl.slack")


def events_handler(app: AsyncApp) -> Any:
    """An aiohttp handler that hands Slack's signed requests to the Bolt app."""

    async def handle(request: web.Request) -> web.Response:
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        if not stamp.isdigit():  # Bolt would raise on int(): a forged request is a 401, not a 500
            return web.Response(status=401, text="invalid request timestamp")
        bolt_request = await to_bolt_request(request)
        bolt_response = await app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    return handle


async def _connect(handler: Any) -> None:
    await handler.connect_async()
    log.info("Slack connected over Socket Mode")


def mount_slack(service: Service, settings: SlackSettings | None = None) -> SlackChannel | None:
    """Wire Slack into ``service`` (its aiohttp app, channels, decider, authority).

    Must be called before the aiohttp app is started (routes and startup hooks are frozen then).
    Returns the channel (also for the service's list of channels), or None when Slack is not
    configured.
    """
    settings = settings or SlackSettings.from_env()
    if not settings.enabled:
        log.info("Slack is off (set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET or SLACK_APP_TOKEN)")
        return None
    client = make_client(settings)
    channel = SlackChannel(client, service.authority, settings)
    ctx = SlackContext(service.decider, channel, settings, service.dispatcher)
    bolt = build_app(settings, ctx, client)
    channel.bolt = bolt
    http: web.Application = service.app
    if settings.socket_mode:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        handler = AsyncSocketModeHandler(bolt, settings.app_token)
        tasks: list[asyncio.Task[None]] = []

        async def connect(_: web.Application) -> None:
            # In the background: the SDK retries until Slack answers, and the service (intake,
            # other channels) must not wait for that.
            tasks.append(asyncio.create_task(_connect(handler)))

        async def disconnect(_: web.Application) -> None:
            await handler.close_async()  # type: ignore[no-untyped-call]  # untyped in bolt
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        http.on_startup.append(connect)
        http.on_cleanup.insert(0, disconnect)
    else:
        http.router.add_post(settings.path, events_handler(bolt))
        log.info("Slack events, actions and commands at POST %s", settings.path)
    service.add_channel(channel)  # typed: SlackChannel is a Channel (checked by mypy)
    return channel
