"""Semantic Kernel: a function-invocation filter that asks hitl before a risky kernel function.

The article's ``HumanInTheLoopFilter``: register :class:`HitlFilter` on the kernel and give the
kernel functions that need a human a risk level, in the filter (``risks={"billing-refund":
"high"}``, by fully qualified name) or on the function
(``@kernel_function`` + ``metadata.additional_properties["risk"]``). Every invocation of such a
function -- by your code or by the model's automatic function calling, both pass through
function-invocation filters -- becomes an approval request with the function's arguments:
approved, it runs with the params a reviewer approved (modified ones included); otherwise it
does not run and its result is ``not run: rejected by <who>: <reason>``::

    kernel.add_filter("function_invocation", HitlFilter(client, risks={"billing-refund": "high"}))

Install with ``pip install 'hitl-bot[semantic-kernel]'`` (heavy: see docs/integrations.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from semantic_kernel.filters import FunctionInvocationContext
from semantic_kernel.functions import FunctionResult

from hitl.client import AsyncClient
from hitl.errors import AgentHalted
from hitl.integrations._common import refusal_text

__all__ = ["HitlFilter"]

Next = Callable[[FunctionInvocationContext], Awaitable[None]]


class HitlFilter:
    """A ``function_invocation`` filter; see the module docstring."""

    def __init__(
        self,
        client: AsyncClient,
        risks: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> None:
        self.client = client
        self.risks = dict(risks or {})
        self.timeout = timeout
        self.fields = fields

    def risk_of(self, context: FunctionInvocationContext) -> str | None:
        """The function's risk level: the filter's mapping first, then its metadata."""
        metadata = context.function.metadata
        named = self.risks.get(metadata.fully_qualified_name)
        if named is not None:
            return named
        risk = (metadata.additional_properties or {}).get("risk")
        return str(risk) if risk is not None else None

    def _answer(self, context: FunctionInvocationContext, text: str) -> None:
        context.result = FunctionResult(function=context.function.metadata, value=text)

    async def __call__(self, context: FunctionInvocationContext, next: Next) -> None:  # noqa: A002 - SK's name
        risk = self.risk_of(context)
        if risk is None:
            await next(context)
            return
        try:
            await self.client.check_controls()
        except AgentHalted as exc:
            self._answer(context, f"not run: {exc}")
            return
        params = {k: v for k, v in context.arguments.items() if k != "kernel"}
        decision = await self.client.request_approval(
            context.function.metadata.fully_qualified_name,
            params,
            timeout=self.timeout,
            risk=risk,
            **self.fields,
        )
        if not decision.approved:
            self._answer(context, f"not run: {refusal_text(decision)}")
            return
        for key in params:
            if key not in decision.params:
                del context.arguments[key]
        for key, value in decision.params.items():
            context.arguments[key] = value
        await next(context)
