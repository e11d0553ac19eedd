"""Key names of the wire protocol under a configurable prefix."""

from __future__ import annotations

import zlib

from hitl.queue.keys import Keys


def test_default_prefix_matches_the_wire_protocol() -> None:
    """The default keys are the ones the README documents for raw clients."""
    k = Keys()
    assert [
        "hitl:requests",
        "hitl:dead",
        "hitl:pending",
        "hitl:decisions",
        "hitl:audit:{0}",
        "hitl:audit:{15}:head",
        "hitl:webhooks",
        "hitl:events",
        "hitl:req:r-1",
        "hitl:decision:r-1",
    ] == [
        k.requests,
        k.dead,
        k.pending,
        k.decisions,
        k.audit(0),
        k.audit_head(15),
        k.webhooks,
        k.events,
        k.req("r-1"),
        k.decision("r-1"),
    ]


def test_custom_prefix_applies_everywhere() -> None:
    """Every key lives under a custom prefix (two deployments can share one Redis)."""
    k = Keys("acme:hitl:")
    names = [k.requests, k.dead, k.pending, k.decisions, k.audit(3), k.audit_head(3), k.webhooks]
    assert all(n.startswith("acme:hitl:") for n in [*names, k.req("x"), k.decision("x")])
    assert "acme:hitl:req:r1" == k.req("r1")


def test_audit_chains_are_sharded_by_request_id() -> None:
    """A request's entries always go to the same one of 16 chains (CRC-32 of its id); entries
    about no request go to chain 0; the chains spread over every shard."""
    k = Keys()
    assert 16 == len(k.audit_chains)
    assert (0, 0) == (k.chain_of(None), k.chain_of(""))
    assert k.chain_of("r-42") == k.chain_of("r-42") == zlib.crc32(b"r-42") % 16
    assert set(range(16)) == {k.chain_of(f"r-{i}") for i in range(200)}


def test_bookkeeping_keys_live_under_the_prefix_too() -> None:
    """Review latency, sent-once markers, digests and pacing are named in Keys as well."""
    k = Keys("acme:")
    assert [
        "acme:seen:r-1",
        "acme:notified:esc:r-1:1",
        "acme:digest:q:#ops",
        "acme:pace:#ops:42",
    ] == [k.seen("r-1"), k.notified("esc:r-1:1"), k.digest("q:#ops"), k.pace("#ops", 42)]
