"""SMS through Twilio's REST API, and its delivery status callbacks.

Sending is one form-encoded POST to ``/2010-04-01/Accounts/{AccountSid}/Messages.json`` with
HTTP basic auth (Account SID, auth token) and ``To``, ``From``, ``Body``, ``StatusCallback``;
Twilio answers 201 with the message's ``sid``. As the message moves (``sent``, ``delivered``,
``undelivered``, ``failed``) Twilio POSTs to the status callback, signed: ``X-Twilio-Signature``
is base64(HMAC-SHA1(auth token, the full callback URL + every POST parameter, sorted by name,
name and value concatenated)). :func:`twilio_signature` computes it; a callback whose signature
does not match is refused (403) and changes nothing::

    notifier = SmsNotifier(settings)       # TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, HITL_TWILIO_FROM
    await notifier.send(message)           # -> Sent(ref="SM...", address="+15550000002")
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

import aiohttp

from hitl.bot.cards import card_view
from hitl.models import RequestRecord
from hitl.queue.deliveries import Delivery

from .base import Message, NotifyError, Sent
from .http import basic_auth
from .settings import NotifySettings

__all__ = ["STATUS_PATH", "SmsNotifier", "render_sms", "twilio_signature"]

STATUS_PATH = "/api/v1/notify/twilio/status"
"""Where Twilio reports on messages (under ``HITL_PUBLIC_URL``)."""
MAX_SUMMARY = 80


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """What Twilio puts in ``X-Twilio-Signature`` for a POST of ``params`` to ``url``."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def render_sms(message: Message) -> str:
    """A short text: what, the risk, why now, and the confirmation page's link."""
    view = card_view(message.record)
    title = view.title if len(view.title) <= MAX_SUMMARY else view.title[: MAX_SUMMARY - 1] + "…"
    why = "escalated to you" if message.what.startswith("escalation") else message.what
    return (
        f"hitl: approval needed ({why}): {title}. Risk: {view.risk.value}. "
        f"Review and decide: {message.links.get('page', '')}"
    )


class SmsNotifier:
    """Sends ``sms:`` targets through Twilio (see the module docstring)."""

    kind = "sms"

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def status_url(self) -> str:
        return self.settings.public_url + STATUS_PATH

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, message: Message) -> Sent:
        person = message.person
        if person is None or not person.phone:
            raise NotifyError("the reviewer has no phone number in the directory", retry=False)
        if self._session is None:
            raise NotifyError("the SMS notifier is not started")
        s = self.settings
        url = f"{s.twilio_api_url}/2010-04-01/Accounts/{s.twilio_sid}/Messages.json"
        form = {
            "To": person.phone,
            "From": s.twilio_from,
            "Body": render_sms(message),
            "StatusCallback": self.status_url,
        }
        auth = basic_auth(s.twilio_sid, s.twilio_token)
        try:
            async with self._session.post(url, data=form, headers=auth) as response:
                body = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise NotifyError(f"Twilio: {exc}") from exc
        if status != 201 or not isinstance(body, dict) or not body.get("sid"):
            text = body.get("message", body) if isinstance(body, dict) else body
            raise NotifyError(
                f"Twilio answered {status}: {text}", retry=status >= 500 or status == 429
            )
        return Sent(status="sent", ref=str(body["sid"]), address=person.phone)

    async def decided(self, record: RequestRecord, delivery: Delivery) -> Sent | None:
        return None
