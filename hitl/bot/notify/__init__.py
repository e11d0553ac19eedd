"""Notifiers beside the chat channels: email, SMS (Twilio), PagerDuty and Jira.

A policy names them as targets (``sms:oncall:managers``, ``pagerduty:ops``, ``jira:OPS``) in a
destination or an escalation step; the dispatcher hands each moment (review, escalation,
decision) to the :class:`Outbox`, which sends, retries, records and fails over. Credentials come
from :class:`NotifySettings` (the environment). docs/notifications.md has the whole story::

    settings = NotifySettings.from_env()
    outbox = Outbox(store, build_notifiers(settings), people=policy, settings=settings,
                    keyring=ring)
"""

from __future__ import annotations

from .base import Contact, Message, Notifier, NotifyError, Sent
from .email import EmailNotifier
from .jira import JiraNotifier
from .mount import build_notifiers, mount_notifiers
from .oncall import PagerDutyOncall
from .outbox import Outbox
from .pagerduty import PagerDutyNotifier
from .settings import NotifySettings
from .sms import SmsNotifier
from .web import mount_twilio

__all__ = [
    "Contact",
    "EmailNotifier",
    "JiraNotifier",
    "Message",
    "Notifier",
    "NotifyError",
    "NotifySettings",
    "Outbox",
    "PagerDutyNotifier",
    "PagerDutyOncall",
    "Sent",
    "SmsNotifier",
    "build_notifiers",
    "mount_notifiers",
    "mount_twilio",
]
