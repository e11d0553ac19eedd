"""A running service for the notifier tests: the real HTTP app (confirmation pages, Twilio
callbacks), its dispatcher with a recording chat channel and the outbox, a manual clock with
rq's burst worker for the scheduler's jobs, and the provider stand-ins::

    with notify_rig(settings, r) as rig:
        rid = rig.submit(client)
        rig.run_due(20)               # minutes after NIGHT: the due escalations run
        rig.page("GET", link)         # (status, HTML)
"""

from __future__ import annotations

import datetime
import http.client
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlparse

import redis

from hitl.bot.notify.mount import mount_notifiers
from hitl.bot.notify.outbox import Outbox
from hitl.client import Client
from hitl.config import Settings
from hitl.jobs import JobContext, use_context
from hitl.policies import parse_policy
from hitl.queue.scheduler import ManualClock, SchedulerConfig
from hitl.queue.store import Store
from hitl.service import Service
from tests.api_server import ApiServer
from tests.bot.notify.standins import Providers
from tests.bot.test_dispatch import Recorder
from tests.scenarios.helpers import drain
from tests.scenarios.test_escalation import BurstWorker

__all__ = ["NIGHT", "POLICY", "Rig", "notify_rig"]

NIGHT = datetime.datetime(2030, 1, 5, 2, 0, tzinfo=datetime.UTC).timestamp()

POLICY = """
roles: {engineer: "", engineering_manager: ""}
reviewers:
  - {id: alice, display_name: Alice Adams, slack_id: U0ALICE, roles: [engineer]}
  - {id: erin, display_name: Erin Evans, slack_id: U0ERIN, phone: "+15550000001",
     email: erin@example.com, roles: [engineer]}
  - {id: dave, display_name: Dave Davis, slack_id: U0DAVE, roles: [engineer]}
  - {id: bob, display_name: Bob Brown, slack_id: U0BOB, phone: "+15550000002",
     email: bob@example.com, roles: [engineering_manager]}
schedules:
  primary: {members: [erin]}
  secondary: {members: [dave]}
  managers: {members: [bob]}
tools: {stop_instance: high, restart_service: high}
rules:
  - name: restarts
    action: restart_service
    roles: [engineering_manager]
    destination: [oncall:primary, sms:user:bob]
    escalation: ["10m -> email:bob", 60m -> timeout]
  - name: production-changes
    action: stop_instance
    roles: [engineering_manager, engineer]
    destination: [oncall:primary, jira:OPS]
    escalation:
      - 10m -> oncall:secondary
      - 20m -> oncall:managers, sms:oncall:managers, pagerduty:ops
      - 60m -> timeout
"""


@dataclass
class Rig:
    service: Service
    api: ApiServer
    providers: Providers
    slack: Recorder
    ctx: JobContext
    clock: ManualClock
    outbox: Outbox

    @property
    def store(self) -> Store:
        return self.service.store

    def run_due(self, at_minutes: float) -> None:
        self.clock.now = NIGHT + at_minutes * 60
        self.ctx.scheduler.enqueue_due()
        BurstWorker([self.ctx.scheduler.queue], connection=self.ctx.scheduler.connection).work(
            burst=True
        )

    def page(self, method: str, url: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        """``(status, HTML)`` of a GET or a form POST to the service."""
        conn = http.client.HTTPConnection("127.0.0.1", self.api.port, timeout=30)
        body = urlencode(form).encode() if form is not None else None
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        try:
            conn.request(method, urlparse(url).path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()

    def submit(
        self, client: Client, action: str = "stop_instance", context: dict[str, Any] | None = None
    ) -> str:
        rid = client.submit(
            action,
            {"instance_id": "i-0prod7", "environment": "production"},
            summary="Stop production instance i-0prod7",
            reasoning="The instance is stuck in a crash loop and costs money.",
            requested_by="alice",
            context=context or {},
        )
        drain(self.service.consumers[0])
        return rid


@contextmanager
def notify_rig(
    settings: Settings, r: redis.Redis, policy: str = POLICY, **notify: Any
) -> Iterator[Rig]:
    """The rig, running; ``notify`` overrides the stand-ins' notifier settings."""
    clock = ManualClock(NIGHT)
    store = Store(r, signer=settings.signing_keys(), clock=clock)
    authority = parse_policy(textwrap.dedent(policy), source="policy.yaml")
    service = Service(settings, store=store, authority=authority)
    service.consumers[0].ensure_group()
    slack = Recorder("slack")
    service.add_channel(slack)
    api = ApiServer(service)
    with Providers() as providers:
        outbox = mount_notifiers(service, providers.settings(api.url, **notify))
        assert outbox is not None
        ctx = JobContext.build(store, SchedulerConfig())
        try:
            with use_context(ctx), api:
                yield Rig(service, api, providers, slack, ctx, clock, outbox)
        finally:
            ctx.scheduler.connection.close()
            service.consumers[0].close()
