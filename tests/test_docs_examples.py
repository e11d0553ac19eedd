"""The fenced ``sh`` and ``python`` examples of README.md and docs/*.md run as written.

Every such block carries a marker on the line above it, ``<!-- docs-test: NAME -->``. NAME is in
:data:`RUN` (run here against the test Redis, with the run's keyring in HITL_SIGNING_KEY_FILE,
with the few substitutions listed beside it: paths and ids) or in :data:`SKIP` (with the reason).
A block without a marker, a marker this file does not know, or a known marker that disappeared
from the docs fails :func:`test_every_example_is_run_or_skipped_with_a_reason`.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hitl.config import Settings
from hitl.handlers.tokens import Directory, issue
from hitl.models import Reviewer, State
from hitl.policies import DEFAULT_PATH
from hitl.queue.store import Store
from hitl.queue.tokens import TokenRecords
from hitl.service import Service
from tests.conftest import keyring_file, public_key_env
from tests.redis_server import RedisServer
from tests.scenarios.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKED = re.compile(r"<!-- docs-test: ([\w-]+) -->\n```(sh|python)\n(.*?)\n```", re.S)
FENCE = re.compile(r"^```(sh|python)$", re.M)

SKIP = {
    "quickstart": "runs the whole demo and the whole suite (`make demo`, `make test`)",
    "demo-interactive": "needs the ids and tokens `hitl demo --interactive` prints",
    "running-for-real": "`hitl serve` and `hitl worker` run until stopped, against production "
    "Redis (`hitl serve --port 0` runs in tests/scenarios/test_serve.py)",
    "integrations-langgraph": "a fragment of examples/langgraph_refund.py, which "
    "tests/integrations/test_langgraph.py runs",
    "integrations-openai-agents": "a fragment of examples/openai_agents_refund.py, which "
    "tests/integrations/test_openai_agents.py runs",
    "integrations-semantic-kernel": "a fragment of examples/semantic_kernel_refund.py, which "
    "tests/integrations/test_semantic_kernel.py runs (`make test-heavy`)",
    "integrations-feedback": "a fragment; tests/test_feedback.py reads feedback the same way",
    "api-curl": "needs curl and a running service with live ids; the same calls are made in "
    "tests/bot/api/test_api.py",
    "inbox-signin": "`hitl inbox passwd` asks for the password on a terminal; both commands run "
    "in tests/test_cli_inbox.py",
    "inbox-label": "needs a running service and decided ids; `hitl label` runs in "
    "tests/test_cli_inbox.py",
}


@dataclass(frozen=True)
class Block:
    name: str
    lang: str
    code: str
    source: str


def blocks() -> dict[str, Block]:
    found: dict[str, Block] = {}
    for path in DOCS:
        for name, lang, code in MARKED.findall(path.read_text(encoding="utf-8")):
            assert name not in found, f"docs-test marker {name} is used twice"
            found[name] = Block(name, lang, code, path.name)
    return found


def test_every_example_is_run_or_skipped_with_a_reason() -> None:
    """Each fenced sh/python block is marked, and each marker is run here or skipped here."""
    fences = sum(len(FENCE.findall(p.read_text(encoding="utf-8"))) for p in DOCS)
    found = blocks()
    assert fences == len(found), "a ```sh or ```python block has no <!-- docs-test: NAME -->"
    assert set() == set(RUN) & set(SKIP)
    assert sorted(set(RUN) | set(SKIP)) == sorted(found)


# -- running them ------------------------------------------------------------------------------


@pytest.fixture
def docs_env(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """What an operator's shell holds: the test Redis, the keyring file, a data dir; the venv's
    `hitl` first on PATH."""
    values = {
        "HITL_REDIS_URL": redis_server.url,
        "HITL_SIGNING_KEY_FILE": str(keyring_file(tmp_path)),
        "HITL_PUBLIC_KEY": public_key_env(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return dict(os.environ)


@pytest.fixture
def service(settings: Settings, store: Store, r: object) -> Iterator[Service]:
    """`hitl serve`'s intake with the shipped policy, running in threads."""
    svc = Service(settings, store=store)
    svc.start_intake()
    yield svc
    svc.stop_intake()
    for consumer in svc.consumers:
        consumer.close()


def sh(block: Block, env: dict[str, str], subs: dict[str, str] | None = None) -> str:
    """Run the block with bash (``-e``: every line must succeed); its output."""
    code = block.code
    for old, new in (subs or {}).items():
        assert old in code, f"{block.name}: the substitution {old!r} no longer applies"
        code = code.replace(old, new)
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == done.returncode, f"{block.name} ({block.source}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def approve_when_stored(service: Service, request_id: str, *reviewers: str) -> threading.Thread:
    """A scripted reviewer: once ``request_id`` is stored, each of ``reviewers`` approves it
    through the Decider (the code behind the API and Slack)."""

    def review() -> None:
        wait_until(lambda: service.store.find(request_id) is not None, 30.0, request_id)
        for who in reviewers:
            service.decider.approve(request_id, Reviewer(user_id=who, channel="api"), "docs")

    thread = threading.Thread(target=review, daemon=True)
    thread.start()
    return thread


def run_keys(block: Block, env: dict[str, str], tmp: Path, service: Service) -> None:
    out = sh(block, env, {"/run/secrets/hitl-keys.json": str(tmp / "new-keys.json")})
    assert "hitl-public-keys/1" in out and (tmp / "new-keys.json").exists()


def _existing_token(service: Service) -> str:
    directory = service.authority if isinstance(service.authority, Directory) else None
    _, record = issue(
        TokenRecords(service.store), service.keyring, directory, "carol", actor="docs-test"
    )
    return record.tid


def run_tokens(block: Block, env: dict[str, str], tmp: Path, service: Service) -> None:
    out = sh(block, env, {"t-3f9a0c1b2d4e": _existing_token(service)})
    assert "hitl_" in out and "revoked" in out


def run_api_tokens(block: Block, env: dict[str, str], tmp: Path, service: Service) -> None:
    subs = {
        "t-3f9a0c1b2d4e": _existing_token(service),
        "/run/secrets/hitl-keys.json": env["HITL_SIGNING_KEY_FILE"],
    }
    assert "revoked" in sh(block, env, subs)


def run_agent(block: Block, env: dict[str, str], tmp: Path, service: Service) -> None:
    ran: list[dict[str, object]] = []

    def refund(**params: object) -> None:
        ran.append(params)

    def reviewer() -> None:
        wait_until(lambda: service.store.pending_count() > 0, 30.0, "the refund request")
        (rid,) = service.store.pending_ids()
        service.decider.approve(rid, Reviewer(user_id="bob", channel="api"), "docs")

    thread = threading.Thread(target=reviewer, daemon=True)
    thread.start()
    exec(compile(block.code, f"{block.source}:{block.name}", "exec"), {"refund": refund})
    thread.join(30)
    assert [{"order_id": "A-1002", "amount": 250.0}] == ran


def run_wire(block: Block, env: dict[str, str], tmp: Path, service: Service) -> None:
    reviewing = approve_when_stored(service, "r-1", "carol", "dave")
    port = service.store.redis.connection_pool.connection_kwargs["port"]
    if shutil.which("redis-cli"):
        out = sh(block, env, {"redis-cli ": f"redis-cli -p {port} "})
    else:  # the same two commands through redis-py
        lines = [ln.split("#")[0].strip() for ln in block.code.splitlines()]
        first = lines[0].split(" ", 4)
        r = service.store.redis
        r.xadd(first[2], {first[3]: first[4].strip("'")})
        out = str(r.blpop([lines[1].split()[2]], 60))
    reviewing.join(30)
    assert '"outcome":"approved"' in out.replace(" ", "")
    assert State.APPROVED is service.store.get("r-1").state


def _my_policy(tmp: Path) -> None:
    shutil.copy(DEFAULT_PATH, tmp / "my-policy.yaml")
    shutil.copy(DEFAULT_PATH.with_name("default_test.yaml"), tmp / "my-policy_test.yaml")


def run_policy_cli(block: Block, env: dict[str, str], tmp: Path, service: Service) -> None:
    _my_policy(tmp)
    out = sh(block, env)
    assert "is a valid policy" in out and "PASS" in out


def run_policy_python(block: Block, env: dict[str, str], tmp: Path, service: Service) -> None:
    _my_policy(tmp)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(block.code, f"{block.source}:{block.name}", "exec"), {})
    assert printed.getvalue().startswith("review high ['manager'] 1 refund-over-100")


def run_submit(block: Block, env: dict[str, str], tmp: Path, service: Service) -> None:
    out = sh(block, env)
    assert out.startswith("submitted r-42\n") and "r-42  [" in out


def run_audit(block: Block, env: dict[str, str], tmp: Path, service: Service) -> None:
    reviewing = approve_when_stored(service, "r-7", "bob")
    service.store.redis.xadd(
        "hitl:requests", {"request": '{"id": "r-7", "action": "refund", "params": {"amount": 250}}'}
    )
    reviewing.join(30)
    out = sh(block, env)
    assert out.count("OK") >= 2 and (tmp / "audit.jsonl").exists()


def run_short_timings(block: Block, env: dict[str, str], tmp: Path, service: Service) -> None:
    sh(block, env)


Runner = Callable[[Block, dict[str, str], Path, Service], None]
RUN: dict[str, Runner] = {
    "keys": run_keys,
    "tokens": run_tokens,
    "api-tokens": run_api_tokens,
    "agent": run_agent,
    "wire-protocol": run_wire,
    "policy-cli": run_policy_cli,
    "policy-python": run_policy_python,
    "submit": run_submit,
    "audit": run_audit,
    "short-timings": run_short_timings,
}


@pytest.mark.parametrize("name", sorted(RUN))
def test_example_runs_as_written(
    name: str, docs_env: dict[str, str], tmp_path: Path, service: Service
) -> None:
    """The example runs against a test Redis and does what the docs say."""
    block = blocks().get(name)
    assert block is not None, f"the docs-test block {name} disappeared from the docs"
    RUN[name](block, docs_env, tmp_path, service)
