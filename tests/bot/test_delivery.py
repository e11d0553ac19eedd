"""Pacer and Caller: the token bucket, Retry-After, back-off, and what is never retried."""

from __future__ import annotations

import time

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from hitl.bot.slack import Caller, DeliveryError, Pacer, SlackSettings
from tests.bot.slack_server import MockSlack


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_pacer_allows_a_burst_then_one_per_interval() -> None:
    """Burst of 3 at once, then one call per second, per key; other keys are not held up."""
    t = FakeTime()
    pacer = Pacer(1.0, 3, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        await pacer.wait("C1")
    assert 100.0 == t.now
    await pacer.wait("C1")
    await pacer.wait("C1")
    assert pytest.approx(102.0) == t.now
    before = t.now
    await pacer.wait("C2")
    assert before == t.now


async def test_pacer_refills_while_quiet() -> None:
    """After a quiet spell the burst is available again."""
    t = FakeTime()
    pacer = Pacer(1.0, 2, clock=t.clock, sleep=t.sleep)
    for _ in range(2):
        await pacer.wait("C1")
    t.now += 10
    await pacer.wait("C1")
    await pacer.wait("C1")
    assert [] == t.sleeps


async def test_pacer_hold_delays_the_key_then_paces() -> None:
    """After hold(key, until) the next call waits until ``until``, the one after an interval."""
    t = FakeTime()
    pacer = Pacer(1.0, 3, clock=t.clock, sleep=t.sleep)
    await pacer.wait("C1")
    pacer.hold("C1", 103.0)
    await pacer.wait("C1")
    assert pytest.approx(103.0) == t.now
    await pacer.wait("C1")
    assert pytest.approx(104.0) == t.now
    await pacer.wait("C2")
    assert pytest.approx(104.0) == t.now


def _caller(slack: MockSlack, **overrides: object) -> Caller:
    settings = SlackSettings(
        bot_token="xoxb-1",
        signing_secret="s",
        api_url=slack.api_url,
        backoff_s=0.01,
        **overrides,  # type: ignore[arg-type]
    )
    return Caller(AsyncWebClient(token="xoxb-1", base_url=slack.api_url), settings)


async def test_retry_after_is_honoured(mock_slack: MockSlack) -> None:
    """A 429 with Retry-After: 1 is waited out, then the call succeeds."""
    caller = _caller(mock_slack)
    mock_slack.rate_limit(0.5, retry_after=1)
    start = time.monotonic()
    data = await caller.call("chat.postMessage", channel="#c", text="hi")
    assert data["ok"]
    assert time.monotonic() - start >= 0.95
    assert 1 == caller.stats.rate_limited


async def test_permanent_errors_are_not_retried(mock_slack: MockSlack) -> None:
    """channel_not_found fails at once (retrying cannot help)."""
    caller = _caller(mock_slack)
    mock_slack.refuse("#gone")
    with pytest.raises(DeliveryError) as caught:
        await caller.call("chat.postMessage", channel="#gone", text="hi")
    assert "channel_not_found" == caught.value.error
    assert not caught.value.retryable
    assert 1 == len(mock_slack.rejected)


async def test_server_errors_give_up_after_max_attempts(mock_slack: MockSlack) -> None:
    """A 500 every time: max_attempts tries with back-off, then a retryable DeliveryError."""
    caller = _caller(mock_slack, max_attempts=3)
    mock_slack.fail(seconds=30)
    with pytest.raises(DeliveryError) as caught:
        await caller.call("chat.postMessage", channel="#c", text="hi")
    assert caught.value.retryable
    assert 3 == len(mock_slack.rejected)
    assert 2 == caller.stats.retried


async def test_network_failure_is_retried() -> None:
    """Nothing listening: connection errors are retried, then reported."""
    settings = SlackSettings(api_url="http://127.0.0.1:9/api/", backoff_s=0.01, max_attempts=2)
    caller = Caller(AsyncWebClient(token="x", base_url=settings.api_url), settings)
    with pytest.raises(DeliveryError) as caught:
        await caller.call("auth.test")
    assert caught.value.retryable
