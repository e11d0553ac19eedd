"""Twilio's delivery status callbacks (``POST /api/v1/notify/twilio/status``).

Each callback is checked the way Twilio documents it (``X-Twilio-Signature``, see
:func:`~hitl.bot.notify.sms.twilio_signature`, computed over ``HITL_PUBLIC_URL`` + the path, so
behind a proxy the URL Twilio called is the one checked); an unsigned or forged one is refused
with 403 and changes nothing. A valid one moves the delivery's status; ``failed`` and
``undelivered`` are audited and fail over to the next target::

    mount_twilio(app, outbox, settings)
"""

from __future__ import annotations

import hmac
import logging
from typing import cast
from urllib.parse import parse_qs

from aiohttp import web

from hitl.queue.deliveries import DeliveryStatus

from .outbox import Outbox
from .settings import NotifySettings
from .sms import STATUS_PATH, twilio_signature

__all__ = ["mount_twilio"]

log = logging.getLogger("hitl.notify")

MAX_CALLBACK = 16 * 1024
_STATUSES = {
    "queued": "sent",
    "accepted": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
}


def mount_twilio(app: web.Application, outbox: Outbox, settings: NotifySettings) -> None:
    """Add the status callback route to ``app``."""
    url = settings.public_url + STATUS_PATH

    async def status(request: web.Request) -> web.Response:
        raw = await request.content.read(MAX_CALLBACK + 1)
        if len(raw) > MAX_CALLBACK:
            return web.json_response({"error": "too large"}, status=413)
        params = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        expected = twilio_signature(settings.twilio_token, url, params)
        given = request.headers.get("X-Twilio-Signature", "")
        if not hmac.compare_digest(expected, given):
            log.warning("Twilio status callback with a bad signature refused")
            return web.json_response({"error": "bad signature"}, status=403)
        sid, state = params.get("MessageSid", ""), params.get("MessageStatus", "")
        mapped = _STATUSES.get(state)
        if not sid or mapped is None:
            return web.json_response({"error": "MessageSid and MessageStatus needed"}, status=400)
        error = params.get("ErrorCode", "")
        text = f"Twilio {state} (error {error})" if error else ""
        found = await outbox.status(sid, cast(DeliveryStatus, mapped), text)
        if found is None:
            return web.json_response({"error": "unknown message"}, status=404)
        return web.Response(status=204)

    app.router.add_post(STATUS_PATH, status)
