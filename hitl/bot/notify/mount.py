"""Run the notifiers inside ``hitl serve``: one call from :class:`hitl.service.Service`.

::

    outbox = mount_notifiers(service)    # before the aiohttp app starts; None when none configured

It builds a notifier for each provider the settings configure, hands the outbox to the service's
dispatcher (which starts and stops it with the aiohttp app) and, with SMS, adds Twilio's status
callback route. With a PagerDuty REST key and schedule map, who is on call comes from PagerDuty
(:class:`~hitl.bot.notify.oncall.PagerDutyOncall`) for the cards and the notifiers alike.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from .base import Notifier
from .email import EmailNotifier
from .jira import JiraNotifier
from .oncall import PagerDutyOncall
from .outbox import Contacts, Outbox
from .pagerduty import PagerDutyNotifier
from .settings import NotifySettings
from .sms import SmsNotifier
from .web import mount_twilio

if TYPE_CHECKING:
    from hitl.service import Service

__all__ = ["build_notifiers", "mount_notifiers"]

log = logging.getLogger("hitl.notify")


def mount_notifiers(service: Service, settings: NotifySettings | None = None) -> Outbox | None:
    """Wire the configured notifiers into ``service`` (see the module docstring)."""
    settings = settings or NotifySettings.from_env()
    people: object = service.authority
    if settings.pagerduty_oncall_enabled and isinstance(people, Contacts):
        oncall = PagerDutyOncall(settings, people)
        service.dispatcher.people = people = oncall

        async def start(_: web.Application) -> None:
            await oncall.start()

        async def stop(_: web.Application) -> None:
            await oncall.stop()

        service.app.on_startup.insert(0, start)  # before the dispatcher posts anything
        service.app.on_cleanup.append(stop)
    notifiers = build_notifiers(settings)
    if not notifiers:
        return None
    outbox = Outbox(
        service.store,
        notifiers,
        people=people,
        settings=settings,
        keyring=service.keyring,
    )
    service.dispatcher.outbox = outbox
    if settings.sms_enabled:
        mount_twilio(service.app, outbox, settings)
    log.info("notifiers: %s", ", ".join(n.kind for n in notifiers))
    return outbox


def build_notifiers(settings: NotifySettings) -> list[Notifier]:
    """A notifier for each provider the settings configure."""
    out: list[Notifier] = []
    if settings.email_enabled:
        out.append(EmailNotifier(settings))
    if settings.sms_enabled:
        out.append(SmsNotifier(settings))
    if settings.pagerduty_enabled:
        out.append(PagerDutyNotifier(settings))
    if settings.jira_enabled:
        out.append(JiraNotifier(settings))
    return out
