"""Who is on call, as PagerDuty says, instead of the policy file's rotation.

With ``HITL_PAGERDUTY_API_TOKEN`` and ``HITL_PAGERDUTY_SCHEDULES`` (``managers=PSCHED1``), the
service reads ``GET /oncalls?schedule_ids[]=...&include[]=users&earliest=true`` (REST API v2)
every ``oncall_refresh_s`` and answers ``oncall:managers`` with the people PagerDuty has on call
at the first escalation level of that schedule, matched to the policy's directory by email. It
only changes who is *told* (cards, SMS, email): who may *approve* is still the policy's roles.
A schedule PagerDuty has not answered for yet (an outage at start, a user who is not a reviewer)
keeps the policy's own rotation::

    people = PagerDutyOncall(settings, policy)     # resolve / same_person / reviewer, like Policy
    await people.start()                           # first read, then a refresh loop
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from typing import Any

from hitl.models import Destination

from .base import NotifyError
from .http import JsonClient
from .outbox import Contacts, Person
from .settings import NotifySettings

__all__ = ["PagerDutyOncall"]

log = logging.getLogger("hitl.notify")


class PagerDutyOncall:
    """The policy's people, with on-call schedules read from PagerDuty (see the module)."""

    def __init__(self, settings: NotifySettings, people: Contacts) -> None:
        self.settings = settings
        self.people = people
        self.client = JsonClient(
            "PagerDuty",
            settings.timeout_s,
            headers={
                "Authorization": f"Token token={settings.pagerduty_api_token}",
                "Accept": "application/vnd.pagerduty+json;version=2",
            },
        )
        self.on_call: dict[str, list[str]] = {}
        """Policy schedule name -> directory ids on call now, as last read."""
        self._task: asyncio.Task[None] | None = None

    # -- People / Contacts ---------------------------------------------------------------------

    def resolve(self, destination: Destination, at: datetime.datetime) -> list[str]:
        if destination.kind == "oncall" and self.on_call.get(destination.target):
            return list(self.on_call[destination.target])
        return self.people.resolve(destination, at)

    def same_person(self, a: str, b: str) -> bool:
        return self.people.same_person(a, b)

    def reviewer(self, user_id: str) -> Person | None:
        return self.people.reviewer(user_id)

    # -- reading PagerDuty ---------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read who is on call now; a failure keeps what was known."""
        by_id = {pd: name for name, pd in self.settings.pagerduty_schedules.items()}
        query = "&".join(f"schedule_ids[]={pd}" for pd in by_id)
        url = f"{self.settings.pagerduty_api_url}/oncalls?{query}&include[]=users&earliest=true"
        answer = await self.client.call("GET", url)
        entries: list[Any] = answer.get("oncalls", []) if isinstance(answer, dict) else []
        found: dict[str, list[tuple[int, str]]] = {}
        for entry in entries:
            schedule = (entry.get("schedule") or {}).get("id")
            user = entry.get("user") or {}
            name = by_id.get(str(schedule))
            if name is None:
                continue
            reviewer = self.people.reviewer(str(user.get("email") or ""))
            if reviewer is None:
                log.warning("PagerDuty has %s on call for %s: not in the reviewer directory",
                            user.get("summary") or user.get("id"), name)  # fmt: skip
                continue
            level = int(entry.get("escalation_level") or 1)
            found.setdefault(name, []).append((level, reviewer.id))
        self.on_call = {
            name: list(dict.fromkeys(i for lvl, i in people if lvl == min(p[0] for p in people)))
            for name, people in found.items()
        }

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.oncall_refresh_s)
            try:
                await self.refresh()
            except NotifyError as exc:
                log.warning("PagerDuty on-call not refreshed: %s", exc)

    async def start(self) -> None:
        await self.client.start()
        try:
            await self.refresh()
        except NotifyError as exc:
            log.warning("PagerDuty on-call not read at start (the policy's rotation is used): %s",
                        exc)  # fmt: skip
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.client.stop()
