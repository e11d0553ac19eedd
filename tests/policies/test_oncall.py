"""On-call schedules: weekly rotations with hand-off times, overrides, and destinations."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from hitl.models import Destination
from tests.policies.util import UTC, policy_from

LONDON = ZoneInfo("Europe/London")

POLICY = policy_from(
    """
timezone: Europe/London
schedules:
  primary:
    members: [alice, bob, carol]
    start: "2025-01-06 09:00"     # Monday
    every: 1w
    overrides:
      - {who: dave, start: "2025-01-08 12:00", end: "2025-01-09 12:00"}
      - {who: erin, start: "2025-01-08 18:00", end: "2025-01-08 20:00"}
  daily:
    members: [dave, erin]
    start: "2025-01-01 08:00"
    every: 1d
  utc:
    timezone: UTC
    members: [frank, alice]
    start: "2025-01-06T00:00:00+00:00"
    every: 12h
"""
)


def at(*args: int, tz: datetime.tzinfo = LONDON) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=tz)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at(2025, 1, 6, 9, 0), "alice"),
        (at(2025, 1, 13, 8, 59), "alice"),
        (at(2025, 1, 13, 9, 0), "bob"),
        (at(2025, 1, 20, 9, 0), "carol"),
        (at(2025, 1, 27, 9, 0), "alice"),
        (at(2025, 1, 6, 8, 59), "carol"),  # before the start, the cycle continues backwards
    ],
)
def test_weekly_rotation_hands_off_at_the_start_time(
    moment: datetime.datetime, expected: str
) -> None:
    """Each member is on call for a week, handing over on Monday at 09:00 local time."""
    assert expected == POLICY.oncall("primary", moment)


def test_handoff_stays_at_local_time_across_daylight_saving() -> None:
    """After the clocks change, the hand-off is still at 09:00 London time."""
    # 2025-03-30: BST starts. Weeks since 2025-01-06: 12 on 2025-03-31 -> members[12 % 3] = alice
    assert "carol" == POLICY.oncall("primary", at(2025, 3, 31, 8, 59))
    assert "alice" == POLICY.oncall("primary", at(2025, 3, 31, 9, 0))
    assert "alice" == POLICY.oncall("primary", datetime.datetime(2025, 3, 31, 8, 0, tzinfo=UTC))


def test_overrides_win_and_the_last_listed_wins() -> None:
    """An override covers its window; when two overlap, the later one in the list wins."""
    assert "alice" == POLICY.oncall("primary", at(2025, 1, 8, 11, 59))
    assert "dave" == POLICY.oncall("primary", at(2025, 1, 8, 12, 0))
    assert "erin" == POLICY.oncall("primary", at(2025, 1, 8, 19, 0))
    assert "dave" == POLICY.oncall("primary", at(2025, 1, 8, 20, 0))
    assert "alice" == POLICY.oncall("primary", at(2025, 1, 9, 12, 0))


def test_daily_and_twelve_hour_rotations() -> None:
    """`every` can be any duration; a schedule can have its own time zone."""
    assert "dave" == POLICY.oncall("daily", at(2025, 1, 1, 8, 0))
    assert "erin" == POLICY.oncall("daily", at(2025, 1, 2, 8, 0))
    assert "frank" == POLICY.oncall("utc", datetime.datetime(2025, 1, 6, 11, 59, tzinfo=UTC))
    assert "alice" == POLICY.oncall("utc", datetime.datetime(2025, 1, 6, 12, 0, tzinfo=UTC))


def test_unknown_schedule_has_nobody() -> None:
    """oncall() of a schedule that does not exist is None."""
    assert POLICY.oncall("nope", at(2025, 1, 6, 9, 0)) is None


def test_resolve_destinations() -> None:
    """channel -> nobody in particular; user -> that id; oncall -> who is on call then."""
    moment = at(2025, 1, 13, 10, 0)
    assert [] == POLICY.resolve(Destination(kind="channel", target="#ops"), moment)
    assert ["bob"] == POLICY.resolve(Destination(kind="user", target="U0BOB"), moment)
    assert ["bob"] == POLICY.resolve(Destination(kind="oncall", target="primary"), moment)
    assert [] == POLICY.resolve(Destination(kind="oncall", target="nope"), moment)


def test_schedule_members_may_be_given_by_alias() -> None:
    """Members named by Slack id or email resolve to directory ids."""
    policy = policy_from("schedules: {s: {members: [U0BOB, alice@example.com]}}\n")
    assert "bob" == policy.oncall("s", datetime.datetime(2024, 1, 1, 9, 0, tzinfo=UTC))
