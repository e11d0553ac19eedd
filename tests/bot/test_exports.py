"""The public names of ``hitl.bot.slack`` are pinned so that removing one is a deliberate change."""

from __future__ import annotations

import importlib

import pytest

import hitl.bot.slack as slack

PUBLIC = [
    "Caller",
    "DeliveryError",
    "Pacer",
    "SlackChannel",
    "SlackContext",
    "SlackSettings",
    "build_app",
    "events_handler",
    "make_client",
    "mount_slack",
]


def test_all_is_pinned() -> None:
    """``hitl.bot.slack.__all__`` lists exactly the documented names."""
    assert sorted(PUBLIC) == sorted(slack.__all__)


@pytest.mark.parametrize(
    "module",
    [
        "actions",
        "app",
        "blocks",
        "channel",
        "commands",
        "context",
        "delivery",
        "mount",
        "payloads",
        "settings",
        "views",
    ],  # fmt: skip
)
def test_every_module_declares_all(module: str) -> None:
    """Each module says what it exports, and exports what it says."""
    mod = importlib.import_module(f"hitl.bot.slack.{module}")
    assert all(hasattr(mod, name) for name in mod.__all__)
