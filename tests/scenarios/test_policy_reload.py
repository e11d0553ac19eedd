"""A running service reloads its policy file, audits it, and keeps the last good policy on error."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from hitl.config import Settings
from hitl.policies import DEFAULT_PATH
from hitl.queue.store import Store
from hitl.service import Service
from tests.scenarios.helpers import audit_entries, audit_kinds


def _audit_kinds(r: redis.Redis) -> list[str]:
    return audit_kinds(r)


def test_reload_is_audited_and_a_bad_file_keeps_the_last_good_policy(
    r: redis.Redis, settings: Settings, store: Store, tmp_path: Path
) -> None:
    """Edit -> reloaded (new version, audited); break the file -> refused, old version kept."""
    path = tmp_path / "policy.yaml"
    path.write_text(Path(DEFAULT_PATH).read_text())
    service = Service(settings.model_copy(update={"policy_path": str(path)}), store=store)
    first = service.authority.version

    path.write_text(path.read_text().replace('version: "2025.1"', 'version: "2025.2"'))
    ok, message = service.reload_policy()
    assert ok, message
    second = service.authority.version
    assert first != second

    path.write_text(path.read_text() + "\nrules: [this is: not valid\n")
    ok, message = service.reload_policy()
    assert not ok
    assert "policy.yaml:" in message
    assert second == service.authority.version
    assert ["policy_reloaded", "policy_reload_failed"] == _audit_kinds(r)
    failed = audit_entries(r)[-1]
    assert second == failed["policy_version"]


def test_requests_keep_the_version_they_were_created_under(
    r: redis.Redis, settings: Settings, store: Store, tmp_path: Path
) -> None:
    """A request stored before a reload still carries the old policy version."""
    path = tmp_path / "policy.yaml"
    path.write_text(Path(DEFAULT_PATH).read_text())
    service = Service(settings.model_copy(update={"policy_path": str(path)}), store=store)
    consumer = service.consumers[0]
    consumer.ensure_group()
    body = {"id": "r-1", "action": "delete_volume", "params": {"volume_id": "v"}}
    r.xadd("hitl:requests", {"request": json.dumps(body)})
    consumer.run_once(block_ms=0)
    before = store.get("r-1").verdict.policy_version
    path.write_text(path.read_text().replace('version: "2025.1"', 'version: "2025.3"'))
    assert service.reload_policy()[0]
    assert before == store.get("r-1").verdict.policy_version
    assert before != service.authority.version
    consumer.close()
