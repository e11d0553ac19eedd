"""SlackSettings: the usual variables, a normalized API URL, clear errors."""

from __future__ import annotations

import pytest

from hitl.bot.slack import SlackSettings
from hitl.errors import ConfigError


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """SLACK_* and HITL_SLACK_* are read; the API URL gets its trailing slash."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "sec")
    monkeypatch.setenv("SLACK_API_URL", "http://proxy.local/api")
    monkeypatch.setenv("HITL_SLACK_FALLBACK_CHANNEL", "#hitl-fallback")
    monkeypatch.setenv("HITL_SLACK_CHANNEL", "#approvals")
    monkeypatch.setenv("HITL_SLACK_PACE_S", "0.5")
    s = SlackSettings.from_env()
    assert ("xoxb-1", "sec", "http://proxy.local/api/") == (
        s.bot_token,
        s.signing_secret,
        s.api_url,
    )
    assert ("#hitl-fallback", "#approvals", 0.5) == (
        s.fallback_channel,
        s.default_channel,
        s.pace_interval_s,
    )
    assert s.enabled and not s.socket_mode


def test_defaults() -> None:
    """Nothing set: off, the public API, /hitl, one message per second per channel."""
    s = SlackSettings.from_env()
    assert not s.enabled
    assert "https://slack.com/api/" == s.api_url
    assert ("/hitl", "/slack/events", 1.0) == (s.command, s.path, s.pace_interval_s)


def test_socket_mode_needs_an_app_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """SLACK_APP_TOKEN turns Socket Mode on; a bot token there is a clear error."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-abc")
    s = SlackSettings.from_env()
    assert s.enabled and s.socket_mode
    monkeypatch.setenv("SLACK_APP_TOKEN", "xoxb-wrong")
    with pytest.raises(ConfigError, match="xapp-"):
        SlackSettings.from_env()


def test_bad_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad URL or pace is a ConfigError naming the variable."""
    monkeypatch.setenv("SLACK_API_URL", "slack.com/api")
    with pytest.raises(ConfigError, match="SLACK_API_URL"):
        SlackSettings.from_env()
    monkeypatch.delenv("SLACK_API_URL")
    monkeypatch.setenv("HITL_SLACK_PACE_S", "fast")
    with pytest.raises(ConfigError, match="HITL_SLACK_PACE_S"):
        SlackSettings.from_env()
