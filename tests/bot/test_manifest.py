"""manifest.yaml is a complete Slack app manifest that matches what the app does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hitl.bot.slack import SlackSettings
from hitl.bot.slack.commands import USAGE

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yaml"


def load() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return data


def test_manifest_has_every_section() -> None:
    """Display information, bot user, slash command, scopes and interactivity are all there."""
    m = load()
    assert {"display_information", "features", "oauth_config", "settings"} <= set(m)
    assert "hitl" == m["display_information"]["name"]
    assert m["features"]["bot_user"]["display_name"]
    assert m["settings"]["interactivity"]["is_enabled"] is True


def test_scopes_cover_what_the_app_calls() -> None:
    """commands, chat:write, im:write (conversations.open) and users:read are requested."""
    scopes = set(load()["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "im:write", "users:read"} <= scopes


def test_slash_command_matches_the_app() -> None:
    """The /hitl command posts to the route the app serves and lists every subcommand."""
    command = load()["features"]["slash_commands"][0]
    settings = SlackSettings()
    assert settings.command == command["command"]
    assert command["url"].endswith(settings.path)
    assert load()["settings"]["interactivity"]["request_url"].endswith(settings.path)
    for name in USAGE:
        assert name in command["usage_hint"]


def test_both_modes_are_documented() -> None:
    """The comments explain HTTP mode and Socket Mode (and the tokens each needs)."""
    text = MANIFEST.read_text(encoding="utf-8")
    for needle in ("HTTP mode", "Socket Mode", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET",
                   "SLACK_BOT_TOKEN", "socket_mode_enabled"):  # fmt: skip
        assert needle in text
    assert load()["settings"]["socket_mode_enabled"] is False
