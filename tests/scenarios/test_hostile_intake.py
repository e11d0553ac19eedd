"""Hostile input on the stream, all at once, through the service's running intake threads.

Every entry below arrives in one burst, interleaved with valid requests. Whatever it is, the
intake keeps running, every entry is accounted for (stored or dead-lettered, none left pending),
the valid neighbours are stored promptly, and everything stored reads back.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from hitl.cli import main
from hitl.models import MAX_DEPTH
from hitl.service import Service
from tests.redis_server import RedisServer
from tests.scenarios.helpers import wait_until


def _deep_params(depth: int) -> bytes:
    return ('{"action": "x", "params": ' + '{"a": ' * (depth - 1) + "{}" + "}" * depth).encode()


HOSTILE: list[tuple[str, dict[bytes, bytes], str]] = [
    # (case, the entry's fields, words its dead letter's reason must contain)
    ("700 brackets", {b"request": b"[" * 700}, f"nests deeper than {MAX_DEPTH} levels"),
    ("params 256 deep", {b"request": _deep_params(256)}, f"nests deeper than {MAX_DEPTH}"),
    ("params 210 deep", {b"request": _deep_params(210)}, f"nests deeper than {MAX_DEPTH}"),
    (
        "10 MB string",
        {b"request": b'{"action": "x", "summary": "' + b"s" * (10 * 1024 * 1024) + b'"}'},
        "the limit is 262144 bytes",
    ),
    ("invalid UTF-8", {b"request": b'{"action": "x", "summary": "\xff\xfe"}'}, "not UTF-8"),
    ("1e999", {b"request": b'{"action": "x", "params": {"a": 1e999}}'}, "not a finite number"),
    (
        "huge int",
        {b"request": b'{"action": "x", "params": {"n": 123456789012345678901234567890}}'},
        "send large integers as strings",
    ),
    ("not an object", {b"request": b"[1, 2, 3]"}, "must be a JSON object, got list"),
    ("no known field", {b"hello": b"world"}, "entry has no 'request' field"),
    ("deep cancel", {b"cancel": b"[" * 700}, "cancel must be JSON"),
]


async def test_hostile_burst_stops_nothing(
    env: None,
    service: Service,
    redis_server: RedisServer,
    r: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every hostile entry is dead-lettered with its reason, every valid neighbour is stored
    within a second, the intake thread lives on, nothing stays pending, and all reads back."""
    raw = redis_server.client(decode=False)
    service.start_intake()
    valid: list[str] = []
    expected: dict[str, str] = {}
    for i, (case, fields, reason) in enumerate(HOSTILE):
        rid = f"ok-{i}"
        raw.xadd("hitl:requests", {b"request": json.dumps({"id": rid, "action": "x"}).encode()})
        valid.append(rid)
        expected[raw.xadd("hitl:requests", fields).decode()] = f"{case}: {reason}"
    rid = f"ok-{len(HOSTILE)}"
    raw.xadd("hitl:requests", {b"request": json.dumps({"id": rid, "action": "x"}).encode()})
    valid.append(rid)
    raw.close()
    sent_at = time.monotonic()

    def all_stored() -> bool:
        return sorted(valid) == sorted(service.store.pending_ids(limit=100))

    await asyncio.to_thread(wait_until, all_stored, 10.0, "the valid neighbours")
    stored_after = time.monotonic() - sent_at
    await asyncio.to_thread(
        wait_until, lambda: r.xlen("hitl:dead") == len(HOSTILE), 10.0, "every dead letter"
    )

    dead = {f["stream_id"]: f["reason"] for _id, f in r.xrange("hitl:dead")}
    assert sorted(expected) == sorted(dead)
    for stream_id, said in expected.items():
        case, words = said.split(": ", 1)
        assert words in dead[stream_id], (case, dead[stream_id])
    assert stored_after < 1.0, f"valid neighbours took {stored_after:.2f}s"
    assert 0 == r.xpending("hitl:requests", "hitl-intake")["pending"]
    assert 0 == r.xlen("hitl:requests")
    assert service.intake_alive()
    async with TestClient(TestServer(service.app)) as http:
        body = await (await http.get("/healthz")).json()
    assert ("ok", len(valid), len(HOSTILE)) == (
        body["status"],
        body["intake"][0]["stored"],
        body["intake"][0]["dead"],
    )
    assert sorted(valid) == sorted(rec.id for rec in service.store.pending(limit=100))
    capsys.readouterr()
    assert 0 == await asyncio.to_thread(main, ["pending", "--all", "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert (len(valid), sorted(valid)) == (
        listed["total"],
        sorted(item["request"]["id"] for item in listed["requests"]),
    )
