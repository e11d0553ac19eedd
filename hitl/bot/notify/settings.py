"""Notifier settings: every credential and address comes from here (the environment), never from
the policy file, which only names targets (``sms:oncall:managers``, ``pagerduty:ops``).

::

    settings = NotifySettings.from_env()
    settings.email_enabled, settings.sms_enabled, settings.pagerduty_enabled, settings.jira_enabled

| variable | meaning |
|---|---|
| ``HITL_PUBLIC_URL`` | the service as reviewers reach it (``https://hitl.example.com``): links |
| ``HITL_LINK_TTL`` | seconds an email/SMS decision link stays valid (default 3600) |
| ``HITL_SMTP_HOST`` / ``_PORT`` | the SMTP server (port default 587) |
| ``HITL_SMTP_USER`` / ``_PASSWORD`` | SMTP login (optional) |
| ``HITL_SMTP_TLS`` | ``starttls`` (default), ``tls`` (implicit, port 465) or ``none`` |
| ``HITL_SMTP_FROM`` | the From address |
| ``HITL_SMTP_CA_FILE`` | the CA bundle of the SMTP server's certificate (default: system) |
| ``TWILIO_ACCOUNT_SID`` / ``TWILIO_AUTH_TOKEN`` | Twilio credentials (the token signs callbacks) |
| ``HITL_TWILIO_FROM`` | the sending number (E.164) |
| ``HITL_TWILIO_API_URL`` | default ``https://api.twilio.com``: proxies and tests |
| ``HITL_PAGERDUTY_ROUTING_KEYS`` | ``ops=KEY,db=KEY``: an Events API v2 key per service |
| ``HITL_PAGERDUTY_EVENTS_URL`` | default ``https://events.pagerduty.com/v2/enqueue`` |
| ``HITL_PAGERDUTY_API_TOKEN`` | a REST API key: who is on call comes from PagerDuty |
| ``HITL_PAGERDUTY_SCHEDULES`` | ``managers=PSCHED1``: policy schedule -> PagerDuty schedule id |
| ``HITL_PAGERDUTY_API_URL`` | default ``https://api.pagerduty.com`` |
| ``HITL_JIRA_URL`` | ``https://acme.atlassian.net`` |
| ``HITL_JIRA_USER`` / ``HITL_JIRA_TOKEN`` | Jira Cloud basic auth: account email and API token |
| ``HITL_JIRA_ISSUE_TYPE`` | issue type of opened issues (default ``Task``) |
| ``HITL_JIRA_TRANSITIONS`` | ``approved=Done,rejected=Won't Do``: transition names per outcome |
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hitl.errors import ConfigError

__all__ = ["NotifySettings"]


class NotifySettings(BaseModel):
    """Everything the notifiers need. Immutable; ``from_env()`` reads the environment."""

    model_config = ConfigDict(frozen=True)

    public_url: str = ""
    link_ttl_s: int = Field(default=3600, gt=0, le=7 * 86400)
    smtp_host: str = ""
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_tls: Literal["starttls", "tls", "none"] = "starttls"
    smtp_from: str = ""
    smtp_ca_file: str = ""
    twilio_sid: str = ""
    twilio_token: str = ""
    twilio_from: str = ""
    twilio_api_url: str = "https://api.twilio.com"
    pagerduty_routing_keys: dict[str, str] = Field(default_factory=dict)
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    pagerduty_api_token: str = ""
    pagerduty_api_url: str = "https://api.pagerduty.com"
    pagerduty_schedules: dict[str, str] = Field(default_factory=dict)
    """Policy schedule name -> PagerDuty schedule id: who is on call comes from PagerDuty."""
    oncall_refresh_s: float = Field(default=60.0, gt=0.0)
    """How often the PagerDuty on-call is read again."""
    jira_url: str = ""
    jira_user: str = ""
    jira_token: str = ""
    jira_issue_type: str = "Task"
    jira_transitions: dict[str, str] = Field(default_factory=dict)
    """Outcome (``approved``, ``rejected``, ``expired``, ...) -> the transition's name."""
    max_attempts: int = Field(default=5, ge=1)
    """Tries per notification before it fails over to the next target."""
    backoff_s: float = Field(default=2.0, ge=0.0)
    """First wait after a failed try; doubles each time, capped at 5 minutes."""
    timeout_s: float = Field(default=10.0, gt=0.0)
    """HTTP / SMTP timeout of one call."""

    @field_validator(
        "public_url", "twilio_api_url", "jira_url", "pagerduty_events_url", "pagerduty_api_url"
    )
    @classmethod
    def _url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.smtp_from and self.public_url)

    @property
    def sms_enabled(self) -> bool:
        return bool(self.twilio_sid and self.twilio_token and self.twilio_from and self.public_url)

    @property
    def pagerduty_enabled(self) -> bool:
        return bool(self.pagerduty_routing_keys)

    @property
    def pagerduty_oncall_enabled(self) -> bool:
        return bool(self.pagerduty_api_token and self.pagerduty_schedules)

    @property
    def jira_enabled(self) -> bool:
        return bool(self.jira_url and self.jira_user and self.jira_token)

    @classmethod
    def from_env(cls, **overrides: object) -> NotifySettings:
        env = os.environ
        names = {
            "public_url": "HITL_PUBLIC_URL",
            "link_ttl_s": "HITL_LINK_TTL",
            "smtp_host": "HITL_SMTP_HOST",
            "smtp_port": "HITL_SMTP_PORT",
            "smtp_user": "HITL_SMTP_USER",
            "smtp_password": "HITL_SMTP_PASSWORD",
            "smtp_tls": "HITL_SMTP_TLS",
            "smtp_from": "HITL_SMTP_FROM",
            "smtp_ca_file": "HITL_SMTP_CA_FILE",
            "twilio_sid": "TWILIO_ACCOUNT_SID",
            "twilio_token": "TWILIO_AUTH_TOKEN",
            "twilio_from": "HITL_TWILIO_FROM",
            "twilio_api_url": "HITL_TWILIO_API_URL",
            "pagerduty_events_url": "HITL_PAGERDUTY_EVENTS_URL",
            "pagerduty_api_token": "HITL_PAGERDUTY_API_TOKEN",
            "pagerduty_api_url": "HITL_PAGERDUTY_API_URL",
            "jira_url": "HITL_JIRA_URL",
            "jira_user": "HITL_JIRA_USER",
            "jira_token": "HITL_JIRA_TOKEN",
            "jira_issue_type": "HITL_JIRA_ISSUE_TYPE",
        }
        values: dict[str, object] = {k: env[v] for k, v in names.items() if env.get(v)}
        for field, var in (
            ("pagerduty_routing_keys", "HITL_PAGERDUTY_ROUTING_KEYS"),
            ("jira_transitions", "HITL_JIRA_TRANSITIONS"),
            ("pagerduty_schedules", "HITL_PAGERDUTY_SCHEDULES"),
        ):
            if text := env.get(var):
                values[field] = _pairs(text, var)
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{names.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"notification settings: {problems}") from None


def _pairs(text: str, var: str) -> dict[str, str]:
    """``a=1,b=2`` -> ``{"a": "1", "b": "2"}``."""
    out: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError(f"{var} must be name=value pairs separated by commas, got {part!r}")
        out[name.strip()] = value.strip()
    return out
