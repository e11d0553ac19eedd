"""PagerDuty Events API v2: an incident when an escalation step names ``pagerduty:<service>``,
resolved when the request is decided.

One POST to ``/v2/enqueue`` per event, ``{"routing_key", "event_action", "dedup_key",
"payload"}``; PagerDuty answers 202 ``{"status": "success", "dedup_key": ...}``. The dedup key is
``hitl-<request id>``: a second trigger for the same request (a retry, another replica, a later
step) updates the one incident instead of opening another, and the resolve closes it. The routing
key of each service name comes from ``HITL_PAGERDUTY_ROUTING_KEYS``, never from the policy::

    notifier = PagerDutyNotifier(settings)
    await notifier.send(message)                 # -> Sent(ref="hitl-r-42")
    await notifier.decided(record, delivery)     # resolve
"""

from __future__ import annotations

from typing import Any

from hitl.bot.cards import card_view
from hitl.models import RequestRecord, Risk
from hitl.queue.deliveries import Delivery

from .base import Message, NotifyError, Sent
from .http import JsonClient
from .settings import NotifySettings

__all__ = ["PagerDutyNotifier", "dedup_key"]

SEVERITY = {Risk.LOW: "info", Risk.MEDIUM: "warning", Risk.HIGH: "error", Risk.CRITICAL: "critical"}


def dedup_key(request_id: str) -> str:
    return f"hitl-{request_id}"[:255]


class PagerDutyNotifier:
    """Triggers and resolves incidents for ``pagerduty:`` targets."""

    kind = "pagerduty"

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.client = JsonClient("PagerDuty", settings.timeout_s)

    async def start(self) -> None:
        await self.client.start()

    async def stop(self) -> None:
        await self.client.stop()

    def _routing_key(self, service: str) -> str:
        key = self.settings.pagerduty_routing_keys.get(service)
        if not key:
            raise NotifyError(
                f"no routing key for PagerDuty service {service!r}; add {service}=<key> to "
                "HITL_PAGERDUTY_ROUTING_KEYS",
                retry=False,
            )
        return key

    async def _event(self, body: dict[str, Any]) -> Any:
        return await self.client.call(
            "POST", self.settings.pagerduty_events_url, body, expect=(200, 202)
        )

    async def send(self, message: Message) -> Sent:
        record = message.record
        view = card_view(record)
        key = dedup_key(record.id)
        body = {
            "routing_key": self._routing_key(message.target.target),
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {
                "summary": f"Approval needed ({message.what}): {view.title}"[:1024],
                "source": "hitl",
                "severity": SEVERITY[view.risk],
                "component": view.action,
                "group": view.agent_id or "agents",
                "class": "approval",
                "custom_details": {
                    "request_id": record.id,
                    "risk": view.risk.value,
                    "requested_by": view.requested_by,
                    "status": view.status,
                    "why": message.text,
                },
            },
        }
        answer = await self._event(body)
        if isinstance(answer, dict) and answer.get("status") not in (None, "success"):
            raise NotifyError(f"PagerDuty refused the event: {answer}", retry=False)
        return Sent(status="sent", ref=key, address=message.target.target)

    async def decided(self, record: RequestRecord, delivery: Delivery) -> Sent | None:
        body = {
            "routing_key": self._routing_key(delivery.to),
            "event_action": "resolve",
            "dedup_key": delivery.ref,
        }
        await self._event(body)
        return Sent(status="resolved", ref=delivery.ref, address=delivery.to)
