"""Batch decisions: "Approve selected", "Approve all N" and "Reject all" on a digest.

A batch decision is N individual decisions. Each one goes through :class:`~hitl.handlers.Decider`
on its own: authorized, quorum-checked (a two-person request gets one vote, not a decision),
audited and delivered to its agent. Nothing is decided on anyone's behalf: a reviewer who may not
decide a request gets a refusal for that request (audited), and one who may decide none of them
decides nothing::

    batch = decide_digest(decider, digests, "dg-1f3a...", bob, approve=True)
    batch.message      # "25 approved"  /  "23 approved; 2 refused: already approved by ..."
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hitl.errors import HitlError, InvalidRequest, NotFound, RefusedAttempt
from hitl.models import Reviewer
from hitl.queue.digest import Digest

from .decisions import Decider, Result

__all__ = ["BatchResult", "DigestSource", "ItemResult", "decide_digest", "decide_many"]

MAX_BATCH = 500


class DigestSource(Protocol):
    """Where posted digests are kept (:class:`hitl.queue.digest.Digests`)."""

    def get(self, digest_id: str) -> Digest: ...


@dataclass(frozen=True)
class ItemResult:
    """One request of a batch: the handler's result, or the refusal it raised."""

    request_id: str
    result: Result | None = None
    error: HitlError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def decided(self) -> bool:
        return self.result is not None and self.result.terminal

    @property
    def message(self) -> str:
        if self.result is not None:
            return self.result.message
        return str(self.error)


@dataclass(frozen=True)
class BatchResult:
    """Per-request results, in the order asked."""

    items: list[ItemResult]
    approve: bool

    @property
    def decided(self) -> list[ItemResult]:
        return [i for i in self.items if i.decided]

    @property
    def refused(self) -> list[ItemResult]:
        return [i for i in self.items if not i.ok]

    @property
    def message(self) -> str:
        """``25 approved`` / ``3 rejected; 1 waiting for more approvals; 2 refused: ...``."""
        verb = "approved" if self.approve else "rejected"
        parts = [f"{len(self.decided)} {verb}"]
        voted = [i for i in self.items if i.ok and not i.decided]
        if voted:
            parts.append(f"{len(voted)} waiting for more approvals")
        if self.refused:
            reasons = sorted({str(i.error) for i in self.refused})
            shown = "; ".join(reasons[:3]) + (" ..." if len(reasons) > 3 else "")
            parts.append(f"{len(self.refused)} refused: {shown}")
        return "; ".join(parts)


def decide_many(
    decider: Decider,
    request_ids: Sequence[str],
    reviewer: Reviewer,
    *,
    approve: bool,
    reason: str = "",
) -> BatchResult:
    """Approve (or reject, with a reason) each request, one Decider call each.

    Bad input (no reason for a rejection, too many ids) is refused before anything is decided.
    Refusals (not authorized, already decided, unknown id) are per request and audited by the
    Decider; :class:`~hitl.errors.StoreUnavailable` stops the batch (each request already
    decided stays decided; running the batch again is safe).
    """
    ids = list(dict.fromkeys(request_ids))
    if not ids:
        raise InvalidRequest("no requests selected", [("ids", "empty")])
    if len(ids) > MAX_BATCH:
        raise InvalidRequest(
            f"{len(ids)} requests in one batch; the limit is {MAX_BATCH}", [("ids", "too many")]
        )
    if not approve and not reason.strip():
        raise InvalidRequest(
            "rejecting a batch needs a reason: every agent learns from it", [("reason", "required")]
        )
    items = []
    for request_id in ids:
        try:
            if approve:
                result = decider.approve(request_id, reviewer, reason)
            else:
                result = decider.reject(request_id, reviewer, reason)
        except (RefusedAttempt, NotFound) as exc:
            items.append(ItemResult(request_id, error=exc))
        else:
            items.append(ItemResult(request_id, result=result))
    return BatchResult(items, approve)


def decide_digest(
    decider: Decider,
    digests: DigestSource,
    digest_id: str,
    reviewer: Reviewer,
    *,
    approve: bool,
    reason: str = "",
    selected: Sequence[str] | None = None,
) -> BatchResult:
    """A digest's buttons: "Approve all N" / "Reject all" (``selected=None``) act on exactly the
    requests the digest listed; "Approve selected" on a subset of them. An id the digest does
    not list is refused before anything is decided (a forged payload cannot reach other requests).
    """
    digest = digests.get(digest_id)
    listed = digest.request_ids
    if selected is None:
        ids = listed
    else:
        strangers = sorted(set(selected) - set(listed))
        if strangers:
            raise InvalidRequest(
                f"{', '.join(strangers[:5])} {'is' if len(strangers) == 1 else 'are'} not in "
                f"digest {digest_id}; nothing was decided",
                [("selected", "not in the digest")],
            )
        ids = [i for i in listed if i in set(selected)]
    return decide_many(decider, ids, reviewer, approve=approve, reason=reason)
