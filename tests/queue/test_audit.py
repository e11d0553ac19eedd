"""The hash-chained audit log: building entries and catching every kind of tampering."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import redis

from hitl.queue.audit import (
    GENESIS,
    AuditEvent,
    ChainHead,
    _body,
    _hash,
    build_entry,
    read_jsonl,
    verify_entries,
)
from hitl.queue.store import Store
from hitl.signing import derive_key
from tests.scenarios.helpers import audit_entries

KEY = derive_key(b"secret", "audit")


def _chain(n: int, key: bytes = KEY) -> list[dict[str, Any]]:
    head, out = ChainHead(), []
    for i in range(1, n + 1):
        event = AuditEvent("vote", f"r-{i}", f"user{i}", {"n": i, "approve": True}, "v1")
        entry = build_entry(head, event, 1000.0 + i, key)
        out.append(entry)
        head = ChainHead(entry["seq"], entry["hash"])
    return out


def _rehash(entry: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    """What someone without the audit key can do: relink and recompute the hash, not the MAC."""
    entry = dict(entry, prev_hash=prev_hash)
    entry["hash"] = _hash(prev_hash, _body(entry))
    return entry


def _head(entries: list[dict[str, Any]]) -> ChainHead:
    return ChainHead(entries[-1]["seq"], entries[-1]["hash"])


# -- building ----------------------------------------------------------------------------------


def test_entries_are_numbered_and_linked_from_genesis() -> None:
    """seq counts from 1, the first prev_hash is all zeros, each links to the one before."""
    chain = _chain(3)
    assert [1, 2, 3] == [e["seq"] for e in chain]
    assert [GENESIS, chain[0]["hash"], chain[1]["hash"]] == [e["prev_hash"] for e in chain]


def test_entry_fields() -> None:
    """An entry carries the documented fields and nothing else."""
    assert {
        "seq",
        "ts",
        "kind",
        "request_id",
        "actor",
        "details",
        "policy_version",
        "prev_hash",
        "hash",
        "mac",
    } == set(_chain(1)[0])


def test_head_round_trips() -> None:
    """The head key's JSON parses back; a missing head is the genesis."""
    head = ChainHead(7, "ab" * 32)
    assert head == ChainHead.parse(head.dumps())
    assert ChainHead(0, GENESIS) == ChainHead.parse(None)


# -- verifying ---------------------------------------------------------------------------------


def test_intact_chain_verifies() -> None:
    """An untouched chain is OK, against its head too."""
    chain = _chain(5)
    report = verify_entries(chain, KEY, expect_head=_head(chain))
    assert (True, 5, None, "") == (report.ok, report.entries, report.first_bad_seq, report.problem)
    assert str(report).startswith("OK: 5 entries")


def test_empty_chain_verifies() -> None:
    """No entries and no head is a valid (empty) chain."""
    assert verify_entries([], KEY, expect_head=ChainHead()).ok


def test_modified_details_are_caught() -> None:
    """Editing an entry's details breaks its hash at that seq."""
    chain = _chain(5)
    chain[2]["details"]["approve"] = False
    report = verify_entries(chain, KEY)
    assert (False, 3) == (report.ok, report.first_bad_seq)
    assert "modified" in report.problem
    assert str(report).startswith("BROKEN at seq 3")


@pytest.mark.parametrize("field", ["kind", "actor", "request_id", "ts", "policy_version"])
def test_modified_field_is_caught(field: str) -> None:
    """Every covered field is in the hash."""
    chain = _chain(4)
    chain[1][field] = "forged" if field != "ts" else 1.0
    assert 2 == verify_entries(chain, KEY).first_bad_seq


def test_deleted_entry_is_caught() -> None:
    """Removing an entry in the middle is reported at the position it left empty."""
    chain = _chain(5)
    del chain[2]
    report = verify_entries(chain, KEY)
    assert (False, 3) == (report.ok, report.first_bad_seq)
    assert "expected seq 3, found 4" in report.problem


def test_inserted_forged_entry_is_caught() -> None:
    """A forged entry with the right seq and link, made without the key, fails its MAC."""
    chain = _chain(4)
    forged = _rehash(dict(chain[2], kind="approved", actor="mallory"), chain[1]["hash"])
    renumbered = [_rehash(dict(e, seq=e["seq"] + 1), "") for e in chain[2:]]
    report = verify_entries([*chain[:2], forged, *renumbered], KEY)
    assert (False, 3) == (report.ok, report.first_bad_seq)
    assert "MAC" in report.problem


def test_inserted_copy_is_caught() -> None:
    """A replayed (duplicated) entry breaks the numbering where it was inserted."""
    chain = _chain(4)
    report = verify_entries([*chain[:2], chain[1], *chain[2:]], KEY)
    assert (False, 3) == (report.ok, report.first_bad_seq)
    assert "inserted or reordered" in report.problem


def test_swapped_entries_are_caught() -> None:
    """Swapping two entries is reported at the first of them."""
    chain = _chain(5)
    chain[1], chain[2] = chain[2], chain[1]
    report = verify_entries(chain, KEY)
    assert (False, 2) == (report.ok, report.first_bad_seq)


def test_swapped_seqs_with_original_numbers_are_caught() -> None:
    """Swapping contents but keeping the seq numbers breaks the prev_hash link."""
    chain = _chain(5)
    a, b = copy.deepcopy(chain[1]), copy.deepcopy(chain[2])
    chain[1] = dict(b, seq=2)
    chain[2] = dict(a, seq=3)
    report = verify_entries(chain, KEY)
    assert (False, 2) == (report.ok, report.first_bad_seq)
    assert "prev_hash" in report.problem


def test_recomputed_hash_without_key_fails_the_mac() -> None:
    """Editing an entry and recomputing its hash is caught by the MAC."""
    chain = _chain(5)
    chain[3] = _rehash(dict(chain[3], details={"n": 4, "approve": False}), chain[2]["hash"])
    report = verify_entries(chain, KEY)
    assert (False, 4) == (report.ok, report.first_bad_seq)
    assert "MAC does not match" in report.problem


def test_rewritten_tail_fails_at_the_first_rewrite() -> None:
    """Rebuilding the whole chain after an edit (without the key) fails at the edit."""
    chain = _chain(6)
    chain[2]["details"] = {"n": 3, "approve": False}
    prev = chain[1]["hash"]
    for i in range(2, 6):
        chain[i] = _rehash(chain[i], prev)
        prev = chain[i]["hash"]
    assert 3 == verify_entries(chain, KEY).first_bad_seq


def test_deleted_newest_entries_are_caught_against_the_head() -> None:
    """Truncation leaves a valid prefix: only the recorded head reveals it."""
    chain = _chain(6)
    head = _head(chain)
    assert verify_entries(chain[:4], KEY).ok
    report = verify_entries(chain[:4], KEY, expect_head=head)
    assert (False, 5) == (report.ok, report.first_bad_seq)
    assert "the newest entries were deleted" in report.problem


def test_head_that_does_not_match_is_caught() -> None:
    """A head with the same seq but another hash means the last entry is not the recorded one."""
    chain = _chain(3)
    report = verify_entries(chain, KEY, expect_head=ChainHead(3, "f" * 64))
    assert (False, 3) == (report.ok, report.first_bad_seq)


def test_wrong_key_fails_at_the_first_entry() -> None:
    """A chain checked with another key fails its first MAC."""
    report = verify_entries(_chain(3), derive_key(b"other", "audit"))
    assert (False, 1) == (report.ok, report.first_bad_seq)


def test_garbage_entry_is_reported() -> None:
    """A line that is not an audit entry is reported at its position."""
    chain = _chain(3)
    report = verify_entries([chain[0], {"hello": "world"}, chain[2]], KEY)
    assert (False, 2) == (report.ok, report.first_bad_seq)
    assert "no integer seq" in report.problem


def test_read_jsonl_keeps_bad_lines_as_unverifiable() -> None:
    """Exported lines that are not JSON objects still count, so the verifier names them."""
    chain = _chain(3)
    lines = [json.dumps(chain[0]), "not json", "", json.dumps([1]), json.dumps(chain[1])]
    entries = list(read_jsonl(lines))
    assert [1, None, None, 2] == [e["seq"] for e in entries]
    assert 2 == verify_entries(entries, KEY).first_bad_seq


# -- the chain the store writes ----------------------------------------------------------------


def test_store_appends_a_verifiable_chain(store: Store, r: redis.Redis) -> None:
    """Entries appended through the store verify against the head key, with the audit key."""
    store.append_events([AuditEvent("policy_reloaded", None, "operator", {"m": "ok"})])
    store.append_events([AuditEvent("vote", "r-1", "bob", {"é": "ü"}), AuditEvent("x", None, "y")])
    entries = audit_entries(r)
    assert [1, 2, 3] == [e["seq"] for e in entries]
    assert {"é": "ü"} == entries[1]["details"]
    assert verify_entries(entries, store.audit_key, expect_head=store.head()).ok
    assert not verify_entries(entries, store.decision_key).ok
