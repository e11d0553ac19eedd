"""Connecting: a Redis URL when configured, else the embedded server; and the Store to go with it.

``HITL_REDIS_URL`` takes ``redis://``, ``rediss://`` and ``unix://`` URLs, and a Sentinel-managed
master as ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``: the
client asks the sentinels for the master and asks again after a failover (a connection to a
demoted master is dropped on its first ``READONLY`` reply, so writes move to the new master)::

    store = open_store(Settings.from_env())
    client = connect("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/hitl/0")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
import redis.asyncio as aredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel, SentinelConnectionPool

from hitl.config import Settings
from hitl.errors import ConfigError
from hitl.queue.embedded import EmbeddedServer
from hitl.queue.keys import Keys
from hitl.queue.store import Store

__all__ = ["SentinelUrl", "connect", "connect_async", "open_store", "redis_url", "with_decoding"]

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")


@dataclass(frozen=True)
class SentinelUrl:
    """``redis+sentinel://[user:password@]host:port[,host:port]/service_name[/db]``, parsed.

    The credentials are the master's (and its replicas'); the sentinels are reached without.
    """

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelUrl:
        rest = url.split("://", 1)[1]
        userinfo, _, rest = rest.rpartition("@")
        hosts, _, path = rest.partition("/")
        parts = [p for p in path.split("/") if p]
        sentinels = [_host_port(h, url) for h in hosts.split(",") if h]
        db_ok = len(parts) == 1 or (len(parts) == 2 and parts[1].isdigit())
        if not sentinels or not db_ok:
            raise ConfigError(
                f"HITL_REDIS_URL {_redacted(url)!r}: expected "
                "redis+sentinel://host:port[,host:port]/service_name[/db]"
            )
        username, _, password = userinfo.partition(":")
        return cls(
            sentinels=sentinels,
            service=unquote(parts[0]),
            db=int(parts[1]) if len(parts) == 2 else 0,
            username=unquote(username) or None,
            password=unquote(password) or None,
        )


def _host_port(text: str, url: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"HITL_REDIS_URL {_redacted(url)!r}: sentinel {text!r} is not host:port "
            "(the Sentinel port, usually 26379)"
        )
    return host, int(port)


def _redacted(url: str) -> str:
    scheme, _, rest = url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    return f"{scheme}://{'***@' if at else ''}{hosts}"


def redis_url(settings: Settings) -> str:
    """``settings.redis_url``, or the embedded server's URL (starting it if needed)."""
    if settings.redis_url:
        scheme = settings.redis_url.split("://", 1)[0]
        if "://" not in settings.redis_url or scheme not in SCHEMES:
            raise ConfigError(
                f"HITL_REDIS_URL {_redacted(settings.redis_url)!r} is not a redis://, rediss://, "
                "unix:// or redis+sentinel:// URL (unset it to use the embedded server)"
            )
        return settings.redis_url
    return EmbeddedServer(settings.data_dir).ensure()


def connect(url: str, *, decode: bool = True, **options: Any) -> redis.Redis:
    """A client for any URL :func:`redis_url` accepts (for Sentinel: the current master)."""
    if url.startswith("redis+sentinel://"):
        parsed, sentinel_kwargs, master_kwargs = _sentinel_args(url, decode, options)
        sentinel = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel unannotated
        master: redis.Redis = sentinel.master_for(parsed.service, **master_kwargs)  # type: ignore[no-untyped-call]  # ditto
        return master
    return redis.Redis.from_url(url, decode_responses=decode, **options)


def connect_async(url: str, **options: Any) -> aredis.Redis:
    """:func:`connect` for asyncio (the agent SDK's ``AsyncClient``); responses decoded."""
    if url.startswith("redis+sentinel://"):
        parsed, sentinel_kwargs, master_kwargs = _sentinel_args(url, True, options)
        sentinel = AsyncSentinel(parsed.sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]  # ditto
        master: aredis.Redis = sentinel.master_for(parsed.service, **master_kwargs)
        return master
    return aredis.Redis.from_url(url, decode_responses=True, **options)


def _sentinel_args(
    url: str, decode: bool, options: dict[str, Any]
) -> tuple[SentinelUrl, dict[str, Any], dict[str, Any]]:
    """The parsed URL, the sentinels' connection options (timeouts only: no credentials) and
    the master's."""
    parsed = SentinelUrl.parse(url)
    sentinel_kwargs = {k: v for k, v in options.items() if k.startswith("socket_")}
    master_kwargs = {
        "db": parsed.db,
        "username": parsed.username,
        "password": parsed.password,
        "decode_responses": decode,
        **options,
    }
    return parsed, sentinel_kwargs, master_kwargs


def with_decoding(client: redis.Redis, decode: bool) -> redis.Redis:
    """A client on the same server (or the same Sentinel-managed master) with its own pool and
    ``decode_responses=decode``: RQ and the raw stream reader need bytes."""
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    kwargs["decode_responses"] = decode
    new: redis.ConnectionPool
    if isinstance(pool, SentinelConnectionPool):
        new = SentinelConnectionPool(  # type: ignore[no-untyped-call]  # unannotated in redis-py
            pool.service_name,
            pool.sentinel_manager,
            is_master=pool.is_master,
            check_connection=pool.check_connection,
            connection_class=pool.connection_class,
            **kwargs,
        )
    else:
        new = redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    return redis.Redis(connection_pool=new)


def open_store(settings: Settings, *, url: str | None = None, signer: bool = True) -> Store:
    """A Store on the configured Redis. ``signer=False``: a store that reads (and cannot decide),
    for processes that hold no private key (the CLI's read verbs, auditors)."""
    client = connect(
        url or redis_url(settings),
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return Store(
        client,
        keys=Keys(settings.prefix),
        signer=settings.signing_keys() if signer else None,
        decision_ttl_s=settings.decision_ttl_s,
        dead_maxlen=settings.dead_maxlen,
        retention_s=settings.retention_s,
    )
