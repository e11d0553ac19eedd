"""Slack fixtures: the mock Web API, a policy with Slack ids, and the real service with Slack
mounted on a free port, driven by signed HTTP requests (see :class:`SlackHarness`)."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from hitl.bot.dispatch import Dispatcher, DispatchSettings
from hitl.bot.slack import SlackChannel, SlackSettings, mount_slack
from hitl.config import Settings
from hitl.handlers import Authority
from hitl.models import ApprovalRequest, RequestRecord
from hitl.policies import Policy, parse_policy
from hitl.queue.store import Store
from hitl.service import Service
from tests.bot.slack_server import MockSlack
from tests.redis_server import free_port
from tests.scenarios.helpers import drain

SIGNING_SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-test-token"

POLICY = """
version: "slack-tests"
timezone: UTC
tools:
  refund: medium
  wire: high
  delete_volume: critical
  lookup: low
  ping_frank: medium
  ask_bob: medium
risk_levels:
  low: {policy: mandatory, destination: "channel:#approvals"}
  medium: {policy: mandatory, destination: "channel:#approvals"}
  high:
    policy: mandatory
    roles: [manager]
    destination: "oncall:managers"
    escalation: ["10m -> channel:#managers", "1h -> timeout"]
  critical:
    policy: mandatory
    roles: [manager]
    approvals: 2
    destination: "channel:#critical"
rules:
  - {name: digest-lookups, action: lookup, policy: mandatory, digest: true}
  - {name: frank-only, action: ping_frank, policy: mandatory, destination: "oncall:nobody-in-slack"}
  - {name: to-bob, action: ask_bob, policy: mandatory, destination: "user:bob"}
reviewers:
  - {id: alice, display_name: Alice Adams, slack_id: U0ALICE, roles: [standard]}
  - {id: bob, display_name: Bob Brown, slack_id: U0BOB, roles: [manager]}
  - {id: carol, display_name: Carol Chen, slack_id: U0CAROL, roles: [manager]}
  - {id: dave, display_name: Dave Davis, slack_id: U0DAVE, roles: [standard]}
  - {id: frank, display_name: Frank Foster, roles: [manager]}
schedules:
  managers: {members: [bob]}
  nobody-in-slack: {members: [frank]}
"""


def slack_policy() -> Policy:
    """The policy of the Slack tests: medium to #approvals, high DM'd to on-call bob, critical
    to #critical with two managers."""
    return parse_policy(textwrap.dedent(POLICY), source="slack-tests.yaml")


def request_fields(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": f"r-{uuid.uuid4().hex[:10]}",
        "action": "refund",
        "params": {"order_id": "A-1002", "amount": 250.0},
        "summary": "Refund $250 for order A-1002",
        "reasoning": "The parcel arrived 9 days late; policy allows a full refund.",
        "context": {"user_request": "I want my money back", "ticket": "T-77"},
        "agent_id": "support-bot",
        "session_id": "sess-1",
        "requested_by": "U0REQUESTER",
        "confidence": 0.8,
    }
    base.update(fields)
    return base


def sign(body: str, secret: str = SIGNING_SECRET, ts: int | None = None) -> dict[str, str]:
    """The headers Slack sends: ``v0`` HMAC-SHA256 of ``v0:{ts}:{body}``."""
    stamp = str(int(time.time()) if ts is None else ts)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


def _user(user: str, name: str) -> dict[str, str]:
    return {
        "id": user,
        "username": name or user.lower(),
        "name": name or user.lower(),
        "team_id": "T0TEAM",
    }


@dataclass
class SlackHarness:
    """The real service with Slack mounted (HTTP mode), the mock Slack, and helpers that send
    what Slack sends."""

    service: Service
    channel: SlackChannel
    slack: MockSlack
    settings: SlackSettings
    url: str
    http: aiohttp.ClientSession
    clicks: int = 0
    records: dict[str, RequestRecord] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.service.store

    @property
    def dispatcher(self) -> Dispatcher:
        return self.service.dispatcher

    async def post(self, body: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        async with self.http.post(self.url, data=body.encode(), headers=headers or sign(body)) as r:
            return r.status, await r.text()

    def action_body(
        self,
        action_id: str,
        value: str,
        user: str,
        name: str = "",
        *,
        channel: str = "CAPPROVALS",
        message_ts: str = "1700000001.000100",
        ephemeral: bool = False,
        state: dict[str, Any] | None = None,
    ) -> str:
        self.clicks += 1
        payload = {
            "type": "block_actions",
            "user": _user(user, name),
            "api_app_id": "A0HITL",
            "token": "legacy",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            },
            "trigger_id": f"{self.clicks}.1.trigger",
            "team": {"id": "T0TEAM", "domain": "hitl-test"},
            "channel": {"id": channel, "name": "approvals"},
            "message": {"ts": message_ts, "type": "message"} if not ephemeral else None,
            "response_url": self.slack.response_url(f"click-{self.clicks}"),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "hitl_actions",
                    "text": {"type": "plain_text", "text": "x"},
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        if ephemeral:
            del payload["message"]
        if state is not None:
            payload["state"] = {"values": state}
        return "payload=" + urllib.parse.quote(json.dumps(payload))

    async def click(
        self, action_id: str, value: str, user: str, name: str = "", **kw: Any
    ) -> tuple[int, str]:
        return await self.post(self.action_body(action_id, value, user, name, **kw))

    def view_body(
        self, callback_id: str, values: dict[str, Any], meta: str, user: str, name: str = ""
    ) -> str:
        payload = {
            "type": "view_submission",
            "team": {"id": "T0TEAM", "domain": "hitl-test"},
            "user": _user(user, name),
            "api_app_id": "A0HITL",
            "trigger_id": "9.9.trigger",
            "view": {
                "id": "V0MODAL",
                "type": "modal",
                "callback_id": callback_id,
                "private_metadata": meta,
                "state": {"values": values},
                "hash": "1.abc",
            },
        }
        return "payload=" + urllib.parse.quote(json.dumps(payload))

    async def submit(
        self, callback_id: str, values: dict[str, Any], meta: str, user: str, name: str = ""
    ) -> tuple[int, str]:
        return await self.post(self.view_body(callback_id, values, meta, user, name))

    def command_body(
        self, text: str, user: str, name: str = "", channel: str = "CAPPROVALS"
    ) -> str:
        self.clicks += 1
        form = {
            "token": "legacy",
            "team_id": "T0TEAM",
            "team_domain": "hitl-test",
            "channel_id": channel,
            "channel_name": "approvals",
            "user_id": user,
            "user_name": name or user.lower(),
            "command": self.settings.command,
            "text": text,
            "api_app_id": "A0HITL",
            "response_url": self.slack.response_url(f"cmd-{self.clicks}"),
            "trigger_id": f"{self.clicks}.2.trigger",
        }
        return urllib.parse.urlencode(form)

    async def command(self, text: str, user: str, name: str = "") -> tuple[int, str]:
        return await self.post(self.command_body(text, user, name))

    async def submit_request(self, **fields: Any) -> RequestRecord:
        """XADD a request, run the real intake once, and return the stored record."""
        body = request_fields(**fields)
        ApprovalRequest.model_validate(body)
        self.store.redis.xadd(self.store.keys.requests, {"request": json.dumps(body)})
        await asyncio.to_thread(drain, self.service.consumers[0])
        return self.store.get(body["id"])

    async def submit_and_post(self, **fields: Any) -> RequestRecord:
        """Submit a request and wait until its card is posted and recorded."""
        record = await self.submit_request(**fields)
        return await self.slack.wait_for(
            lambda: self._with_card(record.id), what=f"the card of {record.id}"
        )

    def _with_card(self, request_id: str) -> RequestRecord | None:
        record = self.store.get(request_id)
        return record if record.cards else None

    def last_response(self) -> dict[str, Any]:
        return self.slack.responses()[-1].args

    def texts(self, calls: list[Any]) -> str:
        return "\n".join(json.dumps(c.args) for c in calls)


def fast_settings(slack: MockSlack, **overrides: Any) -> SlackSettings:
    values: dict[str, Any] = {
        "bot_token": BOT_TOKEN,
        "signing_secret": SIGNING_SECRET,
        "api_url": slack.api_url,
        "default_channel": "#approvals",
        "fallback_channel": "#hitl-fallback",
        "pace_interval_s": 0.0,
        "backoff_s": 0.05,
        "give_up_after_s": 20.0,
    }
    values.update(overrides)
    return SlackSettings(**values)


def fast_dispatch(**overrides: Any) -> DispatchSettings:
    """The dispatcher's settings for tests: backlog retried after 0.2 s, one sweep at start."""
    values: dict[str, Any] = {"backlog_retry_s": 0.2, "sweep_s": 0.0, "sweep_min_age_s": 0.0}
    values.update(overrides)
    return DispatchSettings(**values)


@pytest.fixture
async def mock_slack() -> AsyncIterator[MockSlack]:
    """The mock Web API; the test fails if any message or modal broke Block Kit's limits."""
    server = await MockSlack().start()
    yield server
    await server.close()
    assert [] == server.violations


@pytest.fixture
def authority() -> Authority:
    return slack_policy()


async def start_harness(
    settings: Settings,
    store: Store,
    slack: MockSlack,
    authority: Authority,
    **overrides: Any,
) -> tuple[SlackHarness, web.AppRunner]:
    ours = {k: overrides.pop(k) for k in list(overrides) if k in DispatchSettings.model_fields}
    service = Service(settings, store=store, authority=authority, dispatch=fast_dispatch(**ours))
    service.consumers[0].ensure_group()
    slack_settings = fast_settings(slack, **overrides)
    channel = mount_slack(service, slack_settings)
    assert channel is not None
    runner = web.AppRunner(service.app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    http = aiohttp.ClientSession()
    harness = SlackHarness(
        service=service,
        channel=channel,
        slack=slack,
        settings=slack_settings,
        url=f"http://127.0.0.1:{port}{slack_settings.path}",
        http=http,
    )
    return harness, runner


@pytest.fixture(autouse=True)
def _no_burst_folding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cards are not folded into digests unless a test asks for it (HITL_CHANNEL_PACE)."""
    monkeypatch.setenv("HITL_CHANNEL_PACE", "0/60")


@pytest.fixture
async def harness(
    settings: Settings, store: Store, mock_slack: MockSlack, authority: Authority
) -> AsyncIterator[SlackHarness]:
    """The service with Slack mounted over HTTP, answering on a free port."""
    h, runner = await start_harness(settings, store, mock_slack, authority)
    try:
        yield h
    finally:
        await h.http.close()
        await runner.cleanup()
        for consumer in h.service.consumers:
            consumer.close()


Factory = Callable[..., Awaitable[SlackHarness]]


@pytest.fixture
async def make_harness(
    settings: Settings, store: Store, mock_slack: MockSlack, authority: Authority
) -> AsyncIterator[Factory]:
    """Build harnesses with overridden Slack settings (all stopped at the end of the test)."""
    started: list[tuple[SlackHarness, web.AppRunner]] = []

    async def make(**overrides: Any) -> SlackHarness:
        pair = await start_harness(settings, store, mock_slack, authority, **overrides)
        started.append(pair)
        return pair[0]

    yield make
    for h, runner in started:
        await h.http.close()
        await runner.cleanup()
        for consumer in h.service.consumers:
            consumer.close()
