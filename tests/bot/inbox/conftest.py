"""Inbox fixtures: the service's HTTP app (API + inbox) with the shipped policy, requests stored
by the real intake, and sign-in links minted by the code behind ``hitl inbox login``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from hitl.handlers.sessions import issue_link
from hitl.queue.intake import IntakeConsumer
from hitl.queue.sessions import WebRecords
from tests.api_server import ApiServer
from tests.bot.inbox.client import Browser
from tests.conftest import KEYRING
from tests.scenarios.helpers import submit_raw

SignedIn = Callable[[str], Browser]
Refund = Callable[..., str]


@pytest.fixture
def signed_in(api: ApiServer) -> SignedIn:
    """``signed_in("bob")``: a browser with a session for bob (through a one-time link)."""

    def make(who: str) -> Browser:
        link = issue_link(
            WebRecords(api.service.store), KEYRING, api.api.directory, who, actor="test"
        )
        browser = Browser(api.url)
        assert 303 == browser.sign_in_with_link(link)
        return browser

    return make


@pytest.fixture
def refund(r: redis.Redis, pintake: IntakeConsumer) -> Refund:
    """``refund("r-1", amount=250)``: a refund request stored by the shipped policy (over $100:
    one manager's approval; bob and frank are managers, alice is not)."""

    def make(rid: str, amount: float = 250.0, **fields: Any) -> str:
        fields.setdefault("requested_by", "support-bot-user")
        fields.setdefault("agent_id", "support-bot")
        fields.setdefault("reasoning", "The parcel arrived 9 days late.")
        fields.setdefault("context", {"user_request": "Refund my order please", "ticket": "T-9"})
        fields.setdefault(
            "param_schema",
            {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "amount": {"type": "number", "minimum": 0, "maximum": 1000},
                },
                "required": ["order_id", "amount"],
            },
        )
        return submit_raw(
            r, pintake, rid, action="refund", params={"order_id": "A-1", "amount": amount}, **fields
        )

    return make
