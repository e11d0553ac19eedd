"""Feedback memory: what humans decided about an agent's requests, read back by the agent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from hitl.client import AsyncClient, Client
from hitl.config import Settings
from hitl.errors import InvalidRequest, StoreUnavailable
from hitl.handlers import Decider
from hitl.models import Outcome, Reviewer, Risk
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import FEEDBACK_MAXLEN
from tests.scenarios.helpers import drain

BOB = Reviewer(user_id="bob", display_name="Bob", channel="slack")


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(settings=settings, agent_id="agent-1") as c:
        yield c


def test_rejections_modifications_and_approvals_are_kept_newest_first(
    client: Client, intake: IntakeConsumer, decider: Decider
) -> None:
    """Each human decision is one entry: the reason, the params before and after, who decided."""
    first = client.submit("send_email", {"to": "all@example.com"})
    second = client.submit("send_email", {"to": "ops@example.com", "body": "hi"})
    third = client.submit("send_email", {"to": "ops@example.com"})
    drain(intake)
    decider.reject(first, BOB, "never mail the whole company")
    decider.modify(second, BOB, {"to": "ops@example.com", "body": "Hello team"}, "tone")
    decider.approve(third, BOB, "fine")
    entries = client.feedback(action="send_email")
    assert [third, second, first] == [e.request_id for e in entries]
    assert [Outcome.APPROVED, Outcome.APPROVED, Outcome.REJECTED] == [e.outcome for e in entries]
    assert "never mail the whole company" == entries[2].reason
    assert (True, {"to": "ops@example.com", "body": "hi"}, "Hello team") == (
        entries[1].modified,
        entries[1].original_params,
        entries[1].params["body"],
    )
    assert (False, ["Bob"], "agent-1") == (
        entries[0].modified,
        entries[0].reviewers,
        entries[0].agent_id,
    )
    assert {Risk.MEDIUM} == {e.risk for e in entries}


def test_feedback_is_per_agent_and_action(
    client: Client, settings: Settings, intake: IntakeConsumer, decider: Decider
) -> None:
    """Another agent's, or another action's, decisions are not in this agent's feedback."""
    with Client(settings=settings, agent_id="agent-2") as other:
        theirs = other.submit("send_email", {"to": "x@example.com"})
    mine = client.submit("refund", {"order": "A-1"})
    drain(intake)
    decider.reject(theirs, BOB, "no")
    decider.reject(mine, BOB, "no")
    assert [] == client.feedback(action="send_email")
    assert [mine] == [e.request_id for e in client.feedback(action="refund")]
    assert [theirs] == [
        e.request_id for e in client.feedback(action="send_email", agent_id="agent-2")
    ]


def test_automatic_and_cancelled_outcomes_are_not_feedback(
    client: Client, intake: IntakeConsumer, decider: Decider
) -> None:
    """Only a human's approval or rejection teaches anything; a cancellation is not kept."""
    rid = client.submit("refund", {"order": "A-1"})
    drain(intake)
    assert Outcome.CANCELLED == decider.cancel(rid, "ops", "duplicate").decision.outcome  # type: ignore[union-attr]
    assert [] == client.feedback(action="refund")


def test_the_list_is_capped(
    client: Client, intake: IntakeConsumer, decider: Decider, r: redis.Redis
) -> None:
    """At most FEEDBACK_MAXLEN entries per agent and action are kept: the newest."""
    key = client.keys.feedback("agent-1", "refund")
    r.lpush(key, *["{}"] * FEEDBACK_MAXLEN)
    rid = client.submit("refund", {"order": "A-1"})
    drain(intake)
    decider.approve(rid, BOB)
    assert FEEDBACK_MAXLEN == r.llen(key)
    assert rid == client.feedback(action="refund", limit=1)[0].request_id


def test_feedback_needs_an_agent(settings: Settings) -> None:
    """Without an agent id there is no feedback to read: a clear error, not every agent's."""
    with Client(settings=settings) as anonymous, pytest.raises(InvalidRequest, match="agent_id="):
        anonymous.feedback(action="refund")


def test_redis_down_is_store_unavailable(settings: Settings) -> None:
    """An unreachable Redis is StoreUnavailable, not a raw redis error."""
    dead = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    with Client(settings=dead, agent_id="a") as c, pytest.raises(StoreUnavailable):
        c.feedback(action="refund")


async def test_async_client_reads_the_same_feedback(
    settings: Settings, client: Client, intake: IntakeConsumer, decider: Decider
) -> None:
    """AsyncClient.feedback returns what Client.feedback returns."""
    rid = client.submit("refund", {"order": "A-1"})
    drain(intake)
    decider.reject(rid, BOB, "wrong order")
    async with AsyncClient(settings=settings, agent_id="agent-1") as ac:
        entries = await ac.feedback(action="refund")
    assert ["wrong order"] == [e.reason for e in entries]
