"""Key names of the wire protocol under a configurable prefix."""

from __future__ import annotations

from hitl.queue.keys import Keys


def test_default_prefix_matches_the_wire_protocol() -> None:
    """The default keys are the ones the README documents for raw clients."""
    k = Keys()
    assert [
        "hitl:requests",
        "hitl:dead",
        "hitl:pending",
        "hitl:decisions",
        "hitl:audit",
        "hitl:audit:head",
        "hitl:webhooks",
        "hitl:events",
        "hitl:req:r-1",
        "hitl:decision:r-1",
    ] == [
        k.requests,
        k.dead,
        k.pending,
        k.decisions,
        k.audit,
        k.audit_head,
        k.webhooks,
        k.events,
        k.req("r-1"),
        k.decision("r-1"),
    ]


def test_custom_prefix_applies_everywhere() -> None:
    """Every key lives under a custom prefix (two deployments can share one Redis)."""
    k = Keys("acme:hitl:")
    names = [k.requests, k.dead, k.pending, k.decisions, k.audit, k.audit_head, k.webhooks]
    assert all(n.startswith("acme:hitl:") for n in [*names, k.req("x"), k.decision("x")])
    assert "acme:hitl:req:r1" == k.req("r1")
