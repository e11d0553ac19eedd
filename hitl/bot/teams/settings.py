"""Teams settings: the bot's Azure registration (single tenant) and where cards go by default.

::

    settings = TeamsSettings.from_env()
    settings.enabled         # an app id, a tenant and a password or a certificate

| variable | meaning |
|---|---|
| ``MICROSOFT_APP_ID`` | the Azure Bot's Microsoft App ID (a single-tenant app registration) |
| ``MICROSOFT_APP_TENANT_ID`` | the Entra ID tenant of that registration |
| ``MICROSOFT_APP_PASSWORD`` | a client secret of the registration, or a certificate: |
| ``MICROSOFT_APP_CERTIFICATE_THUMBPRINT`` | its thumbprint, and |
| ``MICROSOFT_APP_CERTIFICATE_KEY_FILE`` | a PEM file with its private key |
| ``HITL_TEAMS_CHANNEL`` | where cards go when the policy names no Teams place (name or id) |
| ``HITL_TEAMS_PATH`` | the HTTP route (default ``/api/messages``) |
| ``HITL_TEAMS_SERVICE_HOSTS`` | hosts (and their subdomains) the bot sends to, comma-separated |

There is no variable that turns authentication off: only a test builds settings with
``auth_disabled=True`` (the Bot Framework then accepts unsigned requests, which in production
would let anyone click as anyone).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, model_validator

from hitl.errors import ConfigError

__all__ = ["SERVICE_HOSTS", "TeamsSettings"]

SERVICE_HOSTS = (
    "smba.trafficmanager.net",
    "smba.infra.gcc.teams.microsoft.com",
    "smba.infra.gov.teams.microsoft.us",
    "smba.infra.dod.teams.microsoft.us",
)
"""Where Teams' connector answers (public cloud, GCC, GCC High, DoD)."""


class TeamsSettings(BaseModel):
    """Everything the Teams channel needs. Immutable; ``from_env()`` reads the environment."""

    model_config = ConfigDict(frozen=True)

    app_id: str = ""
    tenant_id: str = ""
    app_password: str = ""
    certificate_thumbprint: str = ""
    certificate_key: str = ""
    """The certificate's private key (PEM text)."""
    default_channel: str = ""
    """Cards whose policy names no Teams place go here (a channel name or a conversation id)."""
    path: str = "/api/messages"
    service_hosts: tuple[str, ...] = SERVICE_HOSTS
    """The Bot Framework connector's hosts: a stored reference whose ``serviceUrl`` is anywhere
    else is not sent to (the bot's access token goes with every call)."""
    auth_disabled: bool = False
    """Tests only: accept unsigned requests and send without a token."""

    @model_validator(mode="after")
    def _complete(self) -> TeamsSettings:
        if self.auth_disabled or not self.app_id:
            return self
        if not self.tenant_id:
            raise ValueError("MICROSOFT_APP_TENANT_ID is needed (the bot is single-tenant)")
        if not self.app_password and not (self.certificate_thumbprint and self.certificate_key):
            raise ValueError(
                "set MICROSOFT_APP_PASSWORD, or MICROSOFT_APP_CERTIFICATE_THUMBPRINT and "
                "MICROSOFT_APP_CERTIFICATE_KEY_FILE"
            )
        return self

    @property
    def enabled(self) -> bool:
        """The bot has credentials (or, in a test, runs without authentication)."""
        return bool(self.app_id) or self.auth_disabled

    def trusts(self, service_url: str) -> bool:
        """``service_url`` is an https URL of the connector (any URL with authentication off)."""
        if self.auth_disabled:
            return True
        parts = urlsplit(service_url)
        host = (parts.hostname or "").lower()
        return parts.scheme == "https" and any(
            host == h or host.endswith("." + h) for h in self.service_hosts
        )

    @property
    def uses_certificate(self) -> bool:
        return bool(self.certificate_thumbprint and self.certificate_key)

    @classmethod
    def from_env(cls, **overrides: object) -> TeamsSettings:
        """The settings from ``MICROSOFT_APP_*`` / ``HITL_TEAMS_*``; ``overrides`` win."""
        env = os.environ
        values: dict[str, object] = {
            "app_id": env.get("MICROSOFT_APP_ID", ""),
            "tenant_id": env.get("MICROSOFT_APP_TENANT_ID", ""),
            "app_password": env.get("MICROSOFT_APP_PASSWORD", ""),
            "certificate_thumbprint": env.get("MICROSOFT_APP_CERTIFICATE_THUMBPRINT", ""),
            "default_channel": env.get("HITL_TEAMS_CHANNEL", ""),
            "path": env.get("HITL_TEAMS_PATH") or "/api/messages",
        }
        if hosts := env.get("HITL_TEAMS_SERVICE_HOSTS"):
            values["service_hosts"] = tuple(
                h.strip().lower() for h in hosts.split(",") if h.strip()
            )
        key_file = env.get("MICROSOFT_APP_CERTIFICATE_KEY_FILE", "")
        if key_file:
            try:
                values["certificate_key"] = Path(key_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"MICROSOFT_APP_CERTIFICATE_KEY_FILE: cannot read {key_file}: {exc}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValueError as exc:
            raise ConfigError(f"Teams settings: {exc}") from None
