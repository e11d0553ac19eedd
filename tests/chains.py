"""The case study's escalation chain at a fixed start time, shared by the scheduler tests."""

from __future__ import annotations

from hitl.models import Destination, EscalationStep

__all__ = ["CHAIN", "MANAGERS", "SECONDARY", "T0"]

T0 = 1_900_000_000.0
"""A fixed "now" for a ManualClock."""
SECONDARY = Destination(kind="oncall", target="secondary")
MANAGERS = Destination(kind="oncall", target="managers")
CHAIN = [
    EscalationStep(after_s=600, target=SECONDARY),
    EscalationStep(after_s=1200, target=MANAGERS),
    EscalationStep(after_s=3600, timeout=True),
]
"""10 min -> secondary on-call, 20 min -> the managers, 60 min -> timeout (deny)."""
