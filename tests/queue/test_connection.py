"""HITL_REDIS_URL: the schemes it takes, Sentinel URLs parsed, and clear errors for the rest."""

from __future__ import annotations

import re

import pytest

from hitl.config import Settings
from hitl.errors import ConfigError
from hitl.queue.connection import SentinelUrl, connect, redis_url, with_decoding
from tests.redis_server import RedisServer


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_db() -> None:
    """Several sentinels, the master's service name, a db and the master's credentials."""
    parsed = SentinelUrl.parse(
        "redis+sentinel://hitl-service:s%40cret@10.0.0.1:26379,h2:26380/hitl/3"
    )
    assert (
        [("10.0.0.1", 26379), ("h2", 26380)],
        "hitl",
        3,
        "hitl-service",
        "s@cret",
    ) == (parsed.sentinels, parsed.service, parsed.db, parsed.username, parsed.password)
    assert (0, None) == (
        SentinelUrl.parse("redis+sentinel://h:1/mymaster").db,
        parsed.__class__.parse("redis+sentinel://h:1/m").password,
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis+sentinel://h:26379", "expected redis+sentinel://host:port"),
        ("redis+sentinel://h:26379/svc/x", "expected redis+sentinel://host:port"),
        ("redis+sentinel://h/svc", "sentinel 'h' is not host:port"),
        ("redis+sentinel://u:pw@h:x/svc", "sentinel 'h:x' is not host:port"),
    ],
)
def test_a_bad_sentinel_url_says_what_is_expected_and_hides_the_password(
    url: str, problem: str
) -> None:
    """The error names the expected form and never echoes a password."""
    with pytest.raises(ConfigError, match=re.escape(problem)) as caught:
        SentinelUrl.parse(url)
    assert "pw" not in str(caught.value)


def test_other_schemes_are_refused_with_the_ones_accepted() -> None:
    """An unknown scheme is a configuration error listing the schemes hitl takes."""
    with pytest.raises(ConfigError, match="redis\\+sentinel://") as caught:
        redis_url(Settings(redis_url="memcached://user:pw@h:1"))
    assert "pw" not in str(caught.value)


def test_a_client_with_other_decoding_shares_the_server_not_the_pool(
    redis_server: RedisServer,
) -> None:
    """with_decoding: the same server, bytes instead of text, its own pool (RQ's connection)."""
    text = connect(redis_server.url)
    raw = with_decoding(text, decode=False)
    text.set("k", "v")
    assert ("v", b"v") == (text.get("k"), raw.get("k"))
    assert raw.connection_pool is not text.connection_pool
    text.delete("k")
