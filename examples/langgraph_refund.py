"""LangGraph + hitl: a refund node that pauses in interrupt(), and a LangChain agent whose
delete_file tool pauses in HumanInTheLoopMiddleware; both resumed with a reviewer's decision,
also by another process (SQLite checkpointer). The model is scripted (no API key needed).

    pip install 'hitl-bot[langgraph]' langgraph-checkpoint-sqlite
    export HITL_REDIS_URL=... HITL_PUBLIC_KEY=...          # the agent's environment
    python examples/langgraph_refund.py graph.db refunds.log thread-1 node start
    hitl pending; hitl approve ID --param amount=50          # a reviewer, anywhere
    python examples/langgraph_refund.py graph.db refunds.log thread-1 node resume

(``agent`` instead of ``node`` runs the LangChain agent.) ``start`` runs until the pause,
submits the request and exits; ``resume`` waits for the decision and finishes the run.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from typing import Any, TypedDict

from langchain.agents import create_agent
from langchain.agents.middleware import HumanInTheLoopMiddleware
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from hitl.client import Client
from hitl.integrations.langgraph import approval, run, submit_pending


class ScriptedModel(BaseChatModel):
    """Asks for ``delete_file`` once, then answers with what the tool said (or the refusal)."""

    path: str = "/tmp/report.txt"

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedModel:  # type: ignore[override]
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            reply = AIMessage(content=f"done: {last.content}")
        else:
            call = {"name": "delete_file", "args": {"path": self.path}, "id": "call-1"}
            reply = AIMessage(content="", tool_calls=[call])
        return ChatResult(generations=[ChatGeneration(message=reply)])


class RefundState(TypedDict, total=False):
    order: str
    amount: float
    result: str


def build_graph(checkpointer: BaseCheckpointSaver[Any], log: Path) -> Any:
    """One node that asks hitl before refunding; the refund appends to ``log``."""

    def refund_node(state: RefundState) -> RefundState:
        decision = approval(
            "refund", {"order": state["order"], "amount": state["amount"]}, agent_id="lg-agent"
        )
        if not decision.approved:
            return {"result": f"not refunded: {decision.reason}"}
        with log.open("a") as f:
            f.write(json.dumps(decision.params) + "\n")
        return {"result": f"refunded {decision.params['amount']}"}

    graph = StateGraph(RefundState)
    graph.add_node("refund", refund_node)
    graph.add_edge(START, "refund")
    graph.add_edge("refund", END)
    return graph.compile(checkpointer=checkpointer)


def build_agent(checkpointer: BaseCheckpointSaver[Any], log: Path, path: str = "/tmp/a") -> Any:
    """A create_agent agent whose delete_file tool pauses in HumanInTheLoopMiddleware."""

    @tool
    def delete_file(path: str) -> str:
        """Delete a file (irreversible)."""
        with log.open("a") as f:
            f.write(json.dumps({"path": path}) + "\n")
        return f"deleted {path}"

    return create_agent(
        ScriptedModel(path=path),
        tools=[delete_file],
        middleware=[HumanInTheLoopMiddleware(interrupt_on={"delete_file": True})],
        checkpointer=checkpointer,
    )


def main() -> None:
    from langgraph.checkpoint.sqlite import SqliteSaver

    db, log, thread, kind, phase = sys.argv[1:6]
    saver = SqliteSaver(sqlite3.connect(db, check_same_thread=False))
    build = build_graph if kind == "node" else build_agent
    graph = build(saver, Path(log))
    config = {"configurable": {"thread_id": thread}}
    first: Any = (
        {"order": "A-1", "amount": 120.0}
        if kind == "node"
        else {"messages": [{"role": "user", "content": "delete the report"}]}
    )
    with Client(agent_id="lg-agent") as client:
        if phase == "start":
            graph.invoke(first, config)
            print(json.dumps(submit_pending(graph, config, client)))
            return
        out = run(graph, None, config, client, timeout=60)
    if kind == "node":
        print(json.dumps({"result": out["result"]}))
    else:
        print(json.dumps({"result": out["messages"][-1].content}))


if __name__ == "__main__":
    main()
