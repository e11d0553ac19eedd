"""AutoGen + hitl: an AssistantAgent whose refund tool runs only as a reviewer decided. The
model is autogen-ext's replay client (no API key needed).

    pip install 'hitl-bot[autogen]' autogen-ext
    export HITL_REDIS_URL=... HITL_PUBLIC_KEY=...          # the agent's environment
    python examples/autogen_refund.py                     # waits for a reviewer:
    hitl pending; hitl approve ID --param amount=50         # (in another terminal)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, ModelFamily, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

from hitl.client import AsyncClient
from hitl.integrations.autogen import hitl_tool


def scripted_model() -> ReplayChatCompletionClient:
    """Calls refund(order=A-1, amount=120) and then says it is done."""
    args = json.dumps({"order": "A-1", "amount": 120.0})
    call = FunctionCall(id="call-1", name="refund", arguments=args)
    usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
    info = ModelInfo(
        vision=False,
        function_calling=True,
        json_output=False,
        family=ModelFamily.UNKNOWN,
        structured_output=False,
    )
    first = CreateResult(finish_reason="function_calls", content=[call], usage=usage, cached=False)
    return ReplayChatCompletionClient([first, "done"], model_info=info)


def build_agent(client: AsyncClient, refund: Callable[..., Any]) -> AssistantAgent:
    tool = hitl_tool(refund, client, summary="Refund an order", timeout=600)
    return AssistantAgent("support", model_client=scripted_model(), tools=[tool])


async def main() -> None:
    def refund(order: str, amount: float) -> str:
        """Refund an order."""
        return f"refunded {amount} on {order}"

    async with AsyncClient(agent_id="autogen-example") as client:
        result = await build_agent(client, refund).run(task="refund order A-1")
    print(result.messages[-1].content)


if __name__ == "__main__":
    asyncio.run(main())
