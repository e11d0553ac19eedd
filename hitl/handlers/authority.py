"""Who may decide what: the seam between the handlers and the policy.

:class:`hitl.policies.Policy` satisfies :class:`Authority`. :class:`OpenAuthority` is the
fallback when no reviewer directory is configured: anyone but the requester may vote, quorum is
``verdict.approvals`` distinct people, and a modification keeps the verdict it was created with.
People are compared by :func:`hitl.identity.canonical_id` spelling (``" BOB\u200b"`` is ``bob``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hitl.identity import canonical_id
from hitl.models import ApprovalRequest, Verdict, Vote

__all__ = ["Authority", "OpenAuthority", "VoteCheckResult", "review_everything"]


def review_everything(request: ApprovalRequest) -> Verdict:
    """The classifier used without a policy: every request goes to one human."""
    from hitl.models import Risk, VerdictKind

    return Verdict(
        kind=VerdictKind.REVIEW,
        risk=request.risk or Risk.MEDIUM,
        rule="open",
        reason="no policy configured: every request needs one person's approval",
    )


class VoteCheckResult(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def role(self) -> str | None: ...


class Authority(Protocol):
    """What the handlers ask the policy (all pure, no I/O)."""

    @property
    def version(self) -> str: ...

    def check_vote(
        self, verdict: Verdict, votes: list[Vote], reviewer_id: str, requested_by: str | None
    ) -> VoteCheckResult: ...

    def quorum_met(self, verdict: Verdict, votes: list[Vote]) -> bool: ...

    def can_decide(self, verdict: Verdict, reviewer_id: str, requested_by: str | None) -> bool: ...

    def evaluate(
        self, request: ApprovalRequest, *, now: datetime.datetime | None = None
    ) -> Verdict: ...


@dataclass(frozen=True)
class _Check:
    ok: bool
    reason: str = ""
    role: str | None = None


class OpenAuthority:
    """No directory: anyone but the requester, distinct people, no roles."""

    version = ""

    def __init__(self, classify: Callable[[ApprovalRequest], Verdict] = review_everything) -> None:
        self._classify = classify

    def check_vote(
        self, verdict: Verdict, votes: list[Vote], reviewer_id: str, requested_by: str | None
    ) -> _Check:
        me = canonical_id(reviewer_id)
        if requested_by is not None and me == canonical_id(requested_by):
            return _Check(False, f"{reviewer_id} made this request and cannot approve it")
        if any(canonical_id(v.reviewer.user_id) == me for v in votes):
            return _Check(False, f"{reviewer_id} has already approved; another person must")
        return _Check(True)

    def quorum_met(self, verdict: Verdict, votes: list[Vote]) -> bool:
        people = {canonical_id(v.reviewer.user_id) for v in votes if v.approve}
        return len(people) >= verdict.approvals

    def can_decide(self, verdict: Verdict, reviewer_id: str, requested_by: str | None) -> bool:
        return requested_by is None or canonical_id(reviewer_id) != canonical_id(requested_by)

    def evaluate(
        self, request: ApprovalRequest, *, now: datetime.datetime | None = None
    ) -> Verdict:
        return self._classify(request)
