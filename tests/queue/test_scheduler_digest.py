"""Digests and burst folding: which requests are folded, one digest per destination, locking."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from hitl.config import Settings
from hitl.errors import NotFound
from hitl.models import (
    ApprovalRequest,
    Destination,
    RequestRecord,
    Risk,
    State,
    Verdict,
    VerdictKind,
)
from hitl.queue.audit import AuditEvent
from hitl.queue.digest import Digest, Digests
from hitl.queue.scheduler import ManualClock, Notification, SchedulerConfig, StreamSink
from hitl.queue.store import Change, Store

T0 = 1_900_000_040.0  # 20 s into a 60 s pace window
OPS = Destination(kind="channel", target="#ops")
CONFIG = SchedulerConfig(pace=3, pace_window_s=60, digest_wait_s=300)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(r: redis.Redis, settings: Settings, clock: ManualClock) -> Store:
    return Store(r, signer=settings.signing_keys(), clock=clock)


@pytest.fixture
def sink(store: Store) -> StreamSink:
    return StreamSink(store)


@pytest.fixture
def digests(store: Store, sink: StreamSink) -> Digests:
    return Digests(store, sink, CONFIG)


def _record(
    store: Store,
    rid: str,
    *,
    risk: Risk = Risk.LOW,
    digest: bool = False,
    dest: Destination | None = OPS,
    save: bool = True,
) -> RequestRecord:
    req = ApprovalRequest(id=rid, action="refund", summary=f"Refund {rid}", requested_by="al")
    record = RequestRecord(
        request=req,
        verdict=Verdict(
            kind=VerdictKind.REVIEW, risk=risk, digest=digest, destination=dest, policy_version="v"
        ),
        created_at=store.clock(),
        params=req.params,
    )
    if save:
        store.update(
            rid, lambda _c: Change(record=record, events=[AuditEvent("submitted", rid, "a")])
        )
    return record


def _digests_sent(sink: StreamSink) -> list[Notification]:
    return [n for _, n in sink.read() if n.kind == "digest"]


def test_digest_eligible_requests_get_no_card(
    store: Store, digests: Digests, sink: StreamSink, clock: ManualClock
) -> None:
    """They wait for the digest; it goes out digest_wait_s after the first one arrived."""
    records = [_record(store, f"d{i}", digest=True) for i in range(5)]
    assert [] == digests.fold(records)
    assert [f"d{i}" for i in range(5)] == digests.waiting("channel:#ops")
    assert [] == digests.post_due()
    clock.advance(300)
    (digest,) = digests.post_due()
    assert [f"d{i}" for i in range(5)] == digest.request_ids
    assert [] == digests.waiting("channel:#ops")
    (note,) = _digests_sent(sink)
    assert (digest.id, OPS, False) == (note.digest_id, note.target, note.thread)
    assert digest == Digest.model_validate(note.data["digest"])
    assert "Approve all 5" in note.text
    assert digest == digests.get(digest.id)
    assert digest.id == digests.digest_of("d3")
    assert [] == digests.post_due()


def test_burst_beyond_the_pace_is_folded(
    store: Store, digests: Digests, sink: StreamSink, clock: ManualClock
) -> None:
    """3 cards a minute: the 4th and later low/medium ones wait; high/critical always post."""
    burst = [_record(store, f"b{i}", risk=Risk.MEDIUM) for i in range(6)]
    urgent = [_record(store, "hi", risk=Risk.HIGH), _record(store, "crit", risk=Risk.CRITICAL)]
    cards = digests.fold([*burst[:4], urgent[0], *burst[4:], urgent[1]])
    assert ["b0", "b1", "b2", "hi", "crit"] == [r.id for r in cards]
    assert ["b3", "b4", "b5"] == digests.waiting("channel:#ops")
    clock.advance(39)  # the end of the pace window
    assert [] == digests.post_due()
    clock.advance(1)
    (digest,) = digests.post_due()
    assert ["b3", "b4", "b5"] == digest.request_ids
    clock.advance(60)  # a new window: cards again
    assert ["n0"] == [r.id for r in digests.fold([_record(store, "n0")])]


def test_destinations_are_paced_and_digested_separately(store: Store, digests: Digests) -> None:
    """Each destination has its own pace and its own digest."""
    a = [_record(store, f"a{i}", dest=OPS) for i in range(4)]
    b = [_record(store, f"b{i}", dest=Destination(kind="channel", target="#fin")) for i in range(4)]
    cards = digests.fold(a + b)
    assert ["a0", "a1", "a2", "b0", "b1", "b2"] == [r.id for r in cards]
    posted = {d.dest: d.request_ids for d in digests.post_due(T0 + 60)}
    assert {"channel:#ops": ["a3"], "channel:#fin": ["b3"]} == posted


def test_decided_requests_drop_out_of_the_digest(
    store: Store, digests: Digests, clock: ManualClock
) -> None:
    """A request decided before its digest is not listed; none left means no digest at all."""
    records = [_record(store, f"d{i}", digest=True) for i in range(3)]
    digests.fold(records)
    for rid in ("d0", "d1"):
        done = store.get(rid).model_copy(update={"state": State.CANCELLED})
        store.update(rid, lambda _c, done=done: Change(record=done))
    clock.advance(300)
    (digest,) = digests.post_due()
    assert ["d2"] == digest.request_ids
    digests.fold([_record(store, "late", digest=True)])
    store.update("late", lambda c: Change(record=c.model_copy(update={"state": State.EXPIRED})))
    clock.advance(300)
    assert [] == digests.post_due()
    assert [] == digests.waiting("channel:#ops")


def test_terminal_records_pass_through(store: Store, digests: Digests) -> None:
    """Auto-decided records are returned as they are (no pace spent, never folded)."""
    done = _record(store, "auto", digest=True).model_copy(update={"state": State.APPROVED})
    assert [done] == digests.fold([done])


def test_big_digests_are_split(store: Store, sink: StreamSink, clock: ManualClock) -> None:
    """No digest lists more than digest_max_items; the rest go out in the next one."""
    digests = Digests(store, sink, SchedulerConfig(digest_max_items=4, digest_wait_s=0))
    digests.fold([_record(store, f"d{i}", digest=True) for i in range(6)])
    first, second = digests.post_due(), digests.post_due()
    assert [4, 2] == [len(first[0].items), len(second[0].items)]


def test_concurrent_posters_post_one_digest(
    store: Store, sink: StreamSink, clock: ManualClock, r: redis.Redis
) -> None:
    """Eight threads posting the same destination at once produce exactly one digest."""
    digests = Digests(store, sink, CONFIG)
    digests.fold([_record(store, f"d{i}", digest=True) for i in range(25)])
    clock.advance(300)
    start = threading.Barrier(8)
    results: list[Any] = []

    def post() -> None:
        start.wait()
        results.append(Digests(store, sink, CONFIG).post_due())

    threads = [threading.Thread(target=post) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    posted = [d for batch in results for d in batch]
    assert 1 == len(posted) and 25 == len(posted[0].items)
    assert 1 == len(_digests_sent(sink))


def test_a_digest_recorded_but_not_sent_is_sent_next_time(
    store: Store, sink: StreamSink, clock: ManualClock
) -> None:
    """If the poster dies between recording the digest and the sink, the next run sends it."""

    class DeadSink:
        def send(self, notification: Notification) -> bool:
            raise RuntimeError("worker killed")

    digests = Digests(store, DeadSink(), CONFIG)
    digests.fold([_record(store, "d0", digest=True)])
    clock.advance(300)
    with pytest.raises(RuntimeError):
        digests.post_due()
    assert [] == _digests_sent(sink)
    assert [] == Digests(store, sink, CONFIG).post_due()  # nothing new to post ...
    (sent,) = _digests_sent(sink)  # ... but the recorded one went out, once
    assert ["d0"] == Digest.model_validate(sent.data["digest"]).request_ids


def test_unknown_digest(digests: Digests) -> None:
    """get() of an unknown digest says so."""
    with pytest.raises(NotFound, match="no digest"):
        digests.get("dg-nope")
