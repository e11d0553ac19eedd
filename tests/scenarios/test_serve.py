"""`hitl serve` as it runs: intake, the API, an agent, a CLI reviewer with a token, /healthz."""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
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
from tests.conftest import keyring_file
from tests.redis_server import RedisServer, free_port
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


async def _health(service: Service) -> tuple[int, dict[str, Any]]:
    async with TestClient(TestServer(service.app)) as http:
        resp = await http.get("/healthz")
        return resp.status, await resp.json()


async def test_a_failing_consumer_is_degraded_then_recovers(
    service: Service, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An intake that keeps failing is reported degraded (200, with its error) and keeps running;
    once the fault clears it stores again and /healthz is ok."""
    [consumer] = service.consumers
    real = consumer.run_once
    broken = [True]

    def failing(block_ms: int | None = None) -> int:
        if broken[0]:
            raise RuntimeError("disk on fire")
        return real(block_ms)

    monkeypatch.setattr(consumer, "run_once", failing)
    service.start_intake()
    await asyncio.to_thread(wait_until, lambda: consumer.failures >= 3, 10.0, "three failures")
    status, body = await _health(service)
    assert (200, "degraded") == (status, body["status"])
    assert "RuntimeError: disk on fire" == body["intake"][0]["last_error"]
    assert body["intake"][0]["alive"]
    broken[0] = False
    r.xadd("hitl:requests", {"request": '{"id": "r-1", "action": "x"}'})
    await asyncio.to_thread(wait_until, lambda: service.store.find("r-1"), 10.0, "r-1 stored")
    status, body = await _health(service)
    assert (200, "ok", 0) == (status, body["status"], body["intake"][0]["failures"])


async def test_a_dead_consumer_thread_is_reported_and_restarted(
    service: Service, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A consumer thread that ended makes /healthz degraded; the supervisor starts it again."""
    [consumer] = service.consumers
    real = consumer.run
    calls: list[int] = []

    def ends_once(stop: threading.Event) -> None:
        calls.append(1)
        if len(calls) > 1:
            real(stop)

    monkeypatch.setattr(consumer, "run", ends_once)
    service.supervise_every_s = 3600.0  # the test calls supervise_once itself
    service.start_intake()
    await asyncio.to_thread(wait_until, lambda: not service.intake_alive(), 10.0, "thread ended")
    status, body = await _health(service)
    assert (200, "degraded", False) == (status, body["status"], body["intake"][0]["alive"])
    assert 1 == await asyncio.to_thread(service.supervise_once)
    r.xadd("hitl:requests", {"request": '{"id": "r-1", "action": "x"}'})
    await asyncio.to_thread(wait_until, lambda: service.store.find("r-1"), 10.0, "r-1 stored")
    status, body = await _health(service)
    assert (200, "ok", 1) == (status, body["status"], body["intake_restarts"])


def _first_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The first line ``proc`` prints, or a failure naming what it said on stderr."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            _, err = proc.communicate(5)
            pytest.fail(f"`hitl serve` printed nothing in {timeout:g}s; stderr:\n{err}")
    return proc.stdout.readline()


@pytest.mark.parametrize(
    ("args", "port_env"),
    [(["--port", "0"], None), ([], "0")],
    ids=["--port 0", "PORT=0"],
)
def test_serve_port_0_binds_a_free_port_and_prints_it(
    redis_server: RedisServer, tmp_path: Path, args: list[str], port_env: str | None
) -> None:
    """`hitl serve --port 0` (or PORT=0) binds any free port, prints it, and answers there."""
    env = {
        **os.environ,
        "HITL_REDIS_URL": redis_server.url,
        "HITL_SIGNING_KEY_FILE": str(keyring_file(tmp_path)),
        "HITL_DATA_DIR": str(tmp_path / "data"),
    }
    env.pop("PORT", None)
    if port_env is not None:
        env["PORT"] = port_env
    cmd = [sys.executable, "-m", "hitl", "serve", "--host", "127.0.0.1", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _first_line(proc)
        found = re.search(r"serving on http://127\.0\.0\.1:(\d+) ", line)
        assert found is not None, line
        port = int(found.group(1))
        assert 0 != port and 3000 != port
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert (200, "ok") == (status, body["status"])
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
