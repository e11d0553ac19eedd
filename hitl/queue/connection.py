"""Connecting: a Redis URL when configured, else the embedded server; and the Store to go with it.

::

    store = open_store(Settings.from_env())
"""

from __future__ import annotations

import redis

from hitl.config import Settings
from hitl.errors import ConfigError
from hitl.queue.embedded import EmbeddedServer
from hitl.queue.keys import Keys
from hitl.queue.store import Store

__all__ = ["open_store", "redis_url"]


def redis_url(settings: Settings) -> str:
    """``settings.redis_url``, or the embedded server's URL (starting it if needed)."""
    if settings.redis_url:
        scheme = settings.redis_url.split("://", 1)[0]
        if "://" not in settings.redis_url or scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"HITL_REDIS_URL {settings.redis_url!r} is not a redis://, rediss:// or unix:// "
                "URL (unset it to use the embedded server)"
            )
        return settings.redis_url
    return EmbeddedServer(settings.data_dir).ensure()


def open_store(settings: Settings, *, url: str | None = None, signer: bool = True) -> Store:
    """A Store on the configured Redis. ``signer=False``: a store that reads (and cannot decide),
    for processes that hold no private key (the CLI's read verbs, auditors)."""
    client = redis.Redis.from_url(
        url or redis_url(settings),
        decode_responses=True,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return Store(
        client,
        keys=Keys(settings.prefix),
        signer=settings.signing_keys() if signer else None,
        decision_ttl_s=settings.decision_ttl_s,
        dead_maxlen=settings.dead_maxlen,
    )
