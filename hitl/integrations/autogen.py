"""AutoGen (``autogen-agentchat``): tools that ask hitl, and an approval function for code.

:func:`hitl_tool` wraps a function as an ``autogen_core`` ``FunctionTool`` for an
``AssistantAgent``: each call becomes an approval request; the function runs with the params a
reviewer approved (modified ones included), or does not run and the model is told the
reviewer's reason as the tool's result. While a person has paused the agent, it does not run::

    refund = hitl_tool(refund_order, client, summary="Refund an order")
    agent = AssistantAgent("support", model_client=..., tools=[refund])

:func:`approval_func` is the ``approval_func`` of a ``CodeExecutorAgent``: the code to run is
the request's ``params.code``. AutoGen can only run or not run the code the model wrote, so a
reviewer's modification comes back as a refusal whose reason carries the reviewer's version,
for the model to propose again.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from autogen_agentchat.agents import ApprovalRequest as CodeApprovalRequest
from autogen_agentchat.agents import ApprovalResponse as CodeApprovalResponse
from autogen_core.tools import FunctionTool

from hitl.client import AsyncClient
from hitl.integrations._common import approved_or_refusal, refusal_text

__all__ = ["approval_func", "hitl_tool"]


def hitl_tool(
    fn: Callable[..., Any],
    client: AsyncClient,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    **fields: Any,
) -> FunctionTool:
    """``fn`` as a FunctionTool that runs only as a hitl reviewer decided (see module docs)."""
    action = name or fn.__name__

    @functools.wraps(fn)
    async def call(**kwargs: Any) -> Any:  # AutoGen awaits tools: one async body for both kinds
        result = fn(**kwargs)
        return await result if inspect.isawaitable(result) else result

    tool = approved_or_refusal(call, client, action=action, timeout=timeout, **fields)
    return FunctionTool(tool, description=description or (fn.__doc__ or action), name=action)


def approval_func(
    client: AsyncClient, *, timeout: float | None = None, **fields: Any
) -> Callable[[CodeApprovalRequest], Awaitable[CodeApprovalResponse]]:
    """A ``CodeExecutorAgent(approval_func=...)`` that asks hitl before code runs."""

    async def approve(request: CodeApprovalRequest) -> CodeApprovalResponse:
        await client.check_controls()
        fields.setdefault("summary", "Run code written by the agent")
        decision = await client.request_approval(
            "execute_code", {"code": request.code}, timeout=timeout, **fields
        )
        if decision.approved and not decision.modified:
            return CodeApprovalResponse(approved=True, reason=decision.reason or "approved")
        if decision.approved:
            changed = str(decision.params.get("code", ""))
            reason = f"a reviewer changed the code; propose this instead:\n{changed}"
            return CodeApprovalResponse(approved=False, reason=reason)
        return CodeApprovalResponse(approved=False, reason=refusal_text(decision))

    return approve
