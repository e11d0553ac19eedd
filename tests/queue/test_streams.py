"""GroupReader and follow: one consumer-group reader for every stream hitl reads."""

from __future__ import annotations

import asyncio

import redis

from hitl.queue.streams import Entry, GroupReader, follow

STREAM = "hitl:test-stream"


def reader(r: redis.Redis, consumer: str = "one", **kw: object) -> GroupReader:
    out = GroupReader(r, STREAM, "g", consumer=consumer, **kw)  # type: ignore[arg-type]
    out.ensure_group()
    return out


def test_reads_new_entries_once(r: redis.Redis) -> None:
    """Entries added after the group exists are read once, as text, in order."""
    first = reader(r)
    r.xadd(STREAM, {"a": "1"})
    r.xadd(STREAM, {"a": "2"})
    got = first.read()
    assert [{"a": "1"}, {"a": "2"}] == [e.fields for e in got]
    assert [] == first.read()
    first.ensure_group()  # a second call is harmless


def test_start_0_reads_what_was_queued_before_the_group(r: redis.Redis) -> None:
    """An outbox group (start "0") reads entries older than itself; a feed ("$") does not."""
    r.xadd(STREAM, {"a": "old"})
    feed = GroupReader(r, STREAM, "feed", start="$")
    outbox = GroupReader(r, STREAM, "outbox", start="0")
    for group in (feed, outbox):
        group.ensure_group()
    assert [] == feed.read()
    assert ["old"] == [e.fields["a"] for e in outbox.read()]


def test_unacknowledged_entries_are_claimed_by_another_consumer(r: redis.Redis) -> None:
    """A consumer that read and died: its entries go to another one once idle."""
    dead = reader(r, "dead")
    r.xadd(STREAM, {"a": "1"})
    assert 1 == len(dead.read())
    alive = reader(r, "alive", claim_idle_ms=0, claim_every_s=0)
    claimed = alive.read()
    assert ["1"] == [e.fields["a"] for e in claimed]
    alive.ack([e.id for e in claimed])
    assert [] == alive.read()


def test_entries_trimmed_while_pending_are_acknowledged(r: redis.Redis) -> None:
    """An entry deleted from the stream while pending is dropped from the group, not returned."""
    dead = reader(r, "dead")
    entry_id = r.xadd(STREAM, {"a": "1"})
    dead.read()
    r.xdel(STREAM, entry_id)
    alive = reader(r, "alive", claim_idle_ms=0, claim_every_s=0)
    assert [] == alive.claim()
    assert 0 == r.xpending(STREAM, "g")["pending"]


async def test_follow_acknowledges_handled_batches_and_survives_a_failing_one(
    r: redis.Redis,
) -> None:
    """A batch whose handler fails stays pending and is handled again; handled ones are acked."""
    got: list[str] = []
    failed: list[str] = []
    stop = asyncio.Event()

    async def handle(batch: list[Entry]) -> None:
        value = batch[0].fields["a"]
        if value == "bad" and not failed:
            failed.append(value)
            raise RuntimeError("handler bug")
        got.extend(e.fields["a"] for e in batch)
        if "bad" in got:
            stop.set()

    follower = reader(r, "f", claim_idle_ms=0, claim_every_s=0)
    r.xadd(STREAM, {"a": "bad"})
    task = asyncio.create_task(follow(follower, handle, stop, block_ms=50, retry_s=0.01))
    await asyncio.wait_for(task, 10)
    assert ["bad"] == failed and ["bad"] == got
    assert 0 == r.xpending(STREAM, "g")["pending"]
