"""The Bolt app: a Web API client pointed at ``SLACK_API_URL``, and the listeners. Wiring only.

::

    client = make_client(settings)
    app = build_app(settings, ctx, client)        # ctx: SlackContext (handlers + channel)
    response = await app.async_dispatch(bolt_request)
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient

from hitl.bot.slack import actions, commands, views
from hitl.bot.slack.context import SlackContext
from hitl.bot.slack.settings import SlackSettings

__all__ = ["build_app", "make_client"]

log = logging.getLogger("hitl.slack")


def make_client(settings: SlackSettings) -> AsyncWebClient:
    """The bot's Web API client (retries are done by the channel's caller, not the SDK)."""
    return AsyncWebClient(
        token=settings.bot_token or None,
        base_url=settings.api_url,
        timeout=settings.timeout_s,
    )


def build_app(settings: SlackSettings, ctx: SlackContext, client: AsyncWebClient) -> AsyncApp:
    """A Bolt ``AsyncApp`` with hitl's listeners. HTTP requests are verified with the signing
    secret; in Socket Mode (no secret needed) Slack's websocket is the authentication.

    The app's own client carries no token: ``authorize`` hands Bolt the bot token with the bot's
    identity, which the channel fetched once (``auth.test``, retried) - so no click waits for
    ``auth.test``, and a Slack hiccup at the first click does not fail it.
    """
    channel = ctx.channel

    async def authorize(
        enterprise_id: str | None, team_id: str | None, user_id: str | None
    ) -> AuthorizeResult:
        me = await channel.whoami()
        return AuthorizeResult(
            enterprise_id=me.get("enterprise_id") or enterprise_id,
            team_id=me.get("team_id") or team_id,
            bot_token=settings.bot_token,
            bot_id=me.get("bot_id"),
            bot_user_id=me.get("user_id"),
            user_id=user_id,
        )

    app = AsyncApp(
        name="hitl",
        client=AsyncWebClient(base_url=client.base_url, timeout=client.timeout),
        authorize=authorize,
        signing_secret=settings.signing_secret or None,
        request_verification_enabled=bool(settings.signing_secret),
        process_before_response=False,
        logger=log,
    )
    actions.register(app, ctx)
    views.register(app, ctx)
    commands.register(app, ctx)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("slack listener failed: %s (payload type %s)", error, body.get("type"),
                  exc_info=error)  # fmt: skip

    return app
