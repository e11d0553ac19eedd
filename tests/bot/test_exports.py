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


def test_channel_seam_is_pinned() -> None:
    """The Channel protocol (what Teams will implement) and its module's names change only on
    purpose."""
    from hitl.bot import channel, dispatch

    assert ["Channel", "ChannelError", "Route", "digest_ref_name"] == sorted(channel.__all__)
    members = {n for n in vars(channel.Channel) if not n.startswith("_")}
    expected = {"name", "start", "stop", "post_card", "update_card", "reply", "tell"}
    assert expected | {"post_digest", "update_digest"} == members
    assert all(hasattr(dispatch, name) for name in dispatch.__all__)
