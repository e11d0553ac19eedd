"""What every framework test needs: an agent's environment, a running intake, and reviewers who
decide through the service's HTTP API (as `hitl approve/reject/modify` do)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.api_server import ApiServer
from tests.conftest import public_key_env
from tests.redis_server import RedisServer
from tests.scenarios.helpers import consuming, wait_until


@pytest.fixture
def agent_env(redis_server: RedisServer, tmp_path: Any) -> dict[str, str]:
    """The environment an agent process gets: Redis and the PUBLIC key, nothing that signs."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HITL_REDIS_URL": redis_server.url,
        "HITL_PUBLIC_KEY": public_key_env(),
        "HITL_DATA_DIR": str(tmp_path / "agent-data"),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }


@pytest.fixture
def agent_vars(agent_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process is the agent: HITL_REDIS_URL and HITL_PUBLIC_KEY only."""
    monkeypatch.setenv("HITL_REDIS_URL", agent_env["HITL_REDIS_URL"])
    monkeypatch.setenv("HITL_PUBLIC_KEY", agent_env["HITL_PUBLIC_KEY"])


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


@pytest.fixture
def reviewers(api: ApiServer, store: Store, pintake: IntakeConsumer) -> Iterator[Reviewers]:
    """Reviewers deciding through the API, with the shipped policy's intake running."""
    with consuming(pintake):
        yield Reviewers(api, store)
