"""Handler fixtures: requests created through the real intake, with a chosen verdict."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from hitl.handlers import review_everything
from hitl.models import ApprovalRequest, Verdict
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.scenarios.helpers import drain, xadd_raw

MakeRequest = Callable[..., str]


@pytest.fixture
def make_request(store: Store, r: redis.Redis) -> Iterator[MakeRequest]:
    """``make_request(verdict=None, **fields) -> id``: XADD a request and run the intake on it."""
    verdicts: dict[str, Verdict] = {}

    def classify(request: ApprovalRequest) -> Verdict:
        assert request.id is not None
        return verdicts.get(request.id) or review_everything(request)

    consumer = IntakeConsumer(store, classify, block_ms=0)
    consumer.ensure_group()

    def make(verdict: Verdict | None = None, **fields: Any) -> str:
        fields.setdefault("id", f"r-{uuid.uuid4().hex[:8]}")
        fields.setdefault("action", "refund")
        fields.setdefault("params", {"order": "A-1", "amount": 100})
        request = ApprovalRequest(**fields)
        assert request.id is not None
        if verdict is not None:
            verdicts[request.id] = verdict
        xadd_raw(r, request.model_dump_json())
        drain(consumer)
        assert store.find(request.id) is not None
        return request.id

    yield make
    consumer.close()
