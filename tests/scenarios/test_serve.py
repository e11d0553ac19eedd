"""A `hitl serve`-like run: the service's intake threads, an agent, a CLI reviewer, /healthz."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from hitl.cli import main
from hitl.client import Client
from hitl.config import Settings
from hitl.handlers import OpenAuthority
from hitl.models import Decision, Outcome
from hitl.queue.store import Store
from hitl.service import Service
from tests.redis_server import free_port
from tests.scenarios.helpers import run_in_thread, wait_until


@pytest.fixture
def service(settings: Settings, store: Store) -> Iterator[Service]:
    svc = Service(settings, store=store, authority=OpenAuthority())
    yield svc
    svc.stop_intake()
    for consumer in svc.consumers:
        consumer.close()


def _agent_and_reviewer(service: Service, settings: Settings) -> Decision:
    """The blocking part: an agent asks, `hitl approve` answers, the agent gets the decision."""
    service.start_intake()
    with Client(settings=settings, agent_id="ops") as client:

        def ask() -> Decision:
            return client.request_approval("restart_service", {"name": "api"}, timeout=30)

        with run_in_thread(ask) as agent:
            rid = wait_until(lambda: (service.store.pending_ids() or [None])[0], what="a request")
            assert 0 == main(["approve", rid, "--as", "bob", "--reason", "go"])
        for action in ("a", "b"):
            client.submit(action, {})
        wait_until(lambda: service.store.pending_count() == 2, what="two more pending")
    decision: Decision = agent.value
    return decision


async def test_serve_round_trip_and_healthz(
    env: None, service: Service, settings: Settings, r: redis.Redis
) -> None:
    """Intake threads store, the CLI decides, the agent returns; /healthz reports the backlog."""
    decision = await asyncio.to_thread(_agent_and_reviewer, service, settings)
    assert (Outcome.APPROVED, "go", ["bob"]) == (
        decision.outcome,
        decision.reason,
        [rv.user_id for rv in decision.reviewers],
    )
    async with TestClient(TestServer(service.app)) as http:
        resp = await http.get("/healthz")
        body = await resp.json()
    assert (200, "ok", 2) == (resp.status, body["status"], body["pending"])
    assert 3 == sum(stats["stored"] for stats in body["intake"])


async def test_healthz_is_503_when_redis_is_down(settings: Settings) -> None:
    """With Redis unreachable /healthz answers 503 with the reason, and the service stays up."""
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    service = Service(down, authority=OpenAuthority())
    try:
        async with TestClient(TestServer(service.app)) as http:
            resp = await http.get("/healthz")
            body = await resp.json()
            again = await http.get("/healthz")
    finally:
        for consumer in service.consumers:
            consumer.close()
        service.store.redis.close()
    assert (503, "unavailable", 503) == (resp.status, body["status"], again.status)
    assert "Redis is unreachable" in body["error"]
