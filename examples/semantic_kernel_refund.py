"""Semantic Kernel + hitl: a billing plugin whose refund function (risk: high) asks a reviewer
through a function-invocation filter; lookups run at once.

    pip install 'hitl-bot[semantic-kernel]'
    export HITL_REDIS_URL=... HITL_PUBLIC_KEY=...          # the agent's environment
    python examples/semantic_kernel_refund.py             # waits for a reviewer:
    hitl pending; hitl approve ID --param amount=50         # (in another terminal)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from semantic_kernel import Kernel
from semantic_kernel.functions import kernel_function

from hitl.client import AsyncClient
from hitl.integrations.semantic_kernel import HitlFilter


class Billing:
    """A plugin; ``ran`` receives each refund that actually happened."""

    def __init__(self, ran: Callable[[dict[str, Any]], None]) -> None:
        self.ran = ran

    @kernel_function(name="refund", description="Refund an order")
    def refund(self, order: str, amount: float) -> str:
        self.ran({"order": order, "amount": amount})
        return f"refunded {amount} on {order}"

    @kernel_function(name="lookup", description="Look an order up (read-only)")
    def lookup(self, order: str) -> str:
        return f"order {order}: delivered"


def build_kernel(client: AsyncClient, ran: Callable[[dict[str, Any]], None]) -> Kernel:
    kernel = Kernel()
    kernel.add_plugin(Billing(ran), "billing")
    hitl_filter = HitlFilter(client, risks={"billing-refund": "high"}, timeout=600)
    kernel.add_filter("function_invocation", hitl_filter)
    return kernel


async def main() -> None:
    async with AsyncClient(agent_id="sk-example") as client:
        kernel = build_kernel(client, print)
        answer = await kernel.invoke(
            function_name="refund", plugin_name="billing", order="A-1", amount=120.0
        )
    print(answer)


if __name__ == "__main__":
    asyncio.run(main())
