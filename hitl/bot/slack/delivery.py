"""Calling Slack's Web API within its limits: pacing, ``Retry-After``, back-off.

Slack accepts about one new message per second per channel (short bursts allowed) and answers
``429`` with a ``Retry-After`` header beyond its limits. :class:`Caller` paces new messages per
channel with a token bucket (:class:`Pacer`), waits out every ``Retry-After`` (for that method,
workspace-wide: every later call of it waits too, including calls the pacer had already queued,
because the wait is checked last, just before a call goes out; and the channel's pacer restarts
from the end of the wait, so queued calls leave one per interval rather than all at once),
retries server errors and network failures with
exponential back-off and jitter, and raises :class:`DeliveryError` only when a call is refused
for good (``channel_not_found``) or still failing after ``give_up_after_s``::

    caller = Caller(client, settings)
    data = await caller.call("chat.postMessage", pace_key="C123", channel="C123", text="hi")
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from hitl.bot.channel import ChannelError
from hitl.bot.slack.settings import SlackSettings

__all__ = ["GONE_ERRORS", "Caller", "DeliveryError", "DeliveryStats", "Pacer"]

log = logging.getLogger("hitl.slack")

Sleep = Callable[[float], Awaitable[None]]
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 60.0
TRANSIENT_ERRORS = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"}
)
"""Slack ``error`` codes worth trying again; anything else (``channel_not_found``,
``invalid_blocks``, ``not_in_channel``) will fail the same way every time."""
GONE_ERRORS = frozenset(
    {"message_not_found", "channel_not_found", "cant_update_message", "is_archived"}
)
"""``chat.update`` errors after which a copy is not worth updating again."""


class DeliveryError(ChannelError):
    """A Web API call that failed for good: ``error`` is Slack's code (or the HTTP failure)."""

    def __init__(self, method: str, error: str, *, retryable: bool) -> None:
        super().__init__(f"{method} failed: {error}", gone=error in GONE_ERRORS)
        self.method = method
        self.error = error
        self.retryable = retryable


@dataclass
class DeliveryStats:
    calls: int = 0
    rate_limited: int = 0
    retried: int = 0
    failed: int = 0


class Pacer:
    """A token bucket per key: ``burst`` calls at once, then one per ``interval`` seconds."""

    def __init__(
        self,
        interval: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.interval = interval
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self._buckets: dict[str, tuple[float, float]] = {}

    async def wait(self, key: str) -> None:
        """Return when a call for ``key`` may go out (and count it)."""
        if self.interval <= 0:
            return
        while True:
            now = self.clock()
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) / self.interval)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > 10_000:
                    self._forget_full(now)
                return
            self._buckets[key] = (tokens, now)
            await self.sleep((1.0 - tokens) * self.interval)

    def hold(self, key: str, until: float) -> None:
        """No call for ``key`` before ``until`` (a ``Retry-After``); then one per interval."""
        if self.interval <= 0:
            return
        last = self._buckets.get(key, (0.0, until))[1]
        # One token at ``until`` (so none before): waiters re-read this when they wake.
        self._buckets[key] = (1.0, max(until, last))

    def _forget_full(self, now: float) -> None:
        full = [
            k
            for k, (tokens, last) in self._buckets.items()
            if tokens + (now - last) / self.interval >= self.burst
        ]
        for key in full:
            del self._buckets[key]


class Caller:
    """Web API calls with pacing, ``Retry-After`` and back-off (see the module docstring)."""

    def __init__(
        self,
        client: AsyncWebClient,
        settings: SlackSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.pacer = Pacer(settings.pace_interval_s, settings.pace_burst, clock=clock, sleep=sleep)
        self.stats = DeliveryStats()
        self._cooldown: dict[str, float] = {}

    async def call(self, method: str, *, pace_key: str | None = None, **payload: Any) -> Any:
        """``method`` with ``payload`` as JSON; returns the response's data (a dict)."""
        start = self.clock()
        attempts = 0
        while True:
            if pace_key is not None:
                await self.pacer.wait(pace_key)
            # After the pacer: a call it held may have been queued before a 429 arrived.
            await self._cool(method)
            self.stats.calls += 1
            try:
                response = await self.client.api_call(method, json=payload)
                return response.data
            except SlackApiError as exc:
                status = int(getattr(exc.response, "status_code", 0) or 0)
                error = _error_code(exc)
                if status == 429 or error == "ratelimited":
                    wait = _retry_after(exc)
                    self.stats.rate_limited += 1
                    until = max(self._cooldown.get(method, 0.0), self.clock() + wait)
                    self._cooldown[method] = until
                    if pace_key is not None:
                        self.pacer.hold(pace_key, until)
                    if self.clock() - start + wait > self.settings.give_up_after_s:
                        self.stats.failed += 1
                        raise DeliveryError(method, "ratelimited", retryable=True) from None
                    log.info("%s rate limited: waiting %.1fs (Retry-After)", method, wait)
                    continue
                if status < 500 and error not in TRANSIENT_ERRORS:
                    self.stats.failed += 1
                    raise DeliveryError(
                        method, error or f"HTTP {status}", retryable=False
                    ) from None
                failure = error or f"HTTP {status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            attempts += 1
            elapsed = self.clock() - start
            if attempts >= self.settings.max_attempts or elapsed > self.settings.give_up_after_s:
                self.stats.failed += 1
                raise DeliveryError(method, failure, retryable=True)
            delay = min(MAX_BACKOFF_S, self.settings.backoff_s * 2 ** (attempts - 1))
            delay *= random.uniform(0.5, 1.0)
            self.stats.retried += 1
            log.warning("%s failed (%s); retry %d in %.2fs", method, failure, attempts, delay)
            await self.sleep(delay)

    async def _cool(self, method: str) -> None:
        until = self._cooldown.get(method)
        while until is not None:
            left = until - self.clock()
            if left <= 0:
                self._cooldown.pop(method, None)
                return
            await self.sleep(left)
            until = self._cooldown.get(method)


def _error_code(exc: SlackApiError) -> str:
    try:
        return str(exc.response.get("error") or "")
    except Exception:  # a non-JSON body (an HTML error page) has no error code
        return ""


def _retry_after(exc: SlackApiError) -> float:
    headers = getattr(exc.response, "headers", None) or {}
    raw = None
    for key, value in dict(headers).items():
        if str(key).lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
    try:
        wait = float(raw) if raw is not None else 1.0
    except (TypeError, ValueError):
        wait = 1.0
    return min(MAX_RETRY_AFTER_S, max(0.0, wait))
