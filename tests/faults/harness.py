"""A whole hitl deployment in processes, under load, that a fault test can break.

``Deployment`` runs its own redis-server (AOF on), ``hitl serve`` replicas (intake, API, the Slack
channel against the local Slack stand-in) and a ``hitl worker`` (RQ worker + scheduler) as real
subprocesses; ``Load`` drives it like production: agents submitting through the SDK (and
re-submitting the same request, by id, when Redis did not answer or lost it) and a reviewer
approving through ``/api/v1`` with a token. A test breaks something, then calls ``Load.settle``
and ``Deployment.tally`` and asserts on what they return::

    with Deployment(tmp_path, seed) as system:
        system.start(serves=1)
        with Load(system, seed) as load:
            chaos(system.kill_serve)              # kill -9 at random moments, restart
        tally = system.tally(load.settle())
    assert (0, 0, True) == (tally.lost, tally.duplicated, tally.chain_ok)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from hitl.bot.slack.blocks import APPROVE
from hitl.client import Client
from hitl.config import Settings
from hitl.errors import StoreUnavailable
from hitl.handlers.tokens import issue
from hitl.jobs import start_worker, stop_worker
from hitl.models import ApprovalRequest, RequestRecord
from hitl.policies import load_policy
from hitl.queue.keys import AUDIT_CHAINS, Keys
from hitl.queue.store import Store
from hitl.queue.tokens import TokenRecords
from tests.bot.conftest import SIGNING_SECRET, sign
from tests.bot.slack_server import MockSlack
from tests.conftest import KEYRING, keyring_file
from tests.redis_server import RedisServer, free_port

__all__ = ["Deployment", "Load", "Tally", "chaos", "fault_seed"]

ROOT = Path(__file__).resolve().parents[2]
KEYS = Keys()

POLICY = """
version: "faults"
timezone: UTC
tools:
  read_file: low
  deploy: medium
  let_it_expire: medium
risk_levels:
  low: {policy: autonomous}
  medium: {policy: mandatory, destination: "channel:#approvals"}
  high: {policy: mandatory, destination: "channel:#approvals"}
  critical: {policy: mandatory, destination: "channel:#approvals"}
reviewers:
  - {id: bob, display_name: Bob Brown, slack_id: U0BOB, roles: [standard]}
"""
"""read_file is approved by the policy at intake; deploy waits for bob (the Load's reviewer);
let_it_expire is left alone, so that the worker denies it by default at its 2 s deadline."""

MIX = (("read_file", 4), ("deploy", 5), ("let_it_expire", 1))


def fault_seed() -> int:
    """``$HITL_FAULT_SEED`` (to replay a failed run), else a fresh one; printed by each test."""
    return int(os.environ.get("HITL_FAULT_SEED") or random.SystemRandom().randrange(10**6))


class _SlackThread:
    """The Slack stand-in, serving from its own event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(MockSlack().start(), self.loop).result(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@dataclass
class Tally:
    """What a fault test asserts: every request sent was decided once, and the chain verifies."""

    sent: int
    decided: int
    lost: int
    duplicated: int
    chain_ok: bool
    chain_report: str
    acked_decisions_lost: int = 0
    """Approvals the API acknowledged that a Redis restart then lost (re-decided later)."""
    cards_missing: int = 0
    cards_duplicated: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    undecided: list[str] = field(default_factory=list)
    """A few requests that were not decided, with their state (to diagnose a failure)."""

    def line(self) -> str:
        return (
            f"sent={self.sent} decided={self.decided} lost={self.lost} "
            f"duplicated={self.duplicated} chain_verified={self.chain_ok} "
            f"acked_decisions_lost={self.acked_decisions_lost} "
            f"cards_missing={self.cards_missing} cards_duplicated={self.cards_duplicated} "
            f"outcomes={self.outcomes}"
        )


class Deployment:
    """Redis, ``hitl serve`` replicas and a ``hitl worker``, each a process this test owns."""

    def __init__(
        self,
        tmp: Path,
        *,
        appendfsync: str = "always",
        slack: bool = False,
        binary: str | None = None,
    ) -> None:
        self.tmp = tmp
        self.redis = RedisServer(appendonly=True, appendfsync=appendfsync, binary=binary)
        self.slack = _SlackThread() if slack else None
        self.ports: list[int] = []
        self.serves: dict[int, subprocess.Popen[bytes]] = {}
        self.worker: subprocess.Popen[bytes] | None = None
        self.restarts: Counter[str] = Counter()
        policy = tmp / "policy.yaml"
        policy.write_text(POLICY)
        self.policy = load_policy(policy, with_tests=False)
        self.env = {
            **os.environ,
            "HITL_REDIS_URL": self.redis.url,
            "HITL_SIGNING_KEY_FILE": str(keyring_file(tmp)),
            "HITL_POLICY": str(policy),
            "HITL_DATA_DIR": str(tmp / "data"),
            "HITL_CHECKPOINT_S": "1",
            "HITL_CLAIM_IDLE_MS": "1000",
            "HITL_TICK": "2",
        }
        if self.slack is not None:
            self.env |= {
                "SLACK_BOT_TOKEN": "xoxb-faults",
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_API_URL": self.slack.server.api_url,
                "HITL_SLACK_CHANNEL": "#approvals",
                "HITL_CHANNEL_PACE": "100000/60",  # one card per request: no folding into digests
                "HITL_SLACK_PACE_S": "0",  # the stand-in has no rate limit; 1 card/s would lag
                "HITL_CARD_SWEEP_S": "1",
                "HITL_CARD_SWEEP_MIN_AGE_S": "2",
            }
        self.settings = Settings(
            redis_url=self.redis.url, keyring=KEYRING, data_dir=tmp / "data", policy_path=None
        )

    # -- processes -----------------------------------------------------------------------------

    def start(self, serves: int = 1, worker: bool = True) -> Deployment:
        self.redis.start()
        self.ports = [free_port() for _ in range(serves)]
        for port in self.ports:
            self.start_serve(port)
        if worker:
            self.start_worker()
        for port in self.ports:
            self.wait_healthy(port)
        return self

    def start_serve(self, port: int) -> None:
        with open(self.tmp / f"serve-{port}.log", "ab") as log:
            self.serves[port] = subprocess.Popen(
                [sys.executable, "-m", "hitl", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=log,
            )

    def start_worker(self) -> None:
        with open(self.tmp / "worker.log", "ab") as log:
            self.worker = start_worker(self.settings, log_file=log, env=self.env)

    def kill_serve(self, port: int | None = None) -> None:
        """``kill -9`` one ``hitl serve`` (its intake, API and Slack task die with it)."""
        port = port if port is not None else self.ports[0]
        proc = self.serves[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.restarts["serve"] += 1

    def kill_worker(self) -> None:
        """``kill -9`` the worker and its scheduler child: locks and started jobs left behind."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(10)
        self.restarts["worker"] += 1

    def kill_redis(self) -> None:
        """``kill -9`` redis-server; it restarts from its AOF on the same port."""
        self.redis.kill()
        self.restarts["redis"] += 1

    def restart_dead(self) -> None:
        """Start again whatever is not running (Redis first), and wait until every ``hitl serve``
        answers (so that the next kill hits a running service, not one starting up)."""
        if self.redis.proc is None:
            self.redis.start()
        for port, proc in self.serves.items():
            if proc.poll() is not None:
                self.start_serve(port)
        if self.worker is not None and self.worker.poll() is not None:
            self.start_worker()
        for port in self.ports:
            self.wait_healthy(port)

    def wait_healthy(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            url = f"http://127.0.0.1:{port}/healthz"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
            if self.serves[port].poll() is not None:
                break
            time.sleep(0.05)
        log = (self.tmp / f"serve-{port}.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"hitl serve on {port} did not become healthy:\n{log}")

    def stop(self) -> None:
        for proc in self.serves.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.serves.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.worker is not None:
            stop_worker(self.worker)
        if self.slack is not None:
            self.slack.close()
        self.redis.stop()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading the outcome -------------------------------------------------------------------

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.redis.port, decode_responses=True, socket_timeout=5)

    def records(self, ids: list[str]) -> dict[str, RequestRecord]:
        r = self.client()
        try:
            out: dict[str, RequestRecord] = {}
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for rid, raw in zip(chunk, r.mget([KEYS.req(i) for i in chunk]), strict=True):
                    if raw:
                        out[rid] = RequestRecord.model_validate_json(raw)
            return out
        finally:
            r.close()

    def tally(self, load: Load) -> Tally:
        """Count what the load sent against what Redis holds; verify the chain as
        ``hitl audit verify`` does (its own process, public keys only)."""
        ids = list(load.sent)
        records = self.records(ids)
        decided = {rid: rec for rid, rec in records.items() if rec.decision is not None}
        r = self.client()
        try:
            decisions = Counter(
                json.loads(fields["decision"])["request_id"]
                for _sid, fields in r.xrange(KEYS.decisions)
            )
            submitted = Counter(
                json.loads(fields["e"])["request_id"]
                for chain in range(AUDIT_CHAINS)
                for _sid, fields in r.xrange(KEYS.audit(chain))
                if json.loads(fields["e"])["kind"] == "submitted"
            )
        finally:
            r.close()
        duplicated = sum(1 for rid in ids if decisions[rid] > 1 or submitted[rid] > 1)
        decided_at = {rid: rec.decision.decided_at for rid, rec in records.items() if rec.decision}
        acked_lost = sum(1 for rid, at in load.acked.items() if decided_at.get(rid, at) != at)
        verify = subprocess.run(
            [sys.executable, "-m", "hitl", "audit", "verify"],
            cwd=ROOT,
            env={k: v for k, v in self.env.items() if k != "HITL_SIGNING_KEY_FILE"}
            | {"HITL_PUBLIC_KEY": KEYRING.public().to_env()},
            capture_output=True,
            text=True,
            timeout=60,
        )
        tally = Tally(
            sent=len(ids),
            decided=len(decided),
            lost=len(ids) - len(decided) + acked_lost,
            duplicated=duplicated,
            chain_ok=verify.returncode == 0,
            chain_report=(verify.stdout + verify.stderr).strip(),
            acked_decisions_lost=acked_lost,
            outcomes=dict(
                Counter(rec.decision.outcome.value for rec in decided.values() if rec.decision)
            ),
        )
        tally.undecided = [
            records[rid].model_dump_json(
                include={
                    "request": {"id", "action"},
                    "state": True,
                    "cards": True,
                    "created_at": True,
                }
            )
            if rid in records
            else f"{rid}: no record"
            for rid in ids
            if rid not in decided
        ][:3]
        if self.slack is not None:
            reviewed = [rid for rid, action in load.sent.items() if action == "deploy"]
            cards = Counter(
                rid
                for call in self.slack.server.calls_to("chat.postMessage")
                for rid in _approve_values(call.args.get("blocks", []))
            )
            tally.cards_missing = sum(1 for rid in reviewed if cards[rid] == 0)
            tally.cards_duplicated = sum(1 for rid in reviewed if cards[rid] > 1)
        return tally


class Load:
    """Agents submitting through the SDK at a steady pace and a reviewer approving, in threads,
    until :meth:`settle`: through the API (``reviewer="api"``), or by clicking Approve on the
    cards the Slack stand-in received (``reviewer="slack"``: a request whose card never reaches
    Slack is never approved).

    An agent whose XADD failed (Redis down) retries the same request (same id: one request); an
    agent whose request has no record yet after a while submits it again, as a careful agent does
    when it cannot tell a lost submission from a slow one."""

    def __init__(
        self,
        system: Deployment,
        seed: int,
        *,
        agents: int = 3,
        per_s: float = 40.0,
        reviewer: str = "api",
    ) -> None:
        self.system = system
        self.reviewer = reviewer
        self.rng = random.Random(seed)
        self.agents = agents
        self.per_s = per_s
        self.sent: dict[str, str] = {}
        """Request id -> action, for every request an agent submitted (acknowledged or not)."""
        self.requests: dict[str, ApprovalRequest] = {}
        self.acked: dict[str, float] = {}
        """Request id -> ``decided_at`` of each approval the API acknowledged with 200."""
        self.approve_calls = 0
        self.stop = threading.Event()
        self.reviewing = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        policy = system.policy
        self.token, _ = issue(
            TokenRecords(Store(system.client(), signer=KEYRING)), KEYRING, policy, "bob", actor="t"
        )

    def __enter__(self) -> Load:
        for index in range(self.agents):
            seed = self.rng.randrange(10**9)
            self._spawn(lambda i=index, s=seed: self._agent(i, random.Random(s)))
        self.reviewing.set()
        self._spawn(self._reviewer if self.reviewer == "api" else self._slack_reviewer)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.reviewing.clear()
        for thread in self._threads:
            thread.join(15)

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- agents --------------------------------------------------------------------------------

    def _agent(self, index: int, rng: random.Random) -> None:
        client = Client(self.system.redis.url, verify=False, agent_id=f"agent-{index}")
        actions = [a for a, weight in MIX for _ in range(weight)]
        n = 0
        try:
            while not self.stop.is_set():
                action = rng.choice(actions)
                rid = f"a{index}-{n:05d}"
                n += 1
                fields: dict[str, Any] = {"id": rid, "requested_by": f"agent-{index}"}
                if action == "let_it_expire":
                    fields["timeout_s"] = 2
                request = ApprovalRequest.model_validate(
                    {"action": action, "params": {"n": n}, "summary": f"{action} {n}", **fields}
                )
                with self._lock:
                    self.sent[rid] = action
                    self.requests[rid] = request
                self._submit(client, request)
                self.stop.wait(self.agents / self.per_s)
        finally:
            client.close()

    def _submit(self, client: Client, request: ApprovalRequest) -> None:
        while True:
            try:
                client.submit_request(request)
                return
            except StoreUnavailable:
                if self.stop.wait(0.05):
                    return

    def resubmit_missing(self) -> int:
        """Submit again every request that has no record (lost by Redis, or never queued)."""
        stored = self.system.records(list(self.sent))
        missing = [rid for rid in self.sent if rid not in stored]
        if missing:
            client = Client(self.system.redis.url, verify=False)
            try:
                for rid in missing:
                    with contextlib.suppress(StoreUnavailable):
                        client.submit_request(self.requests[rid])
            finally:
                client.close()
        return len(missing)

    # -- the reviewer --------------------------------------------------------------------------

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        port = self.rng.choice(self.system.ports)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as response:
            return json.loads(response.read())

    def _reviewer(self) -> None:
        """bob approves every pending deploy through the API; a refused or failed call (the
        service was killed, Redis is down) is retried on the next round."""
        while self.reviewing.is_set():
            try:
                page = self._api("GET", "/requests?action=deploy&limit=100")
                for item in page["requests"]:
                    self._approve(item["id"])
            except (OSError, urllib.error.HTTPError, ValueError):
                pass
            time.sleep(0.05)

    def _approve(self, rid: str) -> None:
        self.approve_calls += 1
        try:
            answer = self._api("POST", f"/requests/{rid}/approve", {"reason": "ok"})
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # 409: already decided (by this reviewer, a moment ago)
                raise
            return
        decision = answer.get("decision")
        if decision is not None:
            self.acked[rid] = float(decision["decided_at"])

    def _slack_reviewer(self) -> None:
        """bob clicks Approve on every card in Slack whose request is still pending (again a
        second later if the click was lost: the card still shows its buttons)."""
        assert self.system.slack is not None
        slack = self.system.slack.server
        seen, cards = 0, set[str]()
        clicked: dict[str, float] = {}
        while self.reviewing.is_set():
            calls = slack.calls_to("chat.postMessage")
            for call in calls[seen:]:
                cards.update(_approve_values(call.args.get("blocks", [])))
            seen = len(calls)
            now = time.monotonic()
            due = [rid for rid in cards if now - clicked.get(rid, -math.inf) > 1.0]
            with contextlib.suppress(OSError):
                decided = self.system.records(due)
                for rid in due:
                    record = decided.get(rid)
                    if record is not None and record.decision is not None:
                        cards.discard(rid)
                        continue
                    clicked[rid] = now
                    self._click(rid)
            time.sleep(0.05)

    def _click(self, rid: str) -> None:
        payload = {
            "type": "block_actions",
            "user": {"id": "U0BOB", "username": "bob", "name": "bob", "team_id": "T0TEAM"},
            "api_app_id": "A0HITL",
            "team": {"id": "T0TEAM", "domain": "faults"},
            "container": {"type": "message", "message_ts": "1.1", "channel_id": "CAPPROVALS"},
            "channel": {"id": "CAPPROVALS", "name": "approvals"},
            "message": {"ts": "1.1", "type": "message"},
            "trigger_id": f"{rid}.trigger",
            "response_url": self.system.slack.server.response_url(rid),  # type: ignore[union-attr]
            "actions": [
                {"action_id": APPROVE, "block_id": "hitl_actions", "value": rid, "type": "button"}
            ],
        }
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        port = self.rng.choice(self.system.ports)
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/slack/events", data=body.encode(), headers=sign(body)
        )
        with contextlib.suppress(OSError), urllib.request.urlopen(req, timeout=5):
            pass

    # -- the end -------------------------------------------------------------------------------

    def settle(self, timeout: float = 60.0) -> Load:
        """Stop submitting, bring every process back, then wait until every request sent is
        decided, re-submitting lost ones; the reviewer keeps approving until then."""
        self.stop.set()
        for thread in self._threads[: self.agents]:
            thread.join(15)
        self.system.restart_dead()
        deadline = time.monotonic() + timeout
        ids = list(self.sent)
        while time.monotonic() < deadline:
            records = self.system.records(ids)
            if len(records) == len(ids) and all(r.decision for r in records.values()):
                break
            if len(records) < len(ids):
                time.sleep(1.0)
                if len(self.system.records(ids)) < len(ids):
                    self.resubmit_missing()
            else:
                time.sleep(0.1)
        self.reviewing.clear()
        for thread in self._threads:
            thread.join(15)
        return self


def _approve_values(blocks: Any) -> Iterator[str]:
    """The request ids on the Approve buttons of a posted message's blocks."""
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    for block in blocks or []:
        for element in block.get("elements", []) if isinstance(block, dict) else []:
            if isinstance(element, dict) and element.get("action_id") == APPROVE:
                yield str(element["value"])


def chaos(
    rng: random.Random,
    times: int,
    kill: Callable[[], None],
    restart: Callable[[], None],
    *,
    up: tuple[float, float] = (0.3, 1.5),
    down: tuple[float, float] = (0.0, 0.5),
) -> Iterator[int]:
    """``times`` rounds of: run a random while (``up``), ``kill()``, stay down a random while
    (``down``), ``restart()``. Yields the round number after each restart."""
    for n in range(times):
        time.sleep(rng.uniform(*up))
        kill()
        time.sleep(rng.uniform(*down))
        restart()
        yield n
