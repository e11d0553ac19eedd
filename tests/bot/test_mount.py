"""mount_slack: off without tokens, HTTP mode adds the route, Socket Mode answers over the
websocket, and stored requests get cards."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from hitl.bot.slack import SlackSettings, mount_slack
from hitl.config import Settings
from hitl.handlers import Authority
from hitl.queue.store import Store
from hitl.service import Service
from tests.bot.conftest import BOT_TOKEN, SlackHarness, request_fields
from tests.bot.slack_server import MockSlack
from tests.scenarios.helpers import drain


def _routes(app: web.Application) -> set[str]:
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def test_off_without_tokens(settings: Settings, store: Store, authority: Authority) -> None:
    """Without SLACK_BOT_TOKEN (and a secret or app token) nothing is mounted."""
    service = Service(settings, store=store, authority=authority)
    assert mount_slack(service, SlackSettings()) is None
    assert mount_slack(service, SlackSettings(bot_token=BOT_TOKEN)) is None
    assert "/slack/events" not in _routes(service.app)
    assert [] == service.channels
    for consumer in service.consumers:
        consumer.close()


def test_from_environment(
    settings: Settings, store: Store, authority: Authority, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual variables turn HTTP mode on: the route is added, the channel joins the service."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api")
    service = Service(settings, store=store, authority=authority)
    channel = mount_slack(service)
    assert channel is not None
    assert "http://127.0.0.1:9/api/" == channel.client.base_url
    assert "/slack/events" in _routes(service.app)
    assert [channel] == service.channels
    for consumer in service.consumers:
        consumer.close()


async def test_intake_thread_hook_posts_cards(harness: SlackHarness) -> None:
    """Requests stored by the intake thread get their cards on the event loop."""
    fields = [request_fields() for _ in range(3)]
    for body in fields:
        harness.store.redis.xadd(harness.store.keys.requests, {"request": json.dumps(body)})
    await asyncio.to_thread(drain, harness.service.consumers[0])
    for body in fields:
        await harness.slack.wait_for(lambda b=body: harness.slack.cards_for(b["id"]))


async def test_auto_approved_requests_get_no_card(harness: SlackHarness) -> None:
    """Only requests that need a human are posted."""
    harness.dispatcher.on_stored([])
    record = await harness.submit_request()
    approved = record.model_copy(update={"state": "approved"})
    assert [] == await harness.dispatcher.post_card(harness.channel, approved)


async def test_socket_mode(
    settings: Settings, store: Store, mock_slack: MockSlack, authority: Authority
) -> None:
    """With SLACK_APP_TOKEN the app answers a slash command envelope over Socket Mode."""
    service = Service(settings, store=store, authority=authority)
    slack_settings = SlackSettings(
        bot_token=BOT_TOKEN, app_token="xapp-1-test", api_url=mock_slack.api_url
    )
    channel = mount_slack(service, slack_settings)
    assert channel is not None
    assert "/slack/events" not in _routes(service.app)
    runner = web.AppRunner(service.app)
    await runner.setup()
    try:
        payload: dict[str, Any] = {
            "token": "legacy",
            "team_id": "T0TEAM",
            "channel_id": "CAPPROVALS",
            "user_id": "U0BOB",
            "user_name": "bob",
            "command": "/hitl",
            "text": "help",
            "api_app_id": "A0HITL",
            "response_url": mock_slack.response_url("socket"),
            "trigger_id": "1.2.3",
        }
        await mock_slack.send_envelope(
            {
                "envelope_id": "env-1",
                "type": "slash_commands",
                "payload": payload,
                "accepts_response_payload": True,
            }
        )
        reply = await mock_slack.wait_for(lambda: mock_slack.socket_replies, what="the ack")
        assert "env-1" == reply[0]["envelope_id"]
        assert "/hitl pending" in reply[0]["payload"]["text"]
        opened = mock_slack.calls_to("apps.connections.open")
        assert opened
    finally:
        await runner.cleanup()
        for consumer in service.consumers:
            consumer.close()
