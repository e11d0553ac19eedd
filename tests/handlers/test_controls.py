"""Override: pause / resume an agent, stop a session -- through the API, the CLI and the SDK;
authorized by role, audited, signed so that a forged resume is refused by the agent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from hitl.cli import main
from hitl.client import AsyncClient, Client, halt_if_paused
from hitl.config import Settings
from hitl.errors import AgentHalted, InvalidRequest, SignatureError
from hitl.handlers import Decider
from hitl.handlers.controls import Overrides, control_command
from hitl.keys import KeyRing
from hitl.models import Control, Reviewer, State
from hitl.policies import default_policy
from hitl.queue.store import Store
from hitl.signing import sign_control
from tests.api_server import ApiServer
from tests.reviewers import Reviewers
from tests.scenarios.helpers import audit_entries, audit_kinds, wait_until

BOB = Reviewer(user_id="bob", display_name="Bob Brown", channel="api")


@pytest.fixture
def agent(settings: Settings) -> Iterator[Client]:
    """The agent's SDK: the public key only."""
    public = settings.model_copy(update={"keyring": None, "public_keys": settings.verify_keys()})
    with Client(settings=public, agent_id="support-bot") as c:
        yield c


def test_pause_and_resume_through_the_api_halt_and_release_the_tools(
    api: ApiServer, agent: Client, r: redis.Redis
) -> None:
    """A paused agent's decorated tool raises AgentHalted and does not run; resumed, it runs."""
    ran: list[str] = []

    @halt_if_paused(agent)
    def refund(order: str) -> str:
        ran.append(order)
        return order

    assert "A-1" == refund("A-1")
    status, body, _ = api.call(
        "POST", "/agents/support-bot/pause", api.token("alice"), {"reason": "duplicate refunds"}
    )
    assert (200, "pause", "alice") == (
        status,
        body["control"]["kind"],
        body["control"]["by"]["user_id"],
    )
    [control] = agent.controls()
    assert ("pause", "duplicate refunds") == (control.kind, control.reason)
    with pytest.raises(AgentHalted, match="agent support-bot was paused by .*duplicate refunds"):
        refund("A-2")
    status, _, _ = api.call("POST", "/agents/support-bot/resume", api.token("bob"), {})
    assert 200 == status
    assert [] == agent.controls()
    assert "A-3" == refund("A-3")
    assert ["A-1", "A-3"] == ran
    assert ["control_pause", "control_resume"] == [
        k for k in audit_kinds(r) if k.startswith("control_")
    ]


def test_resume_needs_the_role_and_the_refusal_is_audited(
    api: ApiServer, agent: Client, r: redis.Redis
) -> None:
    """Anyone in the directory may pause; alice (standard) may not resume: 403, audited."""
    api.call("POST", "/agents/support-bot/pause", api.token("alice"), {"reason": "looping"})
    status, body, _ = api.call("POST", "/agents/support-bot/resume", api.token("alice"), {})
    assert (403, "not_authorized") == (status, body["error"]["code"])
    assert "manager" in body["error"]["message"]
    assert ["pause"] == [c.kind for c in agent.controls()]
    refused = [e for e in audit_entries(r) if e["kind"] == "refused"]
    assert [("alice", "resume")] == [(e["actor"], e["details"]["attempt"]) for e in refused]
    operator = api.token("ops", operator=True)
    assert 200 == api.call("POST", "/agents/support-bot/resume", operator, {})[0]


def test_bad_input_is_a_400_and_nothing_is_stored(api: ApiServer, r: redis.Redis) -> None:
    """No reason, an unknown field, an over-long agent id: 400, no control, no audit entry."""
    token = api.token("bob")
    assert 400 == api.call("POST", "/agents/x/pause", token, {})[0]
    assert 400 == api.call("POST", "/agents/x/pause", token, {"reason": "r", "why": 1})[0]
    assert 400 == api.call("POST", f"/agents/{'x' * 129}/pause", token, {"reason": "r"})[0]
    assert 400 == api.call("POST", "/agents/x/pause", token, raw=b"{not json")[0]
    assert [] == list(r.scan_iter(match="hitl:control:*"))
    assert not [k for k in audit_kinds(r) if k.startswith("control_")]


def test_stop_through_the_cli_cancels_the_sessions_pending_requests(
    api_env: ApiServer,
    reviewers: Reviewers,
    agent: Client,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`hitl stop SESSION`: its pending requests are cancelled, another session's are not."""
    mine = agent.submit("refund", {"order": "A-1"}, session_id="chat-1")
    other = agent.submit("refund", {"order": "A-2"}, session_id="chat-2")
    wait_until(lambda: len(store.pending_ids()) == 2, what="both requests stored")
    monkeypatch.setenv("HITL_TOKEN", api_env.token("carol"))
    assert 0 == main(["stop", "chat-1", "--reason", "the customer hung up"])
    assert "stopped session chat-1; cancelled 1 pending" in capsys.readouterr().out
    assert (State.CANCELLED, State.PENDING) == (store.get(mine).state, store.get(other).state)
    assert "session stopped: the customer hung up" == store.get(mine).decision.reason  # type: ignore[union-attr]
    with pytest.raises(AgentHalted, match="session chat-1 was stopped by Carol"):
        agent.check_controls("chat-1")
    agent.check_controls("chat-2")  # another session goes on


def test_a_forged_resume_is_refused_by_the_agent(
    api: ApiServer, agent: Client, r: redis.Redis
) -> None:
    """Someone with Redis write access overwrites a pause with a resume signed by another key:
    the SDK raises SignatureError and the decorated tool does not run (fail closed)."""
    api.call("POST", "/agents/support-bot/pause", api.token("bob"), {"reason": "incident"})
    forged = sign_control(
        Control(kind="resume", agent_id="support-bot", by=BOB, at=1.0), KeyRing.generate()
    )
    r.set("hitl:control:agent:support-bot", forged.model_dump_json())
    ran: list[int] = []

    @halt_if_paused(agent)
    def tool() -> None:
        ran.append(1)

    with pytest.raises(SignatureError, match="treat the agent as halted"):
        tool()
    assert [] == ran


async def test_async_client_sees_the_same_controls(
    settings: Settings, store: Store, decider: Decider
) -> None:
    """AsyncClient.controls / the async decorator, against a pause made by the handler."""
    Overrides(store, default_policy(), decider).pause("support-bot", BOB, "maintenance")
    async with AsyncClient(settings=settings, agent_id="support-bot") as ac:
        assert ["pause"] == [c.kind for c in await ac.controls()]

        @halt_if_paused(ac)
        async def tool() -> int:
            return 1

        with pytest.raises(AgentHalted):
            await tool()


def test_control_command_parses_and_says_usage(store: Store, decider: Decider) -> None:
    """The text commands Slack and Teams pass on: pause/resume/stop, usage otherwise."""
    overrides = Overrides(store, default_policy(), decider)
    assert "Paused agent a-1" in control_command(overrides, "pause a-1 stuck in a loop", BOB)
    assert "Resumed agent a-1." == control_command(overrides, "resume a-1", BOB)
    with pytest.raises(InvalidRequest, match="needs a reason"):
        control_command(overrides, "stop s-1", BOB)
    with pytest.raises(InvalidRequest, match="Missing the agent id"):
        control_command(overrides, "pause", BOB)
    with pytest.raises(InvalidRequest, match="Usage"):
        control_command(overrides, "frobnicate a-1", BOB)
