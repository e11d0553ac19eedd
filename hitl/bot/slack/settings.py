"""Slack settings, read from the usual Slack variables plus a few ``HITL_SLACK_*`` ones.

::

    settings = SlackSettings.from_env()
    settings.enabled        # a bot token and (a signing secret or an app token)
    settings.socket_mode    # SLACK_APP_TOKEN is set: no public URL needed

| variable | meaning |
|---|---|
| ``SLACK_BOT_TOKEN`` | ``xoxb-...``: the bot's Web API token |
| ``SLACK_SIGNING_SECRET`` | verifies that HTTP requests come from Slack (HTTP mode) |
| ``SLACK_APP_TOKEN`` | ``xapp-...`` with ``connections:write``: turns on Socket Mode |
| ``SLACK_API_URL`` | Web API base URL (default ``https://slack.com/api/``): proxies and tests |
| ``HITL_SLACK_CHANNEL`` | where a card goes when the policy names no channel |
| ``HITL_SLACK_FALLBACK_CHANNEL`` | where a card goes when its destination cannot be posted to |
| ``HITL_SLACK_COMMAND`` | the slash command (default ``/hitl``) |
| ``HITL_SLACK_PATH`` | the HTTP route (default ``/slack/events``) |
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hitl.errors import ConfigError

__all__ = ["DEFAULT_API_URL", "SlackSettings"]

DEFAULT_API_URL = "https://slack.com/api/"


class SlackSettings(BaseModel):
    """Everything the Slack channel needs. Immutable; ``from_env()`` reads the environment."""

    model_config = ConfigDict(frozen=True)

    bot_token: str = ""
    signing_secret: str = ""
    app_token: str = ""
    api_url: str = DEFAULT_API_URL
    default_channel: str = ""
    """Cards whose verdict names no channel (or an on-call nobody covers) go here."""
    fallback_channel: str = ""
    """Cards that cannot be posted where they belong go here, with the reason."""
    command: str = "/hitl"
    path: str = "/slack/events"
    pace_interval_s: float = Field(default=1.0, ge=0.0)
    """Sustained pace of new messages per channel (Slack allows about one per second)."""
    pace_burst: int = Field(default=3, ge=1)
    """Messages a quiet channel may receive at once before the pace applies."""
    max_attempts: int = Field(default=5, ge=1)
    """Tries per call on server errors and network failures (429s wait, and do not count)."""
    backoff_s: float = Field(default=0.5, ge=0.0)
    """First back-off after a failure; doubles each time (with jitter), capped at 30 s."""
    give_up_after_s: float = Field(default=120.0, gt=0.0)
    """A call still failing (or rate limited) after this long goes to the fallback channel."""
    page_size: int = Field(default=5, ge=1, le=10)
    """Requests per page of ``/hitl pending``."""
    timeout_s: int = Field(default=10, gt=0)
    """HTTP timeout of one Web API call."""

    @field_validator("api_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"SLACK_API_URL must be an http(s) URL, got {value!r}")
        return value if value.endswith("/") else value + "/"

    @field_validator("command")
    @classmethod
    def _slash(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value

    @property
    def enabled(self) -> bool:
        """A bot token, and a way to receive events (signing secret or app token)."""
        return bool(self.bot_token and (self.signing_secret or self.app_token))

    @property
    def socket_mode(self) -> bool:
        return bool(self.app_token)

    @classmethod
    def from_env(cls, **overrides: object) -> SlackSettings:
        """The settings from ``SLACK_*`` / ``HITL_SLACK_*``; ``overrides`` win."""
        env = os.environ
        values: dict[str, object] = {
            "bot_token": env.get("SLACK_BOT_TOKEN", ""),
            "signing_secret": env.get("SLACK_SIGNING_SECRET", ""),
            "app_token": env.get("SLACK_APP_TOKEN", ""),
            "api_url": env.get("SLACK_API_URL") or DEFAULT_API_URL,
            "default_channel": env.get("HITL_SLACK_CHANNEL", ""),
            "fallback_channel": env.get("HITL_SLACK_FALLBACK_CHANNEL", ""),
            "command": env.get("HITL_SLACK_COMMAND") or "/hitl",
            "path": env.get("HITL_SLACK_PATH") or "/slack/events",
        }
        if pace := env.get("HITL_SLACK_PACE_S"):
            values["pace_interval_s"] = _number("HITL_SLACK_PACE_S", pace)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("app_token") and not str(values["app_token"]).startswith("xapp-"):
            raise ConfigError("SLACK_APP_TOKEN must be an app-level token (xapp-...)")
        try:
            return cls.model_validate(values)
        except ValueError as exc:
            raise ConfigError(f"Slack settings: {exc}") from None


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {text!r}") from None
