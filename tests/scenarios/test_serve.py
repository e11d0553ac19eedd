"""`hitl serve` as it runs: intake, the API, an agent, a CLI reviewer with a token, /healthz."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from hitl.cli import main
from hitl.client import Client
from hitl.config import Settings
from hitl.handlers import OpenAuthority
from hitl.handlers.tokens import issue
from hitl.models import Decision, Outcome
from hitl.policies import default_policy
from hitl.queue.store import Store
from hitl.queue.tokens import TokenRecords
from hitl.service import Service
from tests.redis_server import free_port
from tests.scenarios.helpers import run_in_thread, wait_until


@pytest.fixture
def serving(settings: Settings, store: Store) -> Iterator[tuple[Service, str]]:
    """``hitl serve`` as it runs: ``Service.serve()`` (intake, API, healthz) on a free port."""
    svc = Service(settings, store=store)
    port = free_port()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(svc.serve("127.0.0.1", port),), daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _get(url + "/healthz")[0] == 200, what="the service to answer")
    yield svc, url
    svc.request_stop()
    thread.join(10)
    loop.close()
    for consumer in svc.consumers:
        consumer.close()


def _get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, None


def test_serve_round_trip_and_healthz(
    env: None,
    serving: tuple[Service, str],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An agent asks, `hitl approve` answers through the API of the running service with bob's
    token, the agent returns; /healthz reports the backlog."""
    service, url = serving
    token, _ = issue(
        TokenRecords(service.store), service.keyring, default_policy(), "bob", actor="test"
    )
    monkeypatch.setenv("HITL_URL", url)
    monkeypatch.setenv("HITL_TOKEN", token)
    with Client(settings=settings, agent_id="ops") as client:

        def ask() -> Decision:
            return client.request_approval("restart_service", {"name": "api"}, timeout=30)

        with run_in_thread(ask) as agent:
            rid = wait_until(lambda: (service.store.pending_ids() or [None])[0], what="a request")
            assert 0 == main(["approve", rid, "--reason", "go"])
        for action in ("a", "b"):
            client.submit(action, {})
        wait_until(lambda: service.store.pending_count() == 2, what="two more pending")
    decision: Decision = agent.value
    assert (Outcome.APPROVED, "go", [("bob", "api")]) == (
        decision.outcome,
        decision.reason,
        [(rv.user_id, rv.channel) for rv in decision.reviewers],
    )
    status, body = _get(url + "/healthz")
    assert (200, "ok", 2) == (status, body["status"], body["pending"])
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
