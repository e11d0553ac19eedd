"""Teams fixtures: the real service with Slack and Teams mounted on one aiohttp app, the Slack
mock and a Bot Framework connector stand-in, and helpers that send what Teams sends."""

from __future__ import annotations

import asyncio
import io
import json
import textwrap
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hitl.bot.slack import SlackChannel, mount_slack
from hitl.bot.teams import TeamsChannel, TeamsSettings, mount_teams
from hitl.config import Settings
from hitl.handlers import Authority
from hitl.models import ApprovalRequest, RequestRecord
from hitl.policies import Policy, parse_policy
from hitl.queue.store import Store
from hitl.service import Service
from tests.bot.conftest import SlackHarness, fast_dispatch, fast_settings, request_fields
from tests.bot.slack_server import MockSlack
from tests.bot.teams.connector import Call, MockConnector
from tests.redis_server import free_port
from tests.scenarios.helpers import drain

TENANT = "72f988bf-0000-4000-8000-00000000cafe"
AAD = {
    "alice": "9a6b1c2d-0000-4000-8000-00000000a11c",
    "bob": "9a6b1c2d-0000-4000-8000-000000000b0b",
    "carol": "9a6b1c2d-0000-4000-8000-0000000ca201",
    "mallory": "9a6b1c2d-0000-4000-8000-0000000bad00",
}
"""Entra ID object ids; mallory is not in the directory."""
APPROVALS = "19:approvals@thread.tacv2"
OPS = "19:ops@thread.tacv2"
TEAM = "19:team@thread.tacv2"

POLICY = f"""
version: "teams-tests"
timezone: UTC
tools:
  refund: medium
  wire: high
  delete_volume: critical
  ask_bob: medium
  to_ops: medium
  lookup: low
risk_levels:
  low: {{policy: mandatory, destination: "channel:#approvals"}}
  medium: {{policy: mandatory, destination: "channel:#approvals"}}
  high:
    policy: mandatory
    roles: [manager]
    destination: "channel:#approvals"
    escalation: ["10m -> user:carol", "1h -> timeout"]
  critical:
    policy: mandatory
    roles: [manager]
    approvals: 2
    destination: "channel:#approvals"
rules:
  - {{name: to-bob, action: ask_bob, policy: mandatory, destination: "user:bob"}}
  - {{name: to-ops, action: to_ops, policy: mandatory, destination: "teams:Ops"}}
  - {{name: digest-lookups, action: lookup, policy: mandatory, digest: true}}
reviewers:
  - {{id: alice, display_name: Alice Adams, slack_id: U0ALICE, teams_id: "{AAD["alice"]}",
     roles: [standard]}}
  - {{id: bob, display_name: Bob Brown, slack_id: U0BOB, teams_id: "{AAD["bob"]}",
     roles: [manager]}}
  - {{id: carol, display_name: Carol Chen, slack_id: U0CAROL, teams_id: "{AAD["carol"]}",
     roles: [manager]}}
schedules:
  managers: {{members: [bob]}}
break_glass: {{roles: [manager], ack_within: 1h}}
"""


def teams_policy() -> Policy:
    """Medium to #approvals (Slack and Teams), high escalates to carol, critical needs two
    managers, ask_bob goes to bob, to_ops to the Teams channel Ops."""
    return parse_policy(textwrap.dedent(POLICY), source="teams-tests.yaml")


@pytest.fixture
def authority() -> Authority:
    return teams_policy()


@dataclass
class TeamsHarness:
    """The service with Slack and Teams mounted, the two stand-ins, and what Teams sends."""

    service: Service
    slack_channel: SlackChannel
    channel: TeamsChannel
    slack: MockSlack
    connector: MockConnector
    url: str
    http: aiohttp.ClientSession
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def store(self) -> Store:
        return self.service.store

    @property
    def slack_side(self) -> SlackHarness:
        """The same service seen from Slack (signed clicks to ``/slack/events``)."""
        return SlackHarness(
            service=self.service,
            channel=self.slack_channel,
            slack=self.slack,
            settings=self.slack_channel.settings,
            url=self.url.replace("/api/messages", "/slack/events"),
            http=self.http,
        )

    # -- what Teams sends ----------------------------------------------------------------------

    def activity(self, kind: str, user: str, conversation: str, **extra: Any) -> dict[str, Any]:
        personal = conversation.startswith("a:")
        body: dict[str, Any] = {
            "type": kind,
            "id": f"in-{uuid.uuid4().hex[:8]}",
            "channelId": "msteams",
            "serviceUrl": self.connector.url,
            "from": {"id": f"29:{user}", "name": user.title(), "aadObjectId": AAD.get(user, "")},
            "recipient": {"id": "28:hitl-bot", "name": "hitl"},
            "conversation": {
                "id": conversation,
                "conversationType": "personal" if personal else "channel",
                "tenantId": TENANT,
            },
            "channelData": {"tenant": {"id": TENANT}},
        }
        body.update(extra)
        return body

    async def post(self, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        raw = body if isinstance(body, str | bytes | io.BytesIO) else json.dumps(body)
        sent = {"Content-Type": "application/json", **self.headers, **(headers or {})}
        async with self.http.post(self.url, data=raw, headers=sent) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text) if text else None
            except ValueError:
                return r.status, text

    async def install_personal(self, user: str) -> None:
        """The app installed in ``user``'s personal chat (``a:<user>``)."""
        body = self.activity("installationUpdate", user, f"a:{user}", action="add")
        assert 201 == (await self.post(body))[0]

    async def install_channel(self, conversation: str, name: str) -> None:
        """The app added to a team channel named ``name``."""
        body = self.activity("conversationUpdate", "alice", conversation)
        body["channelData"] = {"tenant": {"id": TENANT}, "team": {"id": TEAM, "name": "Team"},
                               "channel": {"id": conversation, "name": name}}  # fmt: skip
        body["membersAdded"] = [{"id": "28:hitl-bot"}]
        assert 201 == (await self.post(body))[0]

    async def say(self, user: str, text: str) -> list[Call]:
        """``user`` writes ``text`` to the bot in their personal chat; returns the answers."""
        before = len(self.connector.sent(f"a:{user}"))
        status, _ = await self.post(self.activity("message", user, f"a:{user}", text=text))
        assert 201 == status
        return self.connector.sent(f"a:{user}")[before:]

    async def click(
        self,
        user: str,
        verb: str,
        request_id: str,
        *,
        conversation: str = APPROVALS,
        message: str = "",
        **inputs: Any,
    ) -> dict[str, Any]:
        """``user`` clicks ``verb`` on a card (``Action.Execute``); returns the invoke answer
        (``statusCode``, ``type``, ``value``)."""
        data = {"verb": verb, "request_id": request_id, **inputs}
        value = {"action": {"type": "Action.Execute", "verb": verb, "data": data},
                 "trigger": "manual"}  # fmt: skip
        body = self.activity("invoke", user, conversation, name="adaptiveCard/action",
                             value=value, replyToId=message or None)  # fmt: skip
        status, answer = await self.post(body)
        assert 200 == status, answer
        assert isinstance(answer, dict)
        return answer

    # -- requests ------------------------------------------------------------------------------

    async def submit(self, **fields: Any) -> RequestRecord:
        """XADD a request and run the real intake once."""
        body = request_fields(**fields)
        ApprovalRequest.model_validate(body)
        self.store.redis.xadd(self.store.keys.requests, {"request": json.dumps(body)})
        await asyncio.to_thread(drain, self.service.consumers[0])
        return self.store.get(body["id"])

    async def submit_and_post(self, channels: int = 2, **fields: Any) -> RequestRecord:
        """Submit a request and wait until its cards are posted and recorded."""
        record = await self.submit(**fields)

        def posted() -> RequestRecord | None:
            found = self.store.get(record.id)
            return found if len({c.channel for c in found.cards}) >= channels else None

        return await self.connector.wait_for(posted, what=f"the cards of {record.id}")

    def teams_card(self, record: RequestRecord) -> tuple[str, str]:
        """(conversation, activity id) of the record's first Teams copy."""
        ref = next(c for c in record.cards if c.channel == "teams")
        return ref.conversation, ref.message


def teams_settings(**overrides: Any) -> TeamsSettings:
    values: dict[str, Any] = {"auth_disabled": True, "default_channel": "approvals"}
    values.update(overrides)
    return TeamsSettings(**values)


async def start_teams(
    settings: Settings,
    store: Store,
    slack: MockSlack,
    connector: MockConnector,
    authority: Authority,
    teams: TeamsSettings,
) -> tuple[TeamsHarness, web.AppRunner]:
    service = Service(settings, store=store, authority=authority, dispatch=fast_dispatch())
    service.consumers[0].ensure_group()
    slack_channel = mount_slack(service, fast_settings(slack))
    channel = mount_teams(service, teams)
    assert slack_channel is not None and channel is not None
    runner = web.AppRunner(service.app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    harness = TeamsHarness(
        service=service,
        slack_channel=slack_channel,
        channel=channel,
        slack=slack,
        connector=connector,
        url=f"http://127.0.0.1:{port}{teams.path}",
        http=aiohttp.ClientSession(),
    )
    return harness, runner


@pytest.fixture
async def connector() -> AsyncIterator[MockConnector]:
    """The connector stand-in; the test fails if any card sent broke the Adaptive Card schema."""
    server = await MockConnector().start()
    yield server
    await server.close()
    assert [] == server.violations


@pytest.fixture
async def teams(
    settings: Settings,
    store: Store,
    mock_slack: MockSlack,
    connector: MockConnector,
    authority: Authority,
) -> AsyncIterator[TeamsHarness]:
    """The service with Slack and Teams (authentication off: this test configuration only),
    installed in the channels approvals and Ops and in alice's, bob's and carol's chats."""
    h, runner = await start_teams(settings, store, mock_slack, connector, authority,
                                  teams_settings())  # fmt: skip
    try:
        await h.install_channel(APPROVALS, "approvals")
        await h.install_channel(OPS, "Ops")
        for user in ("alice", "bob", "carol"):
            await h.install_personal(user)
        yield h
    finally:
        await h.http.close()
        await runner.cleanup()
        for consumer in h.service.consumers:
            consumer.close()
