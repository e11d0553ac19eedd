"""Where the Teams bot may post on its own: one conversation reference per conversation, by name.

A bot can message a Teams conversation proactively only with the ``ConversationReference`` Teams
gave it there (service URL, tenant, conversation id). The Teams adapter stores one whenever it is
installed in a team, a channel, a group chat or a personal chat, or is messaged there, with the
names a policy may use for it: ``user:<aadObjectId>`` (a personal chat) and ``channel:<name>``
(a team channel, first come: a channel created later with the same name does not take the
name over)::

    book = ConversationBook(store)
    book.save("19:abc@thread.tacv2", reference_json, channel="Approvals")
    book.save("a:1xyz", reference_json, user="9a6b1c2d-...")
    book.find("channel:approvals")    # (conversation id, reference JSON) or None

The references are JSON text: this module knows nothing of botbuilder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hitl.errors import StoreUnavailable
from hitl.identity import canonical_id
from hitl.queue.store import Store

T = TypeVar("T")

__all__ = ["ConversationBook"]


def channel_name(name: str) -> str:
    """``channel:<canonical name>``: ``#Approvals`` and ``approvals`` are one name."""
    return "channel:" + canonical_id(name.lstrip("#"))


def user_name(aad_object_id: str) -> str:
    return "user:" + canonical_id(aad_object_id)


def _call(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise StoreUnavailable(f"Redis is unreachable ({exc}); retry later") from exc


class ConversationBook:
    """Conversation references of the Teams bot, in Redis (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.redis = store.redis
        self.keys = store.keys

    def save(
        self, conversation_id: str, reference: str, *, user: str = "", channel: str = ""
    ) -> None:
        """Store (or refresh) the reference of ``conversation_id``; name it after ``user`` (a
        personal chat) and ``channel`` (a team channel's name, if no other channel has it)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.teams_conversations, conversation_id, reference)
        if user:
            pipe.hset(self.keys.teams_names, user_name(user), conversation_id)
        if channel.strip("# "):
            pipe.hsetnx(self.keys.teams_names, channel_name(channel), conversation_id)
        _call(pipe.execute)

    def reference(self, conversation_id: str) -> str | None:
        """The stored reference of a conversation (JSON), or None."""
        raw = _call(lambda: self.redis.hget(self.keys.teams_conversations, conversation_id))
        return raw.decode() if isinstance(raw, bytes) else raw

    def conversation_of(self, *, user: str = "", channel: str = "") -> str | None:
        """The conversation a person's personal chat, or a channel name, means (None: unknown)."""
        key = user_name(user) if user else channel_name(channel)
        raw = _call(lambda: self.redis.hget(self.keys.teams_names, key))
        return raw.decode() if isinstance(raw, bytes) else raw

    def find(self, *, user: str = "", channel: str = "") -> tuple[str, str] | None:
        """``(conversation id, reference JSON)`` for a person or a channel name, or None."""
        conversation = self.conversation_of(user=user, channel=channel)
        if conversation is None:
            return None
        reference = self.reference(conversation)
        return (conversation, reference) if reference is not None else None
