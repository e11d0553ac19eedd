"""Channel-agnostic use cases: every adapter (CLI, Slack, Teams, web) calls these."""

from __future__ import annotations

from .authority import Authority, OpenAuthority, VoteCheckResult, review_everything
from .decisions import Decider, Result, describe_decision, validate_params
from .metrics import stats
from .queries import Page, pending, show

__all__ = [
    "Authority",
    "Decider",
    "OpenAuthority",
    "Page",
    "Result",
    "VoteCheckResult",
    "describe_decision",
    "pending",
    "review_everything",
    "show",
    "stats",
    "validate_params",
]
