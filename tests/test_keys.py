"""Signing keys: files, rotation, what agents get, and where each process finds its keys."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from hitl.cli import main
from hitl.config import Settings
from hitl.errors import ConfigError
from hitl.keys import KeyRing, PublicKeys


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_writes_a_private_file_and_prints_the_public_half(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`hitl keys generate` writes mode 0600 and prints HITL_PUBLIC_KEY for agents."""
    path = tmp_path / "keys.json"
    code, out, _err = _run(capsys, "keys", "generate", str(path))
    ring = KeyRing.load(path)
    assert (0, 0o600) == (code, stat.S_IMODE(path.stat().st_mode))
    assert f"agents (verify only): HITL_PUBLIC_KEY={ring.public().to_env()}" in out
    code, _out, err = _run(capsys, "keys", "generate", str(path))
    assert (2, True) == (code, "exists; use `hitl keys rotate" in err)


def test_rotate_adds_an_active_key_and_keeps_the_old_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After rotation the file holds both keys, the new one active; retire drops the old."""
    path = tmp_path / "keys.json"
    _run(capsys, "keys", "generate", str(path))
    old = KeyRing.load(path).active
    code, _out, _err = _run(capsys, "keys", "rotate", str(path), "--json")
    ring = KeyRing.load(path)
    assert (0, {old, ring.active}) == (code, set(ring.keys))
    assert old != ring.active
    code, _out, err = _run(capsys, "keys", "retire", str(path), ring.active)
    assert (2, True) == (code, "is the active key" in err)
    assert 0 == _run(capsys, "keys", "retire", str(path), old)[0]
    assert [ring.active] == list(KeyRing.load(path).keys)


def test_public_prints_only_public_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hitl keys public --json` is the document agents get: no private material in it."""
    path = tmp_path / "keys.json"
    _run(capsys, "keys", "generate", str(path))
    code, out, _err = _run(capsys, "keys", "public", str(path), "--json")
    data = json.loads(out)
    assert (0, "hitl-public-keys/1") == (code, data["format"])
    assert "private" not in out
    assert KeyRing.load(path).public().ids == PublicKeys.from_json(data, "test").ids


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("k-1", "expected kid:base64"),
        ("k-1:!!!", "is not base64"),
        ("k-1:AAAA", "is 3 bytes; an Ed25519 key is 32"),
        ("{not json", "not JSON"),
        ('{"keys": []}', "expected"),
    ],
)
def test_bad_public_keys_are_configuration_errors(text: str, message: str) -> None:
    """A malformed HITL_PUBLIC_KEY says what is wrong."""
    with pytest.raises(ConfigError, match=message):
        PublicKeys.parse(text)


def test_a_damaged_keyring_file_is_a_configuration_error(tmp_path: Path) -> None:
    """Not JSON, not a keyring, or an active key that is missing: each named."""
    path = tmp_path / "keys.json"
    path.write_text("{")
    with pytest.raises(ConfigError, match="not JSON"):
        KeyRing.load(path)
    path.write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="is not a hitl keyring"):
        KeyRing.load(path)
    data = KeyRing.generate().to_json()
    data["active"] = "k-missing"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="the active key 'k-missing' is not in the file"):
        KeyRing.load(path)


def test_embedded_default_creates_one_keyring_and_its_public_half(tmp_path: Path) -> None:
    """No Redis URL: the first process creates signing-keys.json (0600) and public-keys.json;
    later processes, and agents on the box, find the same keys."""
    settings = Settings(data_dir=tmp_path)
    ring = settings.signing_keys()
    assert 0o600 == stat.S_IMODE((tmp_path / "signing-keys.json").stat().st_mode)
    assert ring.active == Settings(data_dir=tmp_path).signing_keys().active
    agent = Settings(data_dir=tmp_path, redis_url="redis://elsewhere:6379/0")
    assert ring.public().ids == agent.verify_keys().ids


def test_a_service_with_a_redis_url_needs_a_configured_key(tmp_path: Path) -> None:
    """With a Redis URL and no HITL_SIGNING_KEY_FILE: a clear error, no key is made up."""
    settings = Settings(redis_url="redis://r:6379/0", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="HITL_SIGNING_KEY_FILE"):
        settings.signing_keys()
    with pytest.raises(ConfigError, match="HITL_PUBLIC_KEY"):
        settings.verify_keys()
    assert not (tmp_path / "signing-keys.json").exists()


def test_agents_trust_exactly_the_configured_public_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HITL_PUBLIC_KEY (and a file) are what an agent trusts, even beside a local keyring."""
    Settings(data_dir=tmp_path).signing_keys()  # a local keyring the agent must not use
    configured = KeyRing.generate().public()
    monkeypatch.setenv("HITL_PUBLIC_KEY", configured.to_env())
    assert configured.ids == Settings.from_env(data_dir=tmp_path).verify_keys().ids
    extra = KeyRing.generate().public()
    file = tmp_path / "more.json"
    file.write_text(json.dumps(extra.to_json()))
    monkeypatch.setenv("HITL_PUBLIC_KEY_FILE", str(file))
    both: Any = Settings.from_env(data_dir=tmp_path).verify_keys().ids
    assert sorted(configured.ids + extra.ids) == both


def test_a_rotated_key_file_is_read_again(tmp_path: Path) -> None:
    """The service reads the keyring file when it changes (rotation without a restart)."""
    path = tmp_path / "keys.json"
    KeyRing.generate().save(path)
    settings = Settings(redis_url="redis://r:6379/0", signing_key_file=path)
    first = settings.signing_keys().active
    rotated = KeyRing.load(path).rotated()
    rotated.save(path, overwrite=True)
    os.utime(path, (path.stat().st_atime + 5, path.stat().st_mtime + 5))
    assert (rotated.active, True) == (settings.signing_keys().active, first in rotated.keys)


def test_each_deployment_gets_its_own_default_anchor(tmp_path: Path) -> None:
    """Two Redis deployments used from one machine never share a default anchor file."""
    a = Settings(redis_url="redis://10.0.0.1:6379/0", data_dir=tmp_path).anchor().where
    b = Settings(redis_url="redis://10.0.0.2:6379/0", data_dir=tmp_path).anchor().where
    embedded = Settings(data_dir=tmp_path).anchor().where
    assert str(tmp_path / "audit-anchors-10.0.0.1-6379-0.jsonl") == a
    assert len({a, b, embedded}) == 3
    explicit = Settings(audit_anchor=str(tmp_path / "x.jsonl"), data_dir=tmp_path).anchor().where
    assert str(tmp_path / "x.jsonl") == explicit
