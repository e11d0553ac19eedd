"""Tampering with the audit chain of a real run is caught, and the first bad seq is named:
by ``verify_entries``, by ``hitl audit verify`` on Redis, and on an exported file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from hitl.cli import main
from hitl.config import Settings
from hitl.errors import AlreadyDecided, NotAuthorized
from hitl.handlers import Decider
from hitl.models import Reviewer
from hitl.queue.audit import (
    ChainHead,
    Checkpoint,
    _body,
    _hash,
    split_export,
    verify_chain,
    verify_entries,
)
from hitl.queue.checkpoints import Checkpointer
from hitl.queue.intake import IntakeConsumer
from hitl.queue.keys import Keys
from hitl.queue.store import Store
from tests.conftest import KEYRING
from tests.scenarios.helpers import audit_entries, drain, xadd_raw

Entries = list[dict[str, Any]]
IDS = ["r-5", "r-11", "r-26"]
CHAIN = Keys().audit(0)
K = 5  # the (0-based) position that gets tampered with: seq 6


def _rehash(entry: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    """What anyone with Redis write access can do: relink and recompute the hash."""
    entry = dict(entry, prev_hash=prev_hash)
    entry["hash"] = _hash(prev_hash, _body(entry))
    return entry


def _modify(e: Entries) -> Entries:
    e[K] = dict(e[K], details={**e[K]["details"], "reason": "forged"})
    return e


def _delete(e: Entries) -> Entries:
    del e[K]
    return e


def _insert(e: Entries) -> Entries:
    forged = _rehash(dict(e[K], seq=K + 1, kind="approved", actor="mallory"), e[K - 1]["hash"])
    return [*e[:K], forged, *e[K:]]


def _swap(e: Entries) -> Entries:
    e[K], e[K + 1] = e[K + 1], e[K]
    return e


def _rehash_without_key(e: Entries) -> Entries:
    e[K] = _rehash(dict(e[K], actor="mallory"), e[K - 1]["hash"])
    return e


def _truncate(e: Entries) -> Entries:
    return e[:-3]


def _rebuild(e: Entries) -> Entries:
    """Edit seq K+1 and recompute every later hash: the links hold, only a checkpoint knows."""
    e[K] = dict(e[K], actor="mallory")
    prev = e[K - 1]["hash"]
    for i in range(K, len(e)):
        e[i] = _rehash(e[i], prev)
        prev = e[i]["hash"]
    return e


TAMPERING: list[tuple[str, Callable[[Entries], Entries], str]] = [
    ("modify details", _modify, "hash does not match the content"),
    ("delete one", _delete, "expected seq 6, found 7"),
    ("insert forged", _insert, "expected seq 7, found 6"),
    ("swap two", _swap, "expected seq 6, found 7"),
    ("recompute one hash", _rehash_without_key, "prev_hash does not link"),
    ("rebuild the chain", _rebuild, f"the chain was rewritten after seq {K}"),
    ("delete newest", _truncate, "were deleted"),
]


def _expected_seq(tamper: Callable[[Entries], Entries], history: Entries) -> int:
    """Where each tampering first shows: a re-linked entry only at the next link."""
    if tamper is _truncate:
        return len(history) - 2
    if tamper in (_insert, _rehash_without_key):
        return K + 2
    return K + 1


@pytest.fixture
def history(
    env: None, intake: IntakeConsumer, decider: Decider, store: Store, r: redis.Redis
) -> Entries:
    """A realistic chain: submissions, refusals, decisions with their deliveries (>= 10), all in
    chain 0 (the chain of a dead letter, and of these ids)."""
    assert [0, 0, 0] == [Keys.chain_of(i) for i in IDS]
    for rid in IDS:
        body = {"id": rid, "action": "refund", "params": {"amount": 9}}
        body["requested_by"] = "alice"
        xadd_raw(r, json.dumps(body))
    xadd_raw(r, "not json")
    drain(intake)
    with pytest.raises(NotAuthorized):
        decider.approve(IDS[0], Reviewer(user_id="alice"))
    decider.approve(IDS[0], Reviewer(user_id="bob"))
    decider.reject(IDS[1], Reviewer(user_id="carol"), "too much")
    with pytest.raises(AlreadyDecided):
        decider.approve(IDS[1], Reviewer(user_id="dave"))
    decider.modify(IDS[2], Reviewer(user_id="bob"), {"amount": 5})
    entries = audit_entries(r)
    assert len(entries) >= 10
    assert verify_entries(entries, expect_head=store.head()).ok
    # Checkpoints as `hitl serve` makes them every few seconds: one at seq K, one at the head.
    anchor = Settings.from_env().anchor()
    anchor.append(Checkpoint(K, entries[K - 1]["hash"], 1.0, CHAIN).signed(KEYRING))
    Checkpointer(store, KEYRING, anchor).checkpoint()
    return entries


def _rewrite_stream(r: redis.Redis, entries: Entries) -> None:
    """Replace chain 0 with ``entries`` (the head key is left as the store wrote it)."""
    r.delete(CHAIN)
    for entry in entries:
        r.xadd(CHAIN, {"e": json.dumps(entry)})


def _head(entries: Entries) -> ChainHead:
    return ChainHead(entries[-1]["seq"], entries[-1]["hash"])


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [pytest.param(fn, problem, id=name) for name, fn, problem in TAMPERING],
)
def test_verify_entries_names_the_first_bad_seq(
    history: Entries, store: Store, tamper: Callable[[Entries], Entries], problem: str
) -> None:
    """verify_chain (links + signed checkpoints) reports each kind of tampering at its seq."""
    head = _head(history)
    tampered = tamper([dict(e) for e in history])
    checkpoints = Settings.from_env().anchor().read()
    report = verify_chain(tampered, checkpoints, KEYRING.public(), chain=CHAIN, expect_head=head)
    expected_seq = _expected_seq(tamper, history)
    assert (False, expected_seq) == (report.ok, report.first_bad_seq)
    assert problem in report.problem


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [pytest.param(fn, problem, id=name) for name, fn, problem in TAMPERING],
)
def test_cli_verify_catches_tampering_in_redis(
    env: None,
    history: Entries,
    r: redis.Redis,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[Entries], Entries],
    problem: str,
) -> None:
    """`hitl audit verify` (against Redis and its head key) exits 1 naming the first bad seq."""
    _rewrite_stream(r, tamper([dict(e) for e in history]))
    assert 1 == main(["audit", "verify", "--json"])
    data = json.loads(capsys.readouterr().out)
    expected_seq = _expected_seq(tamper, history)
    assert (False, expected_seq) == (data["ok"], data["first_bad_seq"])
    assert problem in data["problem"]
    assert 1 == main(["audit", "verify"])
    assert capsys.readouterr().out.startswith(f"BROKEN at seq {expected_seq} of chain 0: ")


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [pytest.param(fn, problem, id=name) for name, fn, problem in TAMPERING],
)
def test_cli_verify_catches_tampering_in_an_exported_file(
    env: None,
    history: Entries,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[Entries], Entries],
    problem: str,
) -> None:
    """`hitl audit export F`, edit F, `hitl audit verify F --head SEQ:HASH` exits 1 at the seq."""
    path = tmp_path / "audit.jsonl"
    assert 0 == main(["audit", "export", str(path), "--json"])
    head = json.loads(capsys.readouterr().out)["head"]
    head_arg = f"{head['seq']}:{head['hash']}"
    assert 0 == main(["audit", "verify", str(path), "--head", head_arg])
    capsys.readouterr()

    exported, checkpoints = split_export(path.read_text().splitlines())
    assert (history, 2) == (exported, len(checkpoints))
    tampered = tamper(exported)
    lines = [json.dumps(e, sort_keys=True) for e in tampered]
    lines += [json.dumps({"checkpoint": c.to_json()}) for c in checkpoints]
    path.write_text("\n".join(lines) + "\n")
    assert 1 == main(["audit", "verify", str(path), "--head", head_arg, "--json"])
    data = json.loads(capsys.readouterr().out)
    expected_seq = _expected_seq(tamper, history)
    assert (False, expected_seq) == (data["ok"], data["first_bad_seq"])
    assert problem in data["problem"]


def test_exported_file_checks_truncation_with_the_public_key_only(
    history: Entries, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """Offline, holding only the public key, a truncated export fails against its checkpoints;
    stripped of them it is reported as unanchored, and --anchor brings them back."""
    path = tmp_path / "audit.jsonl"
    main(["audit", "export", str(path)])
    anchor = Settings.from_env().anchor().where
    entries, checkpoints = split_export(path.read_text().splitlines())
    monkeypatch.delenv("HITL_SIGNING_KEY_FILE")
    monkeypatch.delenv("HITL_REDIS_URL")
    monkeypatch.setenv("HITL_PUBLIC_KEY", KEYRING.public().to_env())
    kept = [json.dumps(e) for e in entries[:-3]]
    path.write_text(
        "\n".join(kept + [json.dumps({"checkpoint": c.to_json()}) for c in checkpoints])
    )
    capsys.readouterr()
    assert 1 == main(["audit", "verify", str(path)])
    assert "were deleted (truncation)" in capsys.readouterr().out
    path.write_text("\n".join(kept) + "\n")
    assert 0 == main(["audit", "verify", str(path)])
    assert "no signed checkpoint yet" in capsys.readouterr().out
    assert 1 == main(["audit", "verify", str(path), "--anchor", anchor])


def test_garbage_line_in_an_exported_file(
    env: None, history: Entries, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A line that is not JSON is reported at its position."""
    path = tmp_path / "audit.jsonl"
    main(["audit", "export", str(path)])
    lines = path.read_text().splitlines()
    lines[3] = "this is not an audit entry"
    path.write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert 1 == main(["audit", "verify", str(path)])
    assert capsys.readouterr().out.startswith("BROKEN at seq 4 of chain 0: ")


@pytest.fixture
def spread(
    env: None, intake: IntakeConsumer, decider: Decider, store: Store, r: redis.Redis
) -> int:
    """A run whose requests land in several chains, checkpointed; returns a chain other than 0
    that holds at least two requests (four entries)."""
    ids = [f"s-{i}" for i in range(30)]
    for rid in ids:
        xadd_raw(r, json.dumps({"id": rid, "action": "refund", "params": {"amount": 9}}))
    drain(intake)
    for rid in ids:
        decider.approve(rid, Reviewer(user_id="bob"))
    Checkpointer(store, KEYRING, Settings.from_env().anchor()).checkpoint()
    heads = store.head()
    assert 5 < len([n for n, h in heads.items() if h.seq])
    return next(n for n, h in heads.items() if n and h.seq >= 4)


@pytest.mark.parametrize(
    ("tamper", "seq", "problem"),
    [
        pytest.param(lambda e: [e[0], *e[2:]], 2, "expected seq 2, found 3", id="delete"),
        pytest.param(lambda e: [e[1], e[0], *e[2:]], 1, "expected seq 1, found 2", id="reorder"),
        pytest.param(lambda e: e[:-1], len, "were deleted (truncation)", id="truncate"),
    ],
)
def test_cli_verify_catches_tampering_in_any_chain(
    spread: int,
    r: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tamper: Callable[[Entries], Entries],
    seq: Any,
    problem: str,
) -> None:
    """A deletion, a reordering or a truncation in a chain other than 0 is caught by
    `hitl audit verify`, in Redis and in an export, and named with its chain."""
    key = Keys().audit(spread)
    entries = [json.loads(f["e"]) for _, f in r.xrange(key)]
    expected = seq(entries) if callable(seq) else seq
    r.delete(key)
    for entry in tamper(entries):
        r.xadd(key, {"e": json.dumps(entry)})
    path = tmp_path / "audit.jsonl"
    assert 0 == main(["audit", "export", str(path)])
    capsys.readouterr()
    for argv in (["audit", "verify", "--json"], ["audit", "verify", str(path), "--json"]):
        assert 1 == main(argv)
        data = json.loads(capsys.readouterr().out)
        assert (False, spread, expected) == (data["ok"], data["chain"], data["first_bad_seq"])
        assert problem in data["problem"]


def test_cli_verify_catches_a_deleted_chain(
    spread: int, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleting one chain whole, head key included, is a wipe its checkpoint still names."""
    r.delete(Keys().audit(spread), Keys().audit_head(spread))
    assert 1 == main(["audit", "verify"])
    out = capsys.readouterr().out
    assert out.startswith(f"BROKEN at seq 1 of chain {spread}: the audit chain is empty")
    assert "the chain was wiped" in out
