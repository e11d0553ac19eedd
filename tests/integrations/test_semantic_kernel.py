"""Semantic Kernel: HitlFilter asks hitl before a kernel function with a risk level runs
(decided through hitl's API). Heavy: runs with `make test-heavy` (its own virtualenv)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip(
    "semantic_kernel", reason="heavy extra, not in `make test`: run `make test-heavy`"
)

from examples.semantic_kernel_refund import build_kernel  # noqa: E402
from hitl.client import AsyncClient  # noqa: E402
from tests.reviewers import Reviewers  # noqa: E402


@pytest.mark.parametrize(
    ("how", "ran", "said"),
    [
        ("approve", [{"order": "A-1", "amount": 120.0}], "refunded 120.0 on A-1"),
        ("modify", [{"order": "A-1", "amount": 50.0}], "refunded 50.0 on A-1"),
        ("reject", [], "not run: rejected by Bob Brown: no refunds today"),
    ],
)
async def test_filter_runs_the_function_only_as_decided(
    agent_vars: None, reviewers: Reviewers, how: str, ran: list[Any], said: str
) -> None:
    """Approved: ran as asked; modified: with the reviewer's params; rejected: did not run."""
    calls: list[dict[str, Any]] = []

    def decide() -> None:
        rid = reviewers.next_pending("billing-refund")
        if how == "approve":
            reviewers.approve(rid)
        elif how == "modify":
            reviewers.modify(rid, {"order": "A-1", "amount": 50.0})
        else:
            reviewers.reject(rid, "no refunds today")

    async with AsyncClient(agent_id="sk-agent") as client:
        kernel = build_kernel(client, calls.append)
        deciding = asyncio.create_task(asyncio.to_thread(decide))
        result = await kernel.invoke(
            function_name="refund", plugin_name="billing", order="A-1", amount=120.0
        )
        await deciding
    assert (said, ran) == (str(result), calls)


async def test_a_function_without_a_risk_level_runs_at_once(
    agent_vars: None, reviewers: Reviewers
) -> None:
    """lookup has no risk level: no request, it just runs."""
    async with AsyncClient(agent_id="sk-agent") as client:
        kernel = build_kernel(client, lambda _: None)
        result = await kernel.invoke(function_name="lookup", plugin_name="billing", order="A-1")
    assert "order A-1: delivered" == str(result)
    store = reviewers.store  # a request is on the stream or pending, never in between
    assert (0, 0) == (store.redis.xlen(store.keys.requests), store.pending_count())
