"""Only Slack may use the endpoint: bad, missing or stale signatures get 401, change nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from hitl.bot.slack.blocks import APPROVE
from hitl.models import State
from tests.bot.conftest import SlackHarness, sign
from tests.scenarios.helpers import audit_kinds


async def _assert_nothing_changed(harness: SlackHarness, request_id: str, calls: int) -> None:
    record = harness.store.get(request_id)
    assert State.PENDING == record.state
    assert [] == record.votes
    assert "vote" not in audit_kinds(harness.store.redis, request_id)
    assert "refused" not in audit_kinds(harness.store.redis, request_id)
    assert calls == len(harness.slack.calls)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda body: sign(body, secret="not-the-secret"), id="forged"),
        pytest.param(
            lambda body: {"Content-Type": "application/x-www-form-urlencoded"}, id="missing"
        ),  # fmt: skip
        pytest.param(lambda body: sign(body, ts=int(time.time()) - 301), id="older-than-300s"),
        pytest.param(lambda body: sign(body, ts=int(time.time()) + 301), id="from-the-future"),
        pytest.param(
            lambda body: {**sign(body), "X-Slack-Signature": "v0=" + "0" * 64}, id="garbage"
        ),
        pytest.param(
            lambda body: {**sign(body), "X-Slack-Request-Timestamp": "abc"}, id="timestamp-abc"
        ),
    ],
)
async def test_bad_signature_is_401_and_changes_nothing(
    harness: SlackHarness, headers: Callable[[str], dict[str, str]]
) -> None:
    """An approve click that is not signed right is refused with 401 and has no effect."""
    record = await harness.submit_and_post()
    calls = len(harness.slack.calls)
    body = harness.action_body(APPROVE, record.id, "U0BOB", "bob")
    status, _ = await harness.post(body, headers(body))
    assert 401 == status
    await _assert_nothing_changed(harness, record.id, calls)


async def test_tampered_body_is_401(harness: SlackHarness) -> None:
    """A body changed after signing (another request id) is refused."""
    record = await harness.submit_and_post()
    calls = len(harness.slack.calls)
    body = harness.action_body(APPROVE, "r-other", "U0BOB", "bob")
    tampered = harness.action_body(APPROVE, record.id, "U0BOB", "bob")
    status, _ = await harness.post(tampered, sign(body))
    assert 401 == status
    await _assert_nothing_changed(harness, record.id, calls)


async def test_signed_command_is_accepted(harness: SlackHarness) -> None:
    """A properly signed request is answered (the control case)."""
    status, text = await harness.command("help", "U0BOB", "bob")
    assert 200 == status
    assert "/hitl pending" in text
