"""A local stand-in for the Bot Framework connector (the ``serviceUrl`` of Teams activities).

It answers the Connector REST API calls a bot makes, as the real service does (``{"id": ...}``),
records every sent and updated activity, and checks every Adaptive Card in them against the
official 1.5 schema (:attr:`MockConnector.violations`; the fixture fails the test on any)::

    connector = await MockConnector().start()
    activity["serviceUrl"] = connector.url
    ...
    connector.sent("a:bob")            # messages posted in that conversation
    connector.updated("a:bob")         # (activity id, activity) pairs replaced by update_activity
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from tests.bot.teams.schema import SCHEMA, schema_errors
from tests.redis_server import free_port

CARD = "application/vnd.microsoft.card.adaptive"
T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    """One call the bot made: ``send``, ``reply`` or ``update``, in which conversation."""

    kind: str
    conversation: str
    activity_id: str
    activity: dict[str, Any]
    authorization: str

    @property
    def cards(self) -> list[dict[str, Any]]:
        return [
            a["content"]
            for a in self.activity.get("attachments") or []
            if a.get("contentType") == CARD
        ]

    @property
    def text(self) -> str:
        return str(self.activity.get("text") or "")


class MockConnector:
    """See the module docstring."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.fail_conversations: dict[str, int] = {}
        """Conversation id -> HTTP status to answer with (a removed bot: 403)."""
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> MockConnector:
        app = web.Application()
        app.router.add_post("/v3/conversations/{conversation}/activities", self._send)
        app.router.add_post("/v3/conversations/{conversation}/activities/{id}", self._reply)
        app.router.add_put("/v3/conversations/{conversation}/activities/{id}", self._update)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- answering -----------------------------------------------------------------------------

    async def _record(self, request: web.Request, kind: str, activity_id: str) -> web.Response:
        conversation = request.match_info["conversation"]
        status = self.fail_conversations.get(conversation.split(";", 1)[0])
        if status is not None:
            return web.json_response({"error": {"code": "BotNotInConversationRoster"}},
                                     status=status)  # fmt: skip
        activity = await request.json()
        call = Call(kind, conversation, activity_id, activity,
                    request.headers.get("Authorization", ""))  # fmt: skip
        for card in call.cards:
            if SCHEMA.is_file():
                self.violations += [f"{kind} {conversation}: {e}" for e in schema_errors(card)]
        self.calls.append(call)
        return web.json_response({"id": activity_id})

    async def _send(self, request: web.Request) -> web.Response:
        return await self._record(request, "send", f"act-{next(self._ids)}")

    async def _reply(self, request: web.Request) -> web.Response:
        return await self._record(request, "reply", f"act-{next(self._ids)}")

    async def _update(self, request: web.Request) -> web.Response:
        return await self._record(request, "update", request.match_info["id"])

    # -- reading -------------------------------------------------------------------------------

    def sent(self, conversation: str | None = None) -> list[Call]:
        """Messages posted (not updates), in ``conversation`` (its threads included) or all."""
        return [
            c
            for c in self.calls
            if c.kind != "update"
            and (conversation is None or c.conversation.split(";", 1)[0] == conversation)
        ]

    def updated(self, conversation: str | None = None, activity_id: str = "") -> list[Call]:
        return [
            c
            for c in self.calls
            if c.kind == "update"
            and (conversation is None or c.conversation == conversation)
            and (not activity_id or c.activity_id == activity_id)
        ]

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,  # noqa: ASYNC109 - a polling helper, like helpers.wait_until
        what: str = "condition",
    ) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.01)
