"""Run the notifiers inside ``hitl serve``: one call from :class:`hitl.service.Service`.

::

    outbox = mount_notifiers(service)    # before the aiohttp app starts; None when none configured

It builds a notifier for each provider the settings configure, hands the outbox to the service's
dispatcher (which starts and stops it with the aiohttp app) and, with SMS, adds Twilio's status
callback route.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .outbox import Outbox
from .settings import NotifySettings
from .web import mount_twilio

if TYPE_CHECKING:
    from hitl.service import Service

__all__ = ["mount_notifiers"]

log = logging.getLogger("hitl.notify")


def mount_notifiers(service: Service, settings: NotifySettings | None = None) -> Outbox | None:
    """Wire the configured notifiers into ``service`` (see the module docstring)."""
    from . import build_notifiers

    settings = settings or NotifySettings.from_env()
    notifiers = build_notifiers(settings)
    if not notifiers:
        return None
    outbox = Outbox(
        service.store,
        notifiers,
        people=service.authority,
        settings=settings,
        keyring=service.keyring,
    )
    service.dispatcher.outbox = outbox
    if settings.sms_enabled:
        mount_twilio(service.app, outbox, settings)
    log.info("notifiers: %s", ", ".join(n.kind for n in notifiers))
    return outbox
