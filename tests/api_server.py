"""The real service's HTTP API on a free port, in a background event loop, for the tests.

It runs the :class:`~hitl.service.Service`'s own aiohttp application with the API, the inbox
and ``/metrics`` mounted as ``hitl serve`` mounts them (no intake threads: tests store
requests themselves), and mints tokens with the same code as ``hitl tokens create``::

    with ApiServer(service) as api:
        token = api.token("bob")
        status, body, headers = api.call("POST", "/requests/r-1/approve", token, {"reason": "ok"})
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from typing import Any

from aiohttp import web

from hitl.bot.api import mount_api
from hitl.bot.inbox import InboxSettings, mount_inbox
from hitl.bot.prometheus import mount_metrics
from hitl.handlers.tokens import Directory, issue
from hitl.queue.tokens import TokenRecord, TokenRecords
from hitl.service import Service
from tests.redis_server import free_port

__all__ = ["ApiServer"]


class ApiServer:
    def __init__(self, service: Service) -> None:
        self.service = service
        self.port = free_port()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.records = TokenRecords(service.store)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        self.api = mount_api(self.service)
        self.inbox = mount_inbox(self.service, self.api, InboxSettings(secure_cookie="0"))
        mount_metrics(self.service)
        ready = threading.Event()
        runner = web.AppRunner(self.service.app, access_log=None)
        loop = self.loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", self.port)
            loop.run_until_complete(site.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self.thread = threading.Thread(target=run, name="api-server", daemon=True)
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("the API server did not start")
        return self

    def stop(self) -> None:
        if self.thread is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.thread = None

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- tokens and calls ----------------------------------------------------------------------

    def issue(
        self, who: str, *, operator: bool = False, expires_days: float = 1.0
    ) -> tuple[str, TokenRecord]:
        """A token for ``who`` (through the code `hitl tokens create` uses) and its record."""
        authority = self.service.authority
        directory = authority if isinstance(authority, Directory) else None
        return issue(
            self.records,
            self.service.keyring,
            directory,
            who,
            actor="test-operator",
            operator=operator,
            expires_days=expires_days,
        )

    def token(self, who: str, *, operator: bool = False) -> str:
        return self.issue(who, operator=operator)[0]

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """``(status, JSON answer, headers)`` of one request to ``/api/v1<path>``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, "/api/v1" + path, body=data, headers=sent)
            response = conn.getresponse()
            payload = response.read()
            return response.status, json.loads(payload or b"null"), dict(response.getheaders())
        finally:
            conn.close()
