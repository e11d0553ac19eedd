"""Scenario fixtures: the CLI's environment and an intake that uses the shipped policy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hitl.policies import default_policy
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.conftest import SECRET
from tests.redis_server import RedisServer


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    """HITL_REDIS_URL and HITL_SECRET pointing at the test Redis; HITL_POLICY unset."""
    monkeypatch.setenv("HITL_REDIS_URL", redis_server.url)
    monkeypatch.setenv("HITL_SECRET", SECRET.decode())


@pytest.fixture
def pintake(store: Store) -> Iterator[IntakeConsumer]:
    """An intake classifying with the shipped policy, like `hitl serve` (and the CLI) use."""
    consumer = IntakeConsumer(store, default_policy().evaluate, block_ms=0)
    consumer.ensure_group()
    yield consumer
    consumer.close()
