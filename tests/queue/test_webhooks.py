"""Webhook delivery to a real local HTTP server: signature, retries, audit, acknowledgement."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer
from redis.backoff import NoBackoff
from redis.retry import Retry

from hitl.handlers import Decider, review_everything
from hitl.keys import KeyRing
from hitl.models import Decision, Reviewer
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from hitl.queue.webhooks import WebhookDeliverer, signature_header, verify_signature_header
from hitl.signing import verify_decision
from tests.conftest import KEYRING
from tests.redis_server import RedisServer, free_port
from tests.scenarios.helpers import audit_entries, drain, xadd_raw


class Receiver:
    """An HTTP endpoint that answers with the given statuses in turn (then 200) and records."""

    def __init__(self, *statuses: int, delay_s: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.delay_s = delay_s
        self.calls: list[tuple[bytes, dict[str, str]]] = []
        self.on_call: Any = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.calls.append((body, dict(request.headers)))
        if self.on_call is not None:
            self.on_call()
        if self.delay_s and len(self.calls) == 1:
            await asyncio.sleep(self.delay_s)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok")


async def _serve(receiver: Receiver) -> TestServer:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    rec = Receiver()
    server = await _serve(rec)
    yield rec, str(server.make_url("/hook"))
    await server.close()


def _decide(
    intake: IntakeConsumer, decider: Decider, r: redis.Redis, url: str, rid: str = "r-1"
) -> Decision:
    xadd_raw(
        r, json.dumps({"id": rid, "action": "refund", "params": {"a": 1}, "callback_url": url})
    )
    drain(intake)
    result = decider.approve(rid, Reviewer(user_id="bob"))
    assert result.decision is not None
    return result.decision


async def _deliver_one(deliverer: WebhookDeliverer) -> bool:
    deliverer.ensure_group()
    entries = deliverer.read(block_ms=10)
    assert 1 == len(entries)
    async with aiohttp.ClientSession() as session:
        return await deliverer.deliver(session, entries[0])


def _webhook_audit(r: redis.Redis) -> list[tuple[str, dict[str, Any]]]:
    return [(e["kind"], e["details"]) for e in audit_entries(r) if e["kind"].startswith("webhook")]


def _unacked(r: redis.Redis) -> int:
    return int(r.xpending("hitl:webhooks", "hitl-webhooks")["pending"])


async def test_delivery_is_signed_and_audited(
    receiver: tuple[Receiver, str],
    intake: IntakeConsumer,
    decider: Decider,
    store: Store,
    r: redis.Redis,
) -> None:
    """The receiver gets the Decision JSON with a header it checks with the public keys only;
    the attempt is audited."""
    rec, url = receiver
    decision = _decide(intake, decider, r, url)
    assert await _deliver_one(WebhookDeliverer(store, first_delay_s=0.01))
    [(body, headers)] = rec.calls
    assert verify_signature_header(KEYRING.public(), body, headers["X-Hitl-Signature"])
    assert not verify_signature_header(KEYRING.public(), body + b" ", headers["X-Hitl-Signature"])
    assert ("application/json", "hitl-webhooks/1") == (
        headers["Content-Type"],
        headers["User-Agent"],
    )
    assert decision == verify_decision(Decision.model_validate_json(body), store.signer.public())
    assert [("webhook_delivered", {"url": url, "attempts": 1})] == _webhook_audit(r)
    assert (
        "r-1" == [e for e in audit_entries(r) if e["kind"] == "webhook_delivered"][0]["request_id"]
    )
    assert 0 == _unacked(r)
    assert 0 == r.xlen("hitl:webhooks")  # delivered entries leave the outbox


def test_signature_header_format() -> None:
    """``ed25519 kid=...,sig=...``: verifiable with the public keys, not with another key's."""
    header = signature_header(KEYRING, b"{}")
    assert header.startswith(f"ed25519 kid={KEYRING.active},sig=")
    assert verify_signature_header(KEYRING.public(), b"{}", header)
    assert not verify_signature_header(KeyRing.generate().public(), b"{}", header)
    assert not verify_signature_header(KEYRING.public(), b"{}", "sha256=00")


async def test_failure_then_success_is_retried(
    intake: IntakeConsumer, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """5xx and 429 answers are retried with backoff until the receiver accepts."""
    rec = Receiver(500, 429)
    server = await _serve(rec)
    url = str(server.make_url("/hook"))
    try:
        _decide(intake, decider, r, url)
        assert await _deliver_one(WebhookDeliverer(store, attempts=4, first_delay_s=0.01))
    finally:
        await server.close()
    assert 3 == len(rec.calls)
    assert 1 == len({body for body, _h in rec.calls})
    assert [("webhook_delivered", {"url": url, "attempts": 3})] == _webhook_audit(r)
    assert 0 == _unacked(r)


async def test_permanent_failure_is_audited(
    intake: IntakeConsumer, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """After the last attempt the failure is audited with the error, and the entry acknowledged."""
    rec = Receiver(500, 502, 503)
    server = await _serve(rec)
    try:
        _decide(intake, decider, r, str(server.make_url("/hook")))
        assert not await _deliver_one(WebhookDeliverer(store, attempts=3, first_delay_s=0.01))
    finally:
        await server.close()
    assert 3 == len(rec.calls)
    [(kind, details)] = _webhook_audit(r)
    assert ("webhook_failed", 3, "HTTP 503") == (kind, details["attempts"], details["error"])
    assert 0 == _unacked(r)


async def test_client_error_is_not_retried(
    intake: IntakeConsumer, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """A 4xx (other than 408/429) means the receiver refuses this body: one attempt only."""
    rec = Receiver(400)
    server = await _serve(rec)
    try:
        _decide(intake, decider, r, str(server.make_url("/hook")))
        assert not await _deliver_one(WebhookDeliverer(store, attempts=5, first_delay_s=0.01))
    finally:
        await server.close()
    assert 1 == len(rec.calls)
    assert [("webhook_failed", 1, "HTTP 400")] == [
        (k, d["attempts"], d["error"]) for k, d in _webhook_audit(r)
    ]


async def test_unreachable_receiver_is_audited(
    intake: IntakeConsumer, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """A receiver that refuses connections fails with the connection error in the audit."""
    _decide(intake, decider, r, f"http://127.0.0.1:{free_port()}/hook")
    assert not await _deliver_one(WebhookDeliverer(store, attempts=2, first_delay_s=0.01))
    [(kind, details)] = _webhook_audit(r)
    assert ("webhook_failed", 2) == (kind, details["attempts"])
    assert "ClientConnectorError" in details["error"]


async def test_slow_receiver_times_out_and_is_retried(
    intake: IntakeConsumer, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """A receiver slower than the timeout counts as a failed attempt; the retry succeeds."""
    rec = Receiver(delay_s=1.0)
    server = await _serve(rec)
    try:
        _decide(intake, decider, r, str(server.make_url("/hook")))
        deliverer = WebhookDeliverer(store, attempts=3, first_delay_s=0.01, timeout_s=0.2)
        assert await _deliver_one(deliverer)
    finally:
        await server.close()
    assert [("webhook_delivered", 2)] == [(k, d["attempts"]) for k, d in _webhook_audit(r)]


async def test_run_delivers_until_stopped(
    receiver: tuple[Receiver, str],
    intake: IntakeConsumer,
    decider: Decider,
    store: Store,
    r: redis.Redis,
) -> None:
    """The service loop picks decisions off the outbox and delivers each once."""
    rec, url = receiver
    _decide(intake, decider, r, url, "r-1")
    _decide(intake, decider, r, url, "r-2")
    stop = asyncio.Event()
    task = asyncio.create_task(WebhookDeliverer(store, first_delay_s=0.01).run(stop))
    for _ in range(500):
        if len(_webhook_audit(r)) == 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert ["r-1", "r-2"] == sorted(json.loads(body)["request_id"] for body, _h in rec.calls)
    assert 0 == _unacked(r)


def test_unfinished_delivery_is_reclaimed(
    intake: IntakeConsumer, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """An outbox entry read by a deliverer that died is read again by another one."""
    _decide(intake, decider, r, "https://hooks.example.com/x")
    first = WebhookDeliverer(store)
    first.ensure_group()
    assert 1 == len(first.read(block_ms=10))
    assert [] == first.read(block_ms=10)
    second = WebhookDeliverer(store, claim_idle_ms=0)
    assert 1 == len(second.read(block_ms=10))


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with RedisServer(appendonly=True) as server:
        yield server


async def test_deliverer_survives_redis_outage_while_finishing(
    own_redis: RedisServer, settings: Any
) -> None:
    """Redis going away right after a POST does not stop webhook delivery for good."""
    client = redis.Redis(port=own_redis.port, decode_responses=True, retry=Retry(NoBackoff(), 0))
    store = Store(client, signer=settings.signing_keys())
    intake = IntakeConsumer(store, review_everything, block_ms=0)
    intake.ensure_group()
    rec = Receiver()
    rec.on_call = lambda: own_redis.kill() if len(rec.calls) == 1 else None
    server = await _serve(rec)
    stop = asyncio.Event()
    try:
        _decide(intake, Decider(store), client, str(server.make_url("/hook")))
        deliverer = WebhookDeliverer(store, first_delay_s=0.01, claim_idle_ms=100)
        task = asyncio.create_task(deliverer.run(stop))
        for _ in range(500):
            if rec.calls:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(own_redis.start)
        for _ in range(500):
            if len(rec.calls) >= 2 or task.done():
                break
            await asyncio.sleep(0.01)
        assert not task.done()
        assert 2 <= len(rec.calls)
    finally:
        stop.set()
        intake.close()
        await server.close()
        if not task.done():
            await asyncio.wait_for(task, 5)
        elif not task.cancelled():
            task.exception()  # retrieved, so no "exception was never retrieved" warning
        client.close()


async def test_deliverer_started_while_redis_is_down_delivers_once_it_is_back(
    own_redis: RedisServer, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis unreachable when the deliverer starts: it waits for Redis instead of ending."""
    caplog.set_level(logging.WARNING, logger="hitl.streams")
    client = redis.Redis(port=own_redis.port, decode_responses=True, retry=Retry(NoBackoff(), 0))
    store = Store(client, signer=settings.signing_keys())
    intake = IntakeConsumer(store, review_everything, block_ms=0)
    intake.ensure_group()
    rec = Receiver()
    server = await _serve(rec)
    stop = asyncio.Event()
    _decide(intake, Decider(store), client, str(server.make_url("/hook")))
    own_redis.kill()
    task = asyncio.create_task(WebhookDeliverer(store, first_delay_s=0.01).run(stop))
    try:
        for _ in range(500):  # the positive signal: it has tried and said Redis is down
            if "hitl:webhooks" in caplog.text or task.done():
                break
            await asyncio.sleep(0.01)
        assert not task.done()
        await asyncio.to_thread(own_redis.start)
        for _ in range(1000):
            if rec.calls:
                break
            await asyncio.sleep(0.01)
        assert 1 == len(rec.calls)
    finally:
        stop.set()
        intake.close()
        await server.close()
        await asyncio.wait_for(task, 5)
        client.close()
