"""Peak memory of one intake consumer draining huge entries (a script: prints, asserts nothing).

``python -m bench.memory_intake [--entries 20] [--mb 10]`` XADDs that many entries of that size
to a fresh redis-server, then drains them with one IntakeConsumer in a child process and prints
the child's peak RSS. Not part of ``make bench`` (it moves hundreds of MB). Set PYTHONPATH to an
older checkout to measure that one with the same script.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import redis

from tests.redis_server import RedisServer


def consume(port: int) -> None:
    """The child: drain the stream with one consumer and print the peak RSS in MB."""
    from hitl.handlers import OpenAuthority
    from hitl.keys import KeyRing
    from hitl.queue.intake import IntakeConsumer
    from hitl.queue.store import Store

    client = redis.Redis(port=port, decode_responses=True)
    store = Store(client, signer=KeyRing.generate())
    consumer = IntakeConsumer(store, OpenAuthority().evaluate, block_ms=0)
    consumer.ensure_group()
    start = time.perf_counter()
    handled = 0
    while n := consumer.run_once(block_ms=0):
        handled += n
    took = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"handled {handled} entries in {took:.1f}s; peak RSS {peak_mb:.0f} MB", flush=True)
    consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--mb", type=int, default=10)
    parser.add_argument("--consume", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.consume:
        consume(args.consume)
        return
    with RedisServer() as server:
        client = server.client(decode=False)
        blob = b'{"action": "x", "params": {"blob": "' + b"x" * (args.mb * 1024 * 1024) + b'"}}'
        for _ in range(args.entries):
            client.xadd("hitl:requests", {b"request": blob})
        client.xadd("hitl:requests", {b"request": b'{"id": "small", "action": "x"}'})
        del blob
        print(f"{args.entries} entries of {args.mb} MB (+1 small) queued", flush=True)
        cmd = [sys.executable, "-m", "bench.memory_intake", "--consume", str(server.port)]
        subprocess.run(cmd, check=True)
        print(
            f"dead letters: {client.xlen('hitl:dead')}; stored: {client.exists('hitl:req:small')}"
        )


if __name__ == "__main__":
    main()
