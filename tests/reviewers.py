"""Reviewers who decide through the service's HTTP API, as `hitl approve/reject/modify` do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hitl.queue.store import Store
from tests.api_server import ApiServer
from tests.scenarios.helpers import wait_until

__all__ = ["Reviewers"]


@dataclass
class Reviewers:
    """Decide requests as bob (shipped policy directory) through POST /api/v1/requests/..."""

    api: ApiServer
    store: Store

    def next_pending(self, action: str | None = None) -> str:
        """The id of the first pending request (of ``action``), once the intake stored it."""

        def first() -> str | None:
            for record in self.store.pending():
                if action is None or record.request.action == action:
                    return record.id
            return None

        return wait_until(first, timeout=30, what=f"a pending {action or 'request'}")

    def decide(self, request_id: str, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer, _ = self.api.call(
            "POST", f"/requests/{request_id}/{verb}", self.api.token("bob"), body
        )
        assert 200 == status, answer
        return dict(answer)

    def approve(self, request_id: str) -> dict[str, Any]:
        return self.decide(request_id, "approve", {"reason": "fine"})

    def modify(self, request_id: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.decide(request_id, "modify", {"params": params, "reason": "adjusted"})

    def reject(self, request_id: str, reason: str) -> dict[str, Any]:
        return self.decide(request_id, "reject", {"reason": reason})
