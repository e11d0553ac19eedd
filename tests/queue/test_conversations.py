"""Conversation references of the Teams bot in Redis: by conversation, by user, by channel name."""

from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hitl.errors import StoreUnavailable
from hitl.queue.conversations import ConversationBook
from hitl.queue.store import Store
from tests.conftest import KEYRING
from tests.redis_server import free_port


def test_save_and_find_by_user_and_channel(store: Store) -> None:
    """A personal chat is found by its user, a channel by its name (spelled any way)."""
    book = ConversationBook(store)
    book.save("a:bob", '{"ref": "bob"}', user="AAD-BOB")
    book.save("19:ops", '{"ref": "ops"}', channel="Ops")
    assert ("a:bob", '{"ref": "bob"}') == book.find(user="aad-bob")
    assert ("19:ops", '{"ref": "ops"}') == book.find(channel="#OPS")
    assert book.find(channel="nope") is None and book.reference("19:nope") is None
    assert {store.keys.teams_conversations, store.keys.teams_names} <= {
        str(k) for k in store.redis.keys(f"{store.keys.prefix}teams:*")
    }


def test_a_channel_name_is_first_come(store: Store) -> None:
    """A second channel named like the first (another team's "Ops") does not take it over,
    while the first one's reference is refreshed."""
    book = ConversationBook(store)
    book.save("19:ops", '{"v": 1}', channel="Ops")
    book.save("19:other-team-ops", '{"v": 9}', channel="ops")
    book.save("19:ops", '{"v": 2}', channel="Ops")
    assert ("19:ops", '{"v": 2}') == book.find(channel="Ops")


def test_redis_down_is_a_clear_error() -> None:
    """Redis unreachable: StoreUnavailable saying so, for reads and writes."""
    no_retry = Retry(NoBackoff(), 0)
    dead = Store(redis.Redis(port=free_port(), decode_responses=True, retry=no_retry),
                 signer=KEYRING)  # fmt: skip
    book = ConversationBook(dead)
    with pytest.raises(StoreUnavailable, match="unreachable"):
        book.find(user="x")
    with pytest.raises(StoreUnavailable, match="unreachable"):
        book.save("a:x", "{}", user="x")
