"""The web inbox (``/inbox``): review without Slack or Teams, in any browser.

Served by ``hitl serve`` beside ``/api/v1``, whose handlers decide every form (the inbox is a
client of the API with a session instead of a token)::

    api = mount_api(service)
    inbox = mount_inbox(service, api)     # GET /inbox, /inbox/r/{id}, /inbox/history, ...

Reviewers sign in with a password (``hitl inbox passwd USER``) or a one-time link
(``hitl inbox login USER``); see docs/inbox.md.
"""

from __future__ import annotations

from hitl.bot.api import Api
from hitl.bot.api.routes import ApiService

from .signin import InboxSettings
from .web import Inbox

__all__ = ["Inbox", "InboxSettings", "mount_inbox"]


def mount_inbox(service: ApiService, api: Api, settings: InboxSettings | None = None) -> Inbox:
    """Add the inbox's routes to ``service.app`` (before it starts)."""
    inbox = Inbox(service, api, settings)
    inbox.mount(service.app)
    return inbox
