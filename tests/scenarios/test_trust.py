"""The agent is not trusted: what an agent (or anyone with Redis write access) tries, refused.

Each test reproduces an attack from the Trust issue through the attacker's own door: raw Redis
commands, the SDK with only the public key, the CLI without the service's key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from hitl.cli import main
from hitl.client import Client, require_approval
from hitl.config import Settings
from hitl.errors import ConfigError, SignatureError
from hitl.keys import KeyRing
from hitl.models import Decision, Outcome
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from hitl.service import Service
from hitl.signing import sign_decision
from tests.conftest import KEYRING
from tests.redis_server import RedisServer
from tests.scenarios.helpers import (
    audit_kinds,
    consuming,
    drain,
    run_in_thread,
    wait_until,
    xadd_raw,
)


@pytest.fixture
def agent(redis_server: RedisServer) -> Client:
    """An agent's client: Redis and the public key, nothing that signs."""
    settings = Settings(redis_url=redis_server.url, public_keys=KEYRING.public())
    assert settings.keyring is None and settings.signing_key_file is None
    return Client(settings=settings, agent_id="infra-agent")


def _auto_approved(r: redis.Redis, pintake: IntakeConsumer, rid: str = "harmless") -> str:
    """A genuine, correctly signed auto-approval of a harmless request; returns its JSON."""
    xadd_raw(r, json.dumps({"id": rid, "action": "list_instances", "params": {}}))
    drain(pintake)
    raw = r.lpop(f"hitl:decision:{rid}")
    assert raw is not None
    assert Outcome.AUTO_APPROVED == Decision.model_validate_json(raw).outcome
    return str(raw)


def test_replayed_decision_of_another_request_is_refused(
    agent: Client, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """LPUSH the genuine auto-approval of `list_instances` into a pending `delete_volume`'s
    list: wait() raises SignatureError instead of returning an approval."""
    rid = agent.submit("delete_volume", {"volume_id": "vol-1"}, requested_by="alice")
    drain(pintake)
    assert [rid] == store.pending_ids()
    r.lpush(f"hitl:decision:{rid}", _auto_approved(r, pintake))
    with pytest.raises(SignatureError, match="while waiting for"):
        agent.wait(rid, timeout=2)
    assert [rid] == store.pending_ids()


def test_replay_never_runs_a_decorated_tool(
    agent: Client, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """@require_approval with a replayed approval: the tool body never runs."""
    ran: list[str] = []
    genuine = _auto_approved(r, pintake)

    @require_approval(agent, summary="Delete {volume_id}")
    def delete_volume(volume_id: str) -> str:
        ran.append(volume_id)
        return "deleted"

    with consuming(pintake), run_in_thread(lambda: delete_volume("vol-9")) as outcome:
        rid = wait_until(lambda: (store.pending_ids() or [None])[0], what="pending request")
        r.lpush(f"hitl:decision:{rid}", genuine)
    assert isinstance(outcome.error, SignatureError)
    assert [] == ran


def test_a_decision_for_someone_elses_request_under_my_id_is_refused(
    agent: Client, r: redis.Redis, pintake: IntakeConsumer
) -> None:
    """An attacker claims the id first with a harmless request that is auto-approved; the
    victim's `delete_volume` under that id is dead-lettered, and its wait() refuses the
    approval because the request digest is not the one it submitted."""
    xadd_raw(r, json.dumps({"id": "job-7", "action": "list_instances", "params": {}}))
    drain(pintake)
    rid = agent.submit("delete_volume", {"volume_id": "vol-1"}, id="job-7")
    drain(pintake)
    assert 1 == r.xlen("hitl:dead")
    with pytest.raises(SignatureError, match="different request"):
        agent.wait(rid, timeout=2)


def test_an_agent_cannot_sign_an_approval(
    agent: Client, r: redis.Redis, pintake: IntakeConsumer, store: Store
) -> None:
    """An agent that signs its own approval (with any key it can make) is not believed, and a
    store without the service's keyring cannot decide at all."""
    rid = agent.submit("delete_volume", {"volume_id": "vol-1"})
    drain(pintake)
    record = store.get(rid)
    own = KeyRing.generate()
    forged = sign_decision(
        Decision(request_id=rid, outcome=Outcome.APPROVED, params=record.params), own
    )
    r.lpush(f"hitl:decision:{rid}", forged.model_dump_json())
    with pytest.raises(SignatureError, match="not trusted"):
        agent.wait(rid, timeout=2)
    agent_store = Store(r, signer=None)
    with pytest.raises(ConfigError, match="holds no signing key"):
        agent_store.make_decision(record, Outcome.APPROVED)


def test_the_service_refuses_to_start_without_a_key(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """With a Redis URL and no keyring, `Service` (and `hitl serve`) refuse: nothing would be
    signed with an improvised key."""
    settings = Settings(redis_url=redis_server.url, data_dir=tmp_path / "empty")
    with pytest.raises(ConfigError, match="HITL_SIGNING_KEY_FILE"):
        Service(settings)


def test_cli_without_the_key_decides_nothing(
    monkeypatch: pytest.MonkeyPatch,
    redis_server: RedisServer,
    r: redis.Redis,
    pintake: IntakeConsumer,
    store: Store,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A reviewer's CLI never signs: without the service's API it decides nothing (exit 2, a
    clear message), `--as` is no identity, and minting a token needs the service's keyring.
    The request stays pending and the audit chain is unchanged."""
    xadd_raw(r, json.dumps({"id": "r-1", "action": "delete_volume", "params": {"volume_id": "v"}}))
    drain(pintake)
    before = audit_kinds(r)
    monkeypatch.setenv("HITL_REDIS_URL", redis_server.url)
    assert 2 == main(["approve", "r-1"])
    assert "HITL_URL" in capsys.readouterr().err
    assert 2 == main(["approve", "r-1", "--as", "bob"])
    assert "not --as" in capsys.readouterr().err
    assert 2 == main(["tokens", "create", "bob"])
    assert "no signing key" in capsys.readouterr().err
    assert (["r-1"], before) == (store.pending_ids(), audit_kinds(r))


def test_an_agent_without_a_public_key_is_told_at_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A verifying client with no public key fails when it is made, before it queues anything;
    `verify=False` is the explicit way to go without (never the default)."""
    settings = Settings(redis_url=redis_server.url, data_dir=tmp_path / "agent")
    with pytest.raises(ConfigError, match="HITL_PUBLIC_KEY"):
        Client(settings=settings)
    Client(settings=settings, verify=False).close()
