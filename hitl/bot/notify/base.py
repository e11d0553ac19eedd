"""The seam every notifier (email, SMS, PagerDuty, Jira) implements, and what it is handed.

A notifier is not an approval channel: it has no cards to update and no rules of its own. The
:class:`~hitl.bot.notify.outbox.Outbox` decides what is sent to whom and when, retries, records
and fails over; a notifier only makes one call to its provider::

    class Pager:                                   # satisfies Notifier
        kind = "pagerduty"
        async def send(self, message): ...         # -> Sent(ref="hitl-r-42")
        async def decided(self, record, delivery): ...   # resolve the incident
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from hitl.errors import HitlError
from hitl.models import NotifyTarget, RequestRecord
from hitl.queue.deliveries import Delivery, DeliveryStatus

__all__ = ["Contact", "Message", "Notifier", "NotifyError", "Sent"]


class NotifyError(HitlError):
    """One try failed. ``retry``: worth trying again (a timeout, a 5xx, a 429); otherwise the
    outbox fails over at once (a 400, a missing address)."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Contact:
    """A reviewer as a notifier reaches them (from the policy's directory)."""

    id: str
    name: str
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Message:
    """One notification to send: about ``record``, for ``target``, to ``person`` (email/SMS)."""

    record: RequestRecord
    target: NotifyTarget
    what: str
    """``review``, ``escalation level 2 of 3``, ``fallback for sms:oncall:managers``."""
    text: str = ""
    """Why it is sent, in a sentence (the escalation notice)."""
    person: Contact | None = None
    links: dict[str, str] = field(default_factory=dict)
    """Decision links minted for ``person``: ``page`` (SMS), ``approve`` and ``reject`` (email)."""


@dataclass(frozen=True)
class Sent:
    """What a provider answered: the delivery's new status, its id there, the address used."""

    status: DeliveryStatus = "sent"
    ref: str = ""
    address: str = ""


class Notifier(Protocol):
    """A provider the outbox sends through (see the module docstring)."""

    @property
    def kind(self) -> str:
        """``email``, ``sms``, ``pagerduty`` or ``jira``: the targets it serves."""
        ...

    async def start(self) -> None:
        """Open connections (inside the serving event loop)."""
        ...

    async def stop(self) -> None:
        """Close what :meth:`start` opened."""
        ...

    async def send(self, message: Message) -> Sent:
        """Send one notification; :class:`NotifyError` when it failed."""
        ...

    async def decided(self, record: RequestRecord, delivery: Delivery) -> Sent | None:
        """``record`` was decided: follow up on what ``delivery`` started (resolve the
        incident, comment on the issue). None: nothing to do."""
        ...
