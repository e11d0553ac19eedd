"""A real Redis server on a free port, owned by the tests (so they can kill and restart it).

Uses ``redis-server`` from PATH, else the valkey-server binary that the embedded default ships.
Public so that scenario tests and benchmarks share it::

    with RedisServer() as server:
        client = server.client()
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import redis

__all__ = ["RedisServer", "free_port", "server_binary"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from hitl.queue.embedded import server_binary as embedded

    return embedded()


class RedisServer:
    """``appendfsync`` ("always", "everysec", "no") applies with ``appendonly``; ``binary`` picks
    the server (e.g. the embedded valkey-server, which has ``WAITAOF``); ``args`` are more
    ``redis-server`` options (``--replicaof`` ...)."""

    def __init__(
        self,
        port: int | None = None,
        appendonly: bool = False,
        *,
        appendfsync: str = "everysec",
        binary: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hitl-redis-"))
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.binary = binary
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, decode: bool = True) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=decode)

    def start(self) -> RedisServer:
        args = [
            self.binary or server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--dir", str(self.dir),
            *self.args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the server holds its connections and answers nothing (a network cut)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
