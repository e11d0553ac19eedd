"""On-call schedules: rotations with hand-off times, and overrides that win over them.

A rotation hands over every ``every`` (a week by default) at the wall-clock time of ``start`` in
the schedule's time zone, so a "Monday 09:00" hand-off stays at 09:00 across daylight-saving
changes. The first member is on call from ``start``; times before ``start`` continue the cycle
backwards. An override (someone covers from ``start`` to ``end``) wins over the rotation; when
two overrides overlap, the one listed last wins::

    rotation.on_call(datetime(2025, 1, 13, 10, tzinfo=UTC))   # -> "erin"
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from zoneinfo import ZoneInfo

__all__ = ["Rotation", "ShiftOverride", "aware"]


def aware(moment: datetime.datetime, zone: ZoneInfo) -> datetime.datetime:
    """``moment`` with a time zone: a naive moment is read as wall time in ``zone``."""
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


@dataclass(frozen=True, slots=True)
class ShiftOverride:
    who: str
    start: datetime.datetime
    end: datetime.datetime
    note: str = ""

    def covers(self, at: datetime.datetime) -> bool:
        return self.start <= at < self.end


@dataclass(frozen=True, slots=True)
class Rotation:
    """One schedule. ``members`` are directory ids; ``start`` is naive wall time in ``zone``."""

    name: str
    members: tuple[str, ...]
    start: datetime.datetime
    every: datetime.timedelta
    zone: ZoneInfo
    overrides: tuple[ShiftOverride, ...] = ()

    def on_call(self, at: datetime.datetime) -> str:
        """Who is on call at ``at`` (aware; naive is read in the schedule's zone)."""
        at = aware(at, self.zone)
        for override in reversed(self.overrides):
            if override.covers(at):
                return override.who
        wall = at.astimezone(self.zone).replace(tzinfo=None)
        shift = (wall - self.start) // self.every
        return self.members[shift % len(self.members)]

    def next_handoff(self, at: datetime.datetime) -> datetime.datetime:
        """When the rotation next changes hands after ``at`` (ignoring overrides)."""
        at = aware(at, self.zone)
        wall = at.astimezone(self.zone).replace(tzinfo=None)
        shift = (wall - self.start) // self.every
        return (self.start + (shift + 1) * self.every).replace(tzinfo=self.zone)
