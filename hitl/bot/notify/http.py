"""One JSON call over HTTP for the notifiers that speak JSON (PagerDuty, Jira): the error words
and the retry rule (5xx, 429 and network failures are worth retrying; other 4xx are not) once."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp

from .base import NotifyError

__all__ = ["JsonClient", "basic_auth"]


def basic_auth(user: str, password: str) -> dict[str, str]:
    """The ``Authorization`` header of HTTP basic auth."""
    raw = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"Authorization": f"Basic {raw}"}


class JsonClient:
    """An aiohttp session for one provider, opened by :meth:`start`."""

    def __init__(
        self, provider: str, timeout_s: float, headers: dict[str, str] | None = None
    ) -> None:
        self.provider = provider
        self.timeout_s = timeout_s
        self.headers = headers or {}
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self.headers)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def call(
        self, method: str, url: str, body: Any = None, expect: tuple[int, ...] = (200,)
    ) -> Any:
        """The JSON answer (None for an empty one); :class:`NotifyError` otherwise."""
        if self._session is None:
            raise NotifyError(f"the {self.provider} notifier is not started")
        try:
            async with self._session.request(method, url, json=body) as response:
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise NotifyError(f"{self.provider}: {exc}") from exc
        if status not in expect:
            text = raw[:300].decode("utf-8", "replace")
            raise NotifyError(
                f"{self.provider} answered {status} to {method} {url}: {text}",
                retry=status >= 500 or status == 429,
            )
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise NotifyError(f"{self.provider} answered something that is not JSON") from exc
