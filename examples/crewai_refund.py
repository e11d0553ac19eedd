"""CrewAI + hitl: an agent whose refund tool runs only as a reviewer decided. The LLM is
scripted (no API key needed; CrewAI's telemetry is switched off).

    pip install 'hitl-bot[crewai]'
    export HITL_REDIS_URL=... HITL_PUBLIC_KEY=...          # the agent's environment
    python examples/crewai_refund.py                      # waits for a reviewer:
    hitl pending; hitl approve ID --param amount=50         # (in another terminal)
"""

from __future__ import annotations

import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("CREWAI_DISABLE_VERSION_CHECK", "true")

import json  # noqa: E402 - after switching telemetry off
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from crewai import Agent, Crew, Task  # noqa: E402
from crewai.llms.base_llm import BaseLLM  # noqa: E402

from hitl.client import Client  # noqa: E402
from hitl.integrations.crewai import hitl_tool  # noqa: E402


class ScriptedLLM(BaseLLM):
    """Calls refund(order=A-1, amount=120) once (ReAct text), then answers with what it saw."""

    def call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
        mine = (
            [] if isinstance(messages, str) else [m for m in messages if m["role"] == "assistant"]
        )
        seen = [str(m["content"]).rsplit("Observation:", 1)[-1].strip() for m in mine]
        if seen:  # the tool answered (CrewAI appends "Observation: ..." to our last turn)
            return f"Thought: I now know the final answer\nFinal Answer: done: {seen[-1]}"
        args = json.dumps({"order": "A-1", "amount": 120.0})
        return f"Thought: refund the order\nAction: refund\nAction Input: {args}"


def build_crew(client: Client, refund: Callable[..., Any]) -> Crew:
    tool = hitl_tool(refund, client, summary="Refund an order", timeout=600)
    agent = Agent(
        role="support",
        goal="Refund what the customer asks for",
        backstory="A careful support agent.",
        tools=[tool],
        llm=ScriptedLLM(model="scripted"),
        max_iter=3,
    )
    task = Task(description="Refund order A-1", expected_output="what happened", agent=agent)
    return Crew(agents=[agent], tasks=[task])


def main() -> None:
    def refund(order: str, amount: float) -> str:
        """Refund an order."""
        return f"refunded {amount} on {order}"

    with Client(agent_id="crewai-example") as client:
        print(build_crew(client, refund).kickoff())


if __name__ == "__main__":
    main()
