"""CrewAI: a tool that asks hitl before it runs.

:func:`hitl_tool` turns a function into a CrewAI tool (``crewai.tools.tool``) for an ``Agent``:
each call becomes an approval request; the function runs with the params a reviewer approved
(modified ones included), or does not run and the agent reads ``not run: rejected by <who>:
<reason>`` as the tool's result. While a person has paused the agent, it does not run::

    refund = hitl_tool(refund_order, Client(agent_id="crew-support"), summary="Refund an order")
    agent = Agent(role="support", goal="...", backstory="...", tools=[refund], llm=...)

CrewAI runs tools synchronously, so this takes a :class:`hitl.Client`. Install with
``pip install 'hitl-bot[crewai]'`` (heavy: see docs/integrations.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crewai.tools import BaseTool, tool

from hitl.client import Client
from hitl.integrations._common import approved_or_refusal

__all__ = ["hitl_tool"]


def hitl_tool(
    fn: Callable[..., Any],
    client: Client,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    **fields: Any,
) -> BaseTool:
    """``fn`` as a CrewAI tool that runs only as a hitl reviewer decided."""
    action = name or fn.__name__
    body = approved_or_refusal(fn, client, action=action, timeout=timeout, **fields)
    body.__doc__ = description or fn.__doc__ or action
    made: BaseTool = tool(action)(body)
    return made
