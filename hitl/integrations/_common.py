"""What every integration shares: stable request ids, and the words a refused tool answers."""

from __future__ import annotations

import hashlib
import json

from hitl.models import Decision

__all__ = ["refusal_text", "request_id_for"]


def request_id_for(*parts: str) -> str:
    """A stable request id from where the request was asked (a thread, a tool-call id...): the
    same after a restart, so asking again is the same request."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def refusal_text(decision: Decision) -> str:
    """``rejected by Bob Brown: keep the report`` -- what the model (or caller) is told."""
    who = ", ".join(r.display_name or r.user_id for r in decision.reviewers) or "hitl"
    return f"{decision.outcome.value} by {who}" + (
        f": {decision.reason}" if decision.reason else ""
    )
