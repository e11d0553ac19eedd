"""The one exception tree of hitl.

Every error hitl raises on purpose derives from :class:`HitlError`, so an agent can wrap a whole
approval in ``except hitl.HitlError``::

    HitlError
    ├── ConfigError              bad settings, bad policy file, missing secret
    ├── InvalidRequest           an ApprovalRequest (or params, or a reason) failed validation
    ├── NotFound                 no request with that id
    ├── Unauthenticated          an API token is missing, malformed, forged, expired or revoked
    ├── RefusedAttempt           a reviewer's action was refused (and audited)
    │   ├── AlreadyDecided       the request is terminal: carries who decided and when
    │   ├── NotAuthorized        wrong role, self-approval, already voted
    ├── ApprovalRejected         the SDK's answer when the outcome is not an approval
    ├── ApprovalTimeout          the SDK waited longer than its timeout; the request stays pending
    ├── StaleApproval            an approval older than the agent's ``max_age``: re-validate first
    ├── SignatureError           a Decision whose signature does not verify
    ├── AgentHalted              a person paused this agent or stopped its session (override)
    ├── AuditError               the audit chain does not verify (names the first bad seq)
    ├── ChannelError             a chat channel could not post or update, for good
                                 (hitl.bot.channel; Slack's DeliveryError is one)
    └── StoreUnavailable         Redis cannot be reached; nothing was written (or, when
                                 ``maybe_committed``, the reply to a commit was lost)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hitl.models import Control, Decision

__all__ = [
    "AgentHalted",
    "AlreadyDecided",
    "ApprovalRejected",
    "ApprovalTimeout",
    "AuditError",
    "ConfigError",
    "HitlError",
    "InvalidRequest",
    "NotAuthorized",
    "NotFound",
    "RefusedAttempt",
    "SignatureError",
    "StaleApproval",
    "StoreUnavailable",
    "Unauthenticated",
]


class HitlError(Exception):
    """Base of every error hitl raises on purpose."""


class ConfigError(HitlError):
    """Settings or a policy file are wrong; the message says which and how to fix it."""


class InvalidRequest(HitlError):
    """Input failed validation. ``errors`` lists ``(field, message)`` pairs."""

    def __init__(self, message: str, errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class NotFound(HitlError):
    """No request with that id exists (or it has been purged)."""


class Unauthenticated(HitlError):
    """The caller did not prove who they are (no token, or one the service does not accept)."""


class RefusedAttempt(HitlError):
    """A reviewer's action was refused; the refusal is in the audit chain."""


class AlreadyDecided(RefusedAttempt):
    """The request already has its terminal decision."""

    def __init__(self, message: str, decision: Decision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


class NotAuthorized(RefusedAttempt):
    """The reviewer may not take this action on this request."""


class ApprovalRejected(HitlError):
    """The request ended in anything but approval: rejected, expired, cancelled, auto-rejected."""

    def __init__(self, decision: Decision) -> None:
        who = ", ".join(r.display_name or r.user_id for r in decision.reviewers) or "policy"
        reason = f": {decision.reason}" if decision.reason else ""
        super().__init__(f"request {decision.request_id} {decision.outcome.value} by {who}{reason}")
        self.decision = decision
        self.reason = decision.reason
        self.outcome = decision.outcome
        self.reviewer = decision.reviewers[0] if decision.reviewers else None


class ApprovalTimeout(HitlError):
    """No decision arrived in time. The request is still pending; ``wait(id)`` can resume."""

    def __init__(self, request_id: str, timeout: float) -> None:
        super().__init__(
            f"no decision for {request_id} within {timeout:g}s; it is still pending - "
            f"call wait({request_id!r}) to keep waiting or cancel({request_id!r}) to withdraw it"
        )
        self.request_id = request_id


class StaleApproval(HitlError):
    """An approval of a request made longer ago than the agent's ``max_age``.

    The world may have changed while the human thought about it (prices, instance state): the
    agent should re-validate its plan, and re-ask if it changed. ``decision`` is still valid.
    """

    def __init__(self, decision: Decision, age_s: float, max_age: float) -> None:
        super().__init__(
            f"request {decision.request_id} was approved, but it was made {age_s:.0f}s ago "
            f"(max_age {max_age:g}s): re-validate the plan before acting, and re-submit if it "
            "changed"
        )
        self.decision = decision
        self.age_s = age_s
        self.max_age = max_age


class AgentHalted(HitlError):
    """A person paused this agent (``/hitl pause``) or stopped its session (``/hitl stop``):
    the tool must not run. ``control`` is the signed override that says who, when and why."""

    def __init__(self, control: Control) -> None:
        target = (
            f"agent {control.agent_id}" if control.agent_id else f"session {control.session_id}"
        )
        done = "paused" if control.kind == "pause" else "stopped"
        reason = f": {control.reason}" if control.reason else ""
        who = control.by.display_name or control.by.user_id
        super().__init__(f"{target} was {done} by {who}{reason}; do not act until it is resumed")
        self.control = control


class SignatureError(HitlError):
    """A decision's HMAC signature does not match its content: do not execute it."""


class AuditError(HitlError):
    """The audit chain does not verify."""

    def __init__(self, message: str, seq: int | None = None, **details: Any) -> None:
        super().__init__(message)
        self.seq = seq
        self.details = details


class StoreUnavailable(HitlError):
    """Redis could not be reached. Normally the operation was not applied; ``maybe_committed``
    says the connection died after the commit was sent, so it may have been (check, then retry)."""

    def __init__(self, message: str, *, maybe_committed: bool = False) -> None:
        super().__init__(message)
        self.maybe_committed = maybe_committed
