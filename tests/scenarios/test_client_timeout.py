"""``request_approval(timeout=N)`` ends with the deny-by-default decision, not a timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from hitl.client import Client
from hitl.config import Settings
from hitl.handlers import OpenAuthority
from hitl.jobs import start_worker, stop_worker
from hitl.models import Outcome
from hitl.queue.store import Store
from hitl.service import Service

pytestmark = pytest.mark.slow


def test_timeout_returns_the_expired_decision(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    """serve + worker, nobody answers: the agent gets `expired`, not ApprovalTimeout."""
    service = Service(settings, store=store, authority=OpenAuthority())
    service.start_intake()
    with open(tmp_path / "worker.log", "wb") as log:
        worker = start_worker(settings, log_file=log)
    try:
        with Client(settings=settings) as client:
            decision = client.request_approval("restart_service", {"name": "api"}, timeout=2)
        assert Outcome.EXPIRED == decision.outcome
        assert "denied by default" in decision.reason
    finally:
        stop_worker(worker)
        service.stop_intake()
