"""hitl: in-chat human approval for AI agents.

The agent-facing API::

    import hitl
    client = hitl.Client()
    decision = client.request_approval("refund", {"order_id": "A-1", "amount": 120.0})
"""

from __future__ import annotations

from hitl.client import AsyncClient, Client, require_approval
from hitl.errors import (
    AlreadyDecided,
    ApprovalRejected,
    ApprovalTimeout,
    AuditError,
    ConfigError,
    HitlError,
    InvalidRequest,
    NotAuthorized,
    NotFound,
    RefusedAttempt,
    SignatureError,
    StaleApproval,
    StoreUnavailable,
)
from hitl.models import ApprovalRequest, Decision, Outcome, Risk, State

__version__ = "0.1.0"

__all__ = [
    "AlreadyDecided",
    "ApprovalRejected",
    "ApprovalRequest",
    "ApprovalTimeout",
    "AsyncClient",
    "AuditError",
    "Client",
    "ConfigError",
    "Decision",
    "HitlError",
    "InvalidRequest",
    "NotAuthorized",
    "NotFound",
    "Outcome",
    "RefusedAttempt",
    "Risk",
    "SignatureError",
    "StaleApproval",
    "State",
    "StoreUnavailable",
    "__version__",
    "require_approval",
]
