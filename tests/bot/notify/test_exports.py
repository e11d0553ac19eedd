"""The public names of ``hitl.bot.notify`` and the Notifier seam are pinned: removing one is a
deliberate change."""

from __future__ import annotations

import importlib

import pytest

import hitl.bot.notify as notify

PUBLIC = [
    "Contact",
    "EmailNotifier",
    "JiraNotifier",
    "Message",
    "Notifier",
    "NotifyError",
    "NotifySettings",
    "Outbox",
    "PagerDutyNotifier",
    "PagerDutyOncall",
    "Sent",
    "SmsNotifier",
    "build_notifiers",
    "mount_notifiers",
    "mount_twilio",
]


def test_all_is_pinned() -> None:
    """``hitl.bot.notify.__all__`` lists exactly the documented names."""
    assert sorted(PUBLIC) == sorted(notify.__all__)


@pytest.mark.parametrize(
    "module",
    ["base", "email", "http", "jira", "mount", "oncall", "outbox", "pagerduty", "settings", "sms",
     "web"],
)  # fmt: skip
def test_every_module_declares_all(module: str) -> None:
    """Each module says what it exports, and exports what it says."""
    mod = importlib.import_module(f"hitl.bot.notify.{module}")
    assert all(hasattr(mod, name) for name in mod.__all__)


def test_notifier_seam_is_pinned() -> None:
    """What a notifier implements; each of the four satisfies it."""
    members = {n for n in vars(notify.Notifier) if not n.startswith("_")}
    assert {"kind", "start", "stop", "send", "decided"} == members
    settings = notify.NotifySettings()
    four: list[notify.Notifier] = [
        notify.EmailNotifier(settings),
        notify.SmsNotifier(settings),
        notify.PagerDutyNotifier(settings),
        notify.JiraNotifier(settings),
    ]
    assert ["email", "sms", "pagerduty", "jira"] == [n.kind for n in four]
