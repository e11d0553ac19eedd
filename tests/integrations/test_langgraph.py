"""LangGraph's interrupt() and LangChain's HumanInTheLoopMiddleware, decided through hitl's API;
the graph resumes its own way (Command(resume=...)), also in a new process after a restart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "langgraph", reason="the extra is not installed: pip install 'hitl-bot[langgraph]'"
)
pytest.importorskip(
    "langchain", reason="the extra is not installed: pip install 'hitl-bot[langgraph]'"
)

from langchain_core.messages import ToolMessage  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.types import Command  # noqa: E402

from examples.langgraph_refund import build_agent, build_graph  # noqa: E402
from hitl.client import Client  # noqa: E402
from hitl.errors import AgentHalted, SignatureError  # noqa: E402
from hitl.integrations.langgraph import run  # noqa: E402
from hitl.keys import KeyRing  # noqa: E402
from hitl.models import Decision, Outcome  # noqa: E402
from hitl.signing import sign_decision  # noqa: E402
from tests.api_server import ApiServer  # noqa: E402
from tests.reviewers import Reviewers  # noqa: E402
from tests.scenarios.helpers import run_in_thread  # noqa: E402

APP = Path(__file__).parents[2] / "examples" / "langgraph_refund.py"


def lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def decide(reviewers: Reviewers, action: str, how: str) -> None:
    rid = reviewers.next_pending(action)
    if how == "approve":
        reviewers.approve(rid)
    elif how == "modify":
        reviewers.modify(
            rid, {"order": "A-1", "amount": 50.0} if action == "refund" else {"path": "/tmp/b"}
        )
    else:
        reviewers.reject(rid, "keep it")


@pytest.mark.parametrize(
    ("how", "ran", "result"),
    [
        ("approve", [{"order": "A-1", "amount": 120.0}], "refunded 120.0"),
        ("modify", [{"order": "A-1", "amount": 50.0}], "refunded 50.0"),
        ("reject", [], "not refunded: keep it"),
    ],
)
def test_node_pauses_in_interrupt_and_resumes_with_the_decision(
    agent_vars: None, reviewers: Reviewers, tmp_path: Path, how: str, ran: list[Any], result: str
) -> None:
    """approval() inside a node: the refund ran with the approved / modified params, or not."""
    log = tmp_path / "log"
    graph = build_graph(InMemorySaver(), log)
    config = {"configurable": {"thread_id": f"t-{how}"}}
    with (
        Client(agent_id="lg-agent") as client,
        run_in_thread(
            lambda: run(graph, {"order": "A-1", "amount": 120.0}, config, client, timeout=30)
        ) as done,
    ):
        decide(reviewers, "refund", how)
    assert done.error is None, done.error
    assert (result, ran) == (done.value["result"], lines(log))


def test_a_resume_value_that_is_not_the_signed_decision_is_refused(
    agent_vars: None, tmp_path: Path
) -> None:
    """Command(resume=...) with a decision signed by another key: SignatureError, no refund."""
    log = tmp_path / "log"
    graph = build_graph(InMemorySaver(), log)
    config = {"configurable": {"thread_id": "t-forged"}}
    graph.invoke({"order": "A-1", "amount": 120.0}, config)
    [pending] = graph.get_state(config).interrupts
    forged = sign_decision(
        Decision(
            request_id=pending.value["hitl_request"]["id"],
            outcome=Outcome.APPROVED,
            params={"order": "A-1", "amount": 120.0},
        ),
        KeyRing.generate(),
    )
    with pytest.raises(SignatureError):
        graph.invoke(Command(resume={pending.id: forged.model_dump(mode="json")}), config)
    assert [] == lines(log)


@pytest.mark.parametrize(
    ("how", "ran", "said"),
    [
        ("approve", [{"path": "/tmp/a"}], "deleted /tmp/a"),
        ("modify", [{"path": "/tmp/b"}], "deleted /tmp/b"),
        ("reject", [], "rejected by Bob Brown: keep it"),
    ],
)
def test_middleware_takes_its_decisions_from_hitl(
    agent_vars: None, reviewers: Reviewers, tmp_path: Path, how: str, ran: list[Any], said: str
) -> None:
    """HumanInTheLoopMiddleware: approve / edit / reject from hitl; the model sees the reason."""
    log = tmp_path / "log"
    agent = build_agent(InMemorySaver(), log)
    config = {"configurable": {"thread_id": f"a-{how}"}}
    ask = {"messages": [{"role": "user", "content": "delete the report"}]}
    with (
        Client(agent_id="lg-agent") as client,
        run_in_thread(lambda: run(agent, ask, config, client, timeout=30)) as done,
    ):
        decide(reviewers, "delete_file", how)
    assert done.error is None, done.error
    messages = done.value["messages"]
    tool_messages = [m for m in messages if isinstance(m, ToolMessage)]
    assert ran == lines(log)
    assert said in str(tool_messages[-1].content)
    assert messages[-1].content.startswith("done: ")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "action", "ran", "result"),
    [
        ("node", "refund", [{"order": "A-1", "amount": 50.0}], "refunded 50.0"),
        ("agent", "delete_file", [{"path": "/tmp/b"}], "deleted /tmp/b"),
    ],
)
def test_resumes_after_the_process_restarts_while_pending(
    agent_env: dict[str, str],
    reviewers: Reviewers,
    tmp_path: Path,
    kind: str,
    action: str,
    ran: list[Any],
    result: str,
) -> None:
    """Process 1 pauses (SQLite checkpointer), submits and exits; a reviewer modifies; process 2
    resumes from the checkpoint with the decision."""
    db, log = tmp_path / "graph.sqlite", tmp_path / "log"
    argv = [sys.executable, str(APP), str(db), str(log), "thread-1", kind]

    def process(phase: str) -> Any:
        done = subprocess.run(
            [*argv, phase], env=agent_env, capture_output=True, text=True, timeout=90
        )
        assert 0 == done.returncode, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    [rid] = process("start")
    assert rid == reviewers.next_pending(action)
    assert [] == lines(log)
    decide(reviewers, action, "modify")
    assert result in process("resume")["result"]
    assert ran == lines(log)


def test_a_paused_agents_graph_stays_paused(
    agent_vars: None, api: ApiServer, tmp_path: Path
) -> None:
    """After `pause lg-agent` (API), run() raises AgentHalted; the refund did not run."""
    status, _, _ = api.call("POST", "/agents/lg-agent/pause", api.token("bob"), {"reason": "audit"})
    assert 200 == status
    log = tmp_path / "log"
    graph = build_graph(InMemorySaver(), log)
    config = {"configurable": {"thread_id": "t-paused"}}
    with Client(agent_id="lg-agent") as client, pytest.raises(AgentHalted, match="audit"):
        run(graph, {"order": "A-1", "amount": 120.0}, config, client, timeout=5)
    assert [] == lines(log)
    assert 1 == len(graph.get_state(config).interrupts)
