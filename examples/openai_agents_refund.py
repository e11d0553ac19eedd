"""OpenAI Agents SDK + hitl: a needs_approval refund tool resolved by a reviewer, with the
run state saved while waiting and resumed by another process. The Model is scripted (no API
key, no network; tracing is off).

    pip install 'hitl-bot[openai-agents]'
    export HITL_REDIS_URL=... HITL_PUBLIC_KEY=...          # the agent's environment
    python examples/openai_agents_refund.py state.json refunds.log start
    hitl pending; hitl reject ID --reason "already refunded"
    python examples/openai_agents_refund.py state.json refunds.log resume

``start`` runs until the approval, saves the RunState, submits and exits; ``resume`` loads it,
waits for the decision and finishes the run.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agents import Agent, Model, ModelResponse, Runner, RunState, set_tracing_disabled
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from hitl.client import AsyncClient
from hitl.integrations.openai_agents import hitl_tool, resolve, submit_interruptions

set_tracing_disabled(True)


class ScriptedModel(Model):
    """Calls ``refund`` once; then says what the tool (or the refusal) answered."""

    async def get_response(
        self,
        system_instructions: Any,
        input: Any,  # noqa: A002 - the SDK's parameter name
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        items = input if isinstance(input, list) else []
        outputs = [
            i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"
        ]
        if outputs:
            text = f"done: {outputs[-1]['output']}"
            out: Any = ResponseOutputMessage(
                id="msg-1",
                content=[ResponseOutputText(text=text, type="output_text", annotations=[])],
                role="assistant",
                status="completed",
                type="message",
            )
        else:
            out = ResponseFunctionToolCall(
                id="fc-1",
                call_id="call-1",
                name="refund",
                arguments=json.dumps({"order": "A-1", "amount": 120.0}),
                type="function_call",
                status="completed",
            )
        return ModelResponse(output=[out], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the scripted model does not stream")


def build_agent(log: Path) -> Agent[Any]:
    def refund(order: str, amount: float) -> str:
        """Refund an order."""
        with log.open("a") as f:
            f.write(json.dumps({"order": order, "amount": amount}) + "\n")
        return f"refunded {amount} on {order}"

    tool = hitl_tool(refund, agent_id="oa-agent", summary="Refund an order")
    return Agent(
        name="support", instructions="Refund when asked.", tools=[tool], model=ScriptedModel()
    )


async def main() -> None:
    saved, log, phase = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    agent = build_agent(log)
    text = saved.read_text() if phase == "resume" else ""  # noqa: ASYNC240 - a script
    async with AsyncClient(agent_id="oa-agent") as client:
        if phase == "start":
            result = await Runner.run(agent, "refund order A-1")
            state = result.to_state()
            saved.write_text(state.to_string())  # noqa: ASYNC240 - a script, nothing else runs
            print(json.dumps(await submit_interruptions(state, client)))
            return
        state = await RunState.from_string(agent, text)
        await resolve(state, client, timeout=60)
        result = await Runner.run(agent, state)
    print(json.dumps({"output": str(result.final_output)}))


if __name__ == "__main__":
    asyncio.run(main())
