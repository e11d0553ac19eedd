"""Teams settings: single-tenant credentials from the environment; authentication cannot be
turned off from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl.bot.teams import TeamsSettings, mount_teams
from hitl.bot.teams.mount import make_adapter
from hitl.errors import ConfigError
from hitl.service import Service


def test_credentials_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """App id, tenant, a secret or a certificate; the default channel and the route."""
    monkeypatch.setenv("MICROSOFT_APP_ID", "app")
    monkeypatch.setenv("MICROSOFT_APP_TENANT_ID", "tenant")
    monkeypatch.setenv("MICROSOFT_APP_PASSWORD", "secret")
    monkeypatch.setenv("HITL_TEAMS_CHANNEL", "Approvals")
    settings = TeamsSettings.from_env()
    assert ("app", "tenant", "secret", "Approvals", "/api/messages", True, False) == (
        settings.app_id, settings.tenant_id, settings.app_password, settings.default_channel,
        settings.path, settings.enabled, settings.auth_disabled)  # fmt: skip
    key = tmp_path / "bot.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\n...\n", encoding="utf-8")
    monkeypatch.delenv("MICROSOFT_APP_PASSWORD")
    monkeypatch.setenv("MICROSOFT_APP_CERTIFICATE_THUMBPRINT", "AB12")
    monkeypatch.setenv("MICROSOFT_APP_CERTIFICATE_KEY_FILE", str(key))
    assert TeamsSettings.from_env().uses_certificate


@pytest.mark.parametrize(
    ("env", "message"),
    [({"MICROSOFT_APP_ID": "app", "MICROSOFT_APP_PASSWORD": "x"}, "MICROSOFT_APP_TENANT_ID"),
     ({"MICROSOFT_APP_ID": "app", "MICROSOFT_APP_TENANT_ID": "t"}, "MICROSOFT_APP_PASSWORD"),
     ({"MICROSOFT_APP_ID": "app", "MICROSOFT_APP_TENANT_ID": "t", "MICROSOFT_APP_PASSWORD": "x",
       "MICROSOFT_APP_CERTIFICATE_KEY_FILE": "/nonexistent.pem"}, "cannot read")],
)  # fmt: skip
def test_incomplete_credentials_are_a_config_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    """A half-configured bot refuses to start, saying what is missing."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        TeamsSettings.from_env()


def test_no_environment_turns_authentication_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without credentials Teams is off (no route), never on without authentication."""
    for name in ("HITL_TEAMS_AUTH_DISABLED", "MICROSOFT_APP_AUTH_DISABLED", "AUTH_DISABLED"):
        monkeypatch.setenv(name, "1")
    settings = TeamsSettings.from_env()
    assert (False, False) == (settings.enabled, settings.auth_disabled)


def test_mount_without_credentials_adds_nothing(service: Service) -> None:
    """No MICROSOFT_APP_ID: no channel and no /api/messages route."""
    assert mount_teams(service, TeamsSettings()) is None
    assert [] == service.channels
    assert "/api/messages" not in {r.resource.canonical for r in service.app.router.routes()
                                   if r.resource is not None}  # fmt: skip


def test_the_adapter_authenticates_as_a_single_tenant_app() -> None:
    """The CloudAdapter's credentials are single-tenant (the tenant's token endpoint)."""
    adapter = make_adapter(TeamsSettings(app_id="app", tenant_id="contoso", app_password="x"))
    auth = adapter.bot_framework_authentication
    assert "CloudAdapter" == type(adapter).__name__
    assert "ConfigurationBotFrameworkAuthentication" == type(auth).__name__


@pytest.mark.parametrize(
    ("url", "trusted"),
    [("https://smba.trafficmanager.net/emea/", True),
     ("https://smba.infra.gov.teams.microsoft.us/x", True),
     ("http://smba.trafficmanager.net/emea/", False),
     ("https://smba.trafficmanager.net.evil.example/", False),
     ("https://evil.example/?smba.trafficmanager.net", False), ("", False)],
)  # fmt: skip
def test_the_bot_sends_only_to_the_connector(url: str, trusted: bool) -> None:
    """The bot's access token goes with every call: only https to the connector's hosts."""
    settings = TeamsSettings(app_id="app", tenant_id="t", app_password="x")
    assert trusted == settings.trusts(url)
    assert TeamsSettings(auth_disabled=True).trusts(url)
