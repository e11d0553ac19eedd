"""Slack channel benchmarks: a signed click to the agent unblocked, and intake to card posted.

Run with ``make bench`` (or ``python -m bench.bench_slack``). Prints medians and p95; nothing here
asserts a time. Redis is a redis-server on a free port, the Slack Web API is the tests' mock server
(``tests/bot/slack_server.py``) in its own process answering at once, the agent waits in its own
process with ``Client.wait`` (CLOCK_MONOTONIC is system-wide, so timestamps compare), and the
hitl service (aiohttp + Bolt + intake thread) runs here, exactly as ``hitl serve`` wires it.

1. click: ``POST /slack/events`` with a signed Approve ``block_actions`` payload -> Bolt acks ->
   the handler decides -> the agent blocked in ``wait()`` returns. Also the HTTP ack time.
2. cards: N requests already on ``hitl:requests`` for 500 channels -> the intake stores them ->
   every card is posted (``chat.postMessage``) and recorded (``Store.add_card``); requests/s.
   Slack's pacing (1 message/s per channel after a burst of 3) stays on; the scheduler's burst
   folding (``HITL_CHANNEL_PACE``) is off, so that every request gets a card of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
import urllib.parse
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from hitl.bot.dispatch import DispatchSettings
from hitl.bot.slack import SlackChannel, SlackSettings, mount_slack
from hitl.client import Client
from hitl.config import Settings
from hitl.handlers import OpenAuthority
from hitl.keys import KeyRing, PublicKeys
from hitl.models import ApprovalRequest, Destination, Risk, Verdict, VerdictKind
from hitl.queue.store import Store
from hitl.service import Service
from tests.bot.slack_server import MockSlack
from tests.redis_server import RedisServer, free_port

KEYRING = KeyRing.generate()
SIGNING = "bench-signing-secret"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- processes ---------------------------------------------------------------------------------


def _slack(port: int, ready: Any) -> None:
    """The mock Slack Web API, answering at once (no Block Kit checks: that is the tests' job)."""

    async def serve() -> None:
        server = await MockSlack(port, check=False).start()
        ready.set()
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()

    asyncio.run(serve())


def _agent(url: str, public: str, ids: Connection, times: Connection) -> None:
    """The agent in its own process, holding only the public key."""
    client = Client(settings=Settings(redis_url=url, public_keys=PublicKeys.parse(public)))
    while True:
        rid = ids.recv()
        if rid is None:
            break
        client.wait(rid, timeout=10)
        times.send(time.monotonic())
    client.close()


# -- the service -------------------------------------------------------------------------------


def _spread(request: ApprovalRequest) -> Verdict:
    """Every request needs one person; its card goes to the channel named in its context."""
    channel = str(request.context.get("channel") or "#approvals")
    return Verdict(
        kind=VerdictKind.REVIEW,
        risk=Risk.MEDIUM,
        rule="bench",
        reason="benchmark",
        destination=Destination(kind="channel", target=channel),
    )


async def _start(
    server: RedisServer, slack_url: str, **overrides: Any
) -> tuple[Service, SlackChannel, web.AppRunner, str]:
    r = server.client()
    r.flushall()
    settings = Settings(
        redis_url=server.url, keyring=KEYRING, data_dir=Path(tempfile.mkdtemp(prefix="hitl-bench-"))
    )
    store = Store(r, signer=settings.signing_keys())
    dispatch = DispatchSettings(sweep_s=0.0, sweep_min_age_s=3600.0)
    service = Service(settings, store=store, authority=OpenAuthority(_spread), dispatch=dispatch)
    for consumer in service.consumers:
        consumer.ensure_group()
    values: dict[str, Any] = {
        "bot_token": "xoxb-bench",
        "signing_secret": SIGNING,
        "api_url": slack_url,
        "default_channel": "#approvals",
    }
    values.update(overrides)
    channel = mount_slack(service, SlackSettings(**values))
    assert channel is not None
    runner = web.AppRunner(service.app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return service, channel, runner, f"http://127.0.0.1:{port}/slack/events"


async def _stop(service: Service, runner: web.AppRunner) -> None:
    service.stop_intake()
    await runner.cleanup()
    for consumer in service.consumers:
        consumer.close()


def _request(i: int, channels: int) -> str:
    return json.dumps(
        {
            "id": f"s-{uuid.uuid4().hex}",
            "action": "refund",
            "params": {"order_id": f"A-{i}", "amount": 25.0 + i % 400},
            "summary": f"Refund order A-{i}",
            "reasoning": "Customer reports the parcel arrived damaged; photo attached.",
            "context": {"user_request": "my parcel is broken", "channel": f"#c{i % channels}"},
            "agent_id": "support-bot",
            "requested_by": "U0CUSTOMER",
            "confidence": 0.8,
        }
    )


async def _wait(predicate: Any, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step did not finish")
        await asyncio.sleep(0.002)


# -- 1. click -> agent unblocked ----------------------------------------------------------------


def _click(request_id: str, n: int) -> tuple[str, dict[str, str]]:
    payload = {
        "type": "block_actions",
        "user": {"id": "U0BOB", "username": "bob", "name": "bob", "team_id": "T0"},
        "api_app_id": "A0",
        "container": {"type": "message", "message_ts": "1.1", "channel_id": "CAPPROVALS"},
        "trigger_id": f"{n}.1.t",
        "team": {"id": "T0", "domain": "bench"},
        "channel": {"id": "CAPPROVALS", "name": "approvals"},
        "message": {"ts": "1.1"},
        "response_url": "http://127.0.0.1:9/unused",
        "actions": [
            {
                "action_id": "hitl_approve",
                "value": request_id,
                "type": "button",
                "block_id": "hitl_actions",
                "action_ts": "1.1",
            }
        ],  # fmt: skip
    }
    body = "payload=" + urllib.parse.quote(json.dumps(payload))
    stamp = str(int(time.time()))
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": SignatureVerifier(SIGNING).generate_signature(
            timestamp=stamp, body=body
        ),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    return body, headers


async def bench_clicks(server: RedisServer, slack_url: str, n: int) -> None:
    service, channel, runner, url = await _start(server, slack_url, pace_interval_s=0.0)
    store = service.store
    pipe = store.redis.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(store.keys.requests, {"request": _request(i, 1)})
    pipe.execute()
    await asyncio.to_thread(service.consumers[0].run_once, 0)
    while await asyncio.to_thread(service.consumers[0].run_once, 0):
        pass
    ids = store.pending_ids(0, 0)
    await _wait(lambda: service.dispatcher.stats["slack"].posted >= len(ids), 60)
    ctx = mp.get_context("spawn")
    ids_send, ids_recv = ctx.Pipe()
    times_recv, times_send = ctx.Pipe(duplex=False)
    agent = ctx.Process(
        target=_agent, args=(server.url, KEYRING.public().to_env(), ids_recv, times_send)
    )
    agent.start()
    loop = asyncio.get_running_loop()
    decided: list[float] = []
    acked: list[float] = []
    async with aiohttp.ClientSession() as http:
        for i, rid in enumerate(ids):
            ids_send.send(rid)
            await asyncio.sleep(0.003)  # the agent reaches BLPOP
            body, headers = _click(rid, i)
            t0 = time.monotonic()
            async with http.post(url, data=body.encode(), headers=headers) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            acked.append(time.monotonic() - t0)
            done = await loop.run_in_executor(None, times_recv.recv)
            decided.append(done - t0)
    ids_send.send(None)
    agent.join(10)
    await _wait(lambda: service.dispatcher.stats["slack"].updated >= len(ids), 30)
    await _stop(service, runner)
    print(
        f"signed click -> decision stored -> agent unblocked: p50 {pct(decided, 0.5) * 1e3:.2f} ms,"
        f" p95 {pct(decided, 0.95) * 1e3:.2f} ms (n={len(decided)})  [target p95 <= 25 ms]"
    )
    print(
        f"  HTTP ack of the click: p50 {pct(acked, 0.5) * 1e3:.2f} ms, "
        f"p95 {pct(acked, 0.95) * 1e3:.2f} ms (Slack's limit: 3,000 ms)"
    )


# -- 2. intake -> card posted ------------------------------------------------------------------


async def bench_cards(server: RedisServer, slack_url: str, n: int, channels: int) -> float:
    service, channel, runner, _ = await _start(server, slack_url)
    store = service.store
    pipe = store.redis.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(store.keys.requests, {"request": _request(i, channels)})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    t0 = time.monotonic()
    service.start_intake()
    await _wait(lambda: service.dispatcher.stats["slack"].posted >= n, 120)
    elapsed = time.monotonic() - t0
    await _stop(service, runner)
    return n / elapsed


async def run(args: argparse.Namespace) -> None:
    os.environ["HITL_CHANNEL_PACE"] = "0/60"  # every request its own card (see the docstring)
    port = free_port()
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    slack = ctx.Process(target=_slack, args=(port, ready), daemon=True)
    slack.start()
    if not ready.wait(30):
        raise RuntimeError("the mock Slack server did not start")
    slack_url = f"http://127.0.0.1:{port}/api/"
    try:
        with RedisServer() as server:
            print(f"hitl slack bench: redis on :{server.port}, mock Slack on :{port}")
            await bench_clicks(server, slack_url, args.clicks)
            for n in args.cards:
                rates = [
                    await bench_cards(server, slack_url, n, args.channels) for _ in range(args.runs)
                ]
                runs = ", ".join(f"{x:,.0f}" for x in rates)
                print(
                    f"intake -> card posted ({n} requests over {args.channels} channels, pacing "
                    f"on): {statistics.median(rates):,.0f} req/s median (runs {runs})  "
                    "[target >= 300/s]"
                )
    finally:
        slack.terminate()
        slack.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clicks", type=int, default=300)
    parser.add_argument("--cards", type=int, nargs="+", default=[1500, 5000])
    parser.add_argument("--channels", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
