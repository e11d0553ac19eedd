"""A Sentinel-managed Redis owned by the tests: a master, a replica and two sentinels, each a
``redis-server`` process on a free port (``redis-server --sentinel`` is ``redis-sentinel``)::

    with SentinelSetup() as setup:
        url = setup.url                    # redis+sentinel://127.0.0.1:P1,127.0.0.1:P2/hitl/0
        setup.failover()                   # SENTINEL FAILOVER; returns once the replica leads
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from tests.redis_server import RedisServer, free_port, server_binary

__all__ = ["SentinelSetup"]

SERVICE = "hitl"


class SentinelSetup:
    def __init__(self) -> None:
        self.master = RedisServer()
        self.replica = RedisServer(args=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.ports = [free_port(), free_port()]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def sentinel(self, n: int = 0) -> redis.Redis:
        return redis.Redis(port=self.ports[n], decode_responses=True, socket_timeout=5)

    def master_port(self, n: int = 0) -> int:
        """The master's port, as sentinel ``n`` names it."""
        host_port = self.sentinel(n).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(host_port[1])

    def start(self) -> SentinelSetup:
        self.master.start()
        self.replica.start()
        for port in self.ports:
            conf = Path(self.master.dir) / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 1\n"
                f"sentinel down-after-milliseconds {SERVICE} 2000\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
            )
            self.procs.append(
                subprocess.Popen(
                    [server_binary(), str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        self._wait(self._replica_known, "the sentinels to see the replica in sync")
        return self

    def _replica_known(self) -> bool:
        """Every sentinel knows the replica and the other sentinels (else one that missed a
        failover would keep naming the old master)."""
        try:
            for n in range(len(self.ports)):
                replicas = self.sentinel(n).execute_command("SENTINEL", "REPLICAS", SERVICE)
                others = self.sentinel(n).execute_command("SENTINEL", "SENTINELS", SERVICE)
                if not replicas or len(others) != len(self.ports) - 1:
                    return False
            info = self.replica.client().info("replication")
        except redis.RedisError:
            return False
        return bool(info.get("master_link_status") == "up")

    def failover(self) -> int:
        """``SENTINEL FAILOVER`` the way an operator hands over without losing writes: pause
        writes on the master, let the replica catch up, fail over, wait until the old master
        follows the new one, unpause. Returns the new master's port."""
        old = self.master_port()
        old_client = redis.Redis(port=old, decode_responses=True)
        old_client.execute_command("CLIENT", "PAUSE", "20000", "WRITE")
        offset = int(old_client.info("replication")["master_repl_offset"])
        new_port = self.replica.port if old == self.master.port else self.master.port
        new_client = redis.Redis(port=new_port, decode_responses=True)
        self._wait(
            lambda: int(new_client.info("replication").get("slave_repl_offset", -1)) >= offset,
            "the replica to catch up",
        )
        self.sentinel().execute_command("SENTINEL", "FAILOVER", SERVICE)
        self._wait(
            lambda: all(self.master_port(n) == new_port for n in range(len(self.ports))),
            "every sentinel to name the promoted replica",
        )
        # Demote the old master before its paused writers go on (the sentinels would, later).
        old_client.execute_command("REPLICAOF", "127.0.0.1", str(new_port))
        old_client.execute_command("CLIENT", "UNPAUSE")
        return new_port

    @staticmethod
    def _wait(check: object, what: str, timeout: float = 30.0) -> None:
        assert callable(check)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {what}")

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(5)
        self.procs.clear()
        self.replica.stop()
        self.master.stop()

    def __enter__(self) -> SentinelSetup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
