"""What every integration shares: stable request ids, the words a refused tool answers, and a
tool body that runs only as a reviewer decided."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from typing import Any

from hitl.client import AsyncClient, Client, halt_if_paused, require_approval
from hitl.errors import AgentHalted, ApprovalRejected
from hitl.models import Decision

__all__ = ["approved_or_refusal", "refusal_text", "request_id_for"]


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


def approved_or_refusal(
    fn: Callable[..., Any],
    client: Client | AsyncClient,
    *,
    action: str,
    timeout: float | None = None,
    **fields: Any,
) -> Callable[..., Any]:
    """``fn`` (sync with a :class:`Client`, async with an :class:`AsyncClient`) behind
    :func:`hitl.require_approval` and :func:`hitl.client.halt_if_paused`: it runs with the
    approved (maybe modified) params, or answers ``not run: <who and why>`` for the model to
    read, instead of raising, as framework tools are expected to."""
    guarded = halt_if_paused(client)(
        require_approval(client, action=action, timeout=timeout, **fields)(fn)
    )

    def refusal(exc: ApprovalRejected | AgentHalted) -> str:
        if isinstance(exc, ApprovalRejected):
            return f"not run: {refusal_text(exc.decision)}"
        return f"not run: {exc}"

    if inspect.iscoroutinefunction(fn):

        async def call_async(**kwargs: Any) -> Any:
            try:
                return await guarded(**kwargs)
            except (ApprovalRejected, AgentHalted) as exc:
                return refusal(exc)

        return functools.wraps(fn)(call_async)

    def call(**kwargs: Any) -> Any:
        try:
            return guarded(**kwargs)
        except (ApprovalRejected, AgentHalted) as exc:
            return refusal(exc)

    return functools.wraps(fn)(call)
