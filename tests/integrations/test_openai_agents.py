"""OpenAI Agents SDK: needs_approval tools resolved through hitl's API; run state serialized
while waiting and resumed in a new process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "agents", reason="the extra is not installed: pip install 'hitl-bot[openai-agents]'"
)

from agents import Runner  # noqa: E402

from examples.openai_agents_refund import build_agent  # noqa: E402
from hitl.client import AsyncClient  # noqa: E402
from tests.reviewers import Reviewers  # noqa: E402

APP = Path(__file__).parents[2] / "examples" / "openai_agents_refund.py"


def lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def decide(reviewers: Reviewers, how: str) -> None:
    rid = reviewers.next_pending("refund")
    if how == "approve":
        reviewers.approve(rid)
    elif how == "modify":
        reviewers.modify(rid, {"order": "A-1", "amount": 50.0})
    else:
        reviewers.reject(rid, "already refunded")


@pytest.mark.parametrize(
    ("how", "ran", "said"),
    [
        ("approve", [{"order": "A-1", "amount": 120.0}], "done: refunded 120.0 on A-1"),
        ("modify", [{"order": "A-1", "amount": 50.0}], "done: refunded 50.0 on A-1"),
        ("reject", [], "done: rejected by Bob Brown: already refunded"),
    ],
)
async def test_needs_approval_is_resolved_by_hitl(
    agent_vars: None, reviewers: Reviewers, tmp_path: Path, how: str, ran: list[Any], said: str
) -> None:
    """Approved: the tool ran as asked; modified: with the reviewer's params; rejected: it did
    not run and the model saw the reviewer's reason."""
    from hitl.integrations.openai_agents import resolve

    log = tmp_path / "log"
    agent = build_agent(log)
    result = await Runner.run(agent, "refund order A-1")
    assert 1 == len(result.interruptions)
    state = result.to_state()
    async with AsyncClient(agent_id="oa-agent") as client:
        deciding = asyncio.create_task(asyncio.to_thread(decide, reviewers, how))
        await resolve(state, client, timeout=30)
        await deciding
    result = await Runner.run(agent, state)
    assert (said, ran) == (result.final_output, lines(log))


@pytest.mark.slow
def test_run_state_survives_a_restart_while_pending(
    agent_env: dict[str, str], reviewers: Reviewers, tmp_path: Path
) -> None:
    """Process 1 saves the RunState and submits, then exits; a reviewer modifies; process 2
    loads the state, resolves through hitl and the tool runs with the reviewer's params."""
    saved, log = tmp_path / "state.json", tmp_path / "log"
    env = agent_env | {"OPENAI_AGENTS_DISABLE_TRACING": "1", "OPENAI_API_KEY": "sk-none"}

    def process(phase: str) -> Any:
        done = subprocess.run(
            [sys.executable, str(APP), str(saved), str(log), phase],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert 0 == done.returncode, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    [rid] = process("start")
    assert rid == reviewers.next_pending("refund")
    assert saved.exists() and [] == lines(log)
    decide(reviewers, "modify")
    assert "done: refunded 50.0 on A-1" == process("resume")["output"]
    assert [{"order": "A-1", "amount": 50.0}] == lines(log)
