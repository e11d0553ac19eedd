"""The hash-chained audit log: building entries, signed checkpoints, and catching every kind of
tampering (with the public key only)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import redis

from hitl.keys import KeyRing
from hitl.queue.audit import (
    GENESIS,
    AuditEvent,
    ChainHead,
    Checkpoint,
    FileAnchor,
    _body,
    _hash,
    build_entry,
    check_entry,
    encode_entry,
    heads_root,
    read_jsonl,
    split_export,
    verify_chain,
    verify_chains,
    verify_entries,
)
from hitl.queue.keys import Keys
from hitl.queue.store import Store
from tests.scenarios.helpers import audit_entries

RING = KeyRing.generate()
PUBLIC = RING.public()
CHAIN = "hitl:audit"


def _chain(n: int) -> list[dict[str, Any]]:
    head, out = ChainHead(), []
    for i in range(1, n + 1):
        event = AuditEvent("vote", f"r-{i}", f"user{i}", {"n": i, "approve": True}, "v1")
        entry = build_entry(head, event, 1000.0 + i)
        out.append(entry)
        head = ChainHead(entry["seq"], entry["hash"])
    return out


def _rehash(entry: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    """What anyone with Redis write access can do: relink and recompute the hash."""
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


def test_stored_text_is_the_hashed_body_plus_its_hash() -> None:
    """The text the chain stores is serialized once: the canonical body the hash covers, with
    ``hash`` appended, and it parses to an entry that verifies."""
    event = AuditEvent("submitted", "r-é", "agent", {"amount": 12.5, "note": "ü"}, "v1")
    head, text = encode_entry(ChainHead(), event, 1000.25)
    entry = json.loads(text)
    body = text[: text.index(',"hash":')] + "}"
    assert (head, body, "") == (
        ChainHead(1, entry["hash"]),
        _body(entry),
        check_entry(entry, ChainHead(), 1),
    )
    assert entry == build_entry(ChainHead(), event, 1000.25)


def test_entry_fields() -> None:
    """An entry carries the documented fields and nothing else."""
    assert {
        "chain",
        "seq",
        "ts",
        "kind",
        "request_id",
        "actor",
        "details",
        "policy_version",
        "prev_hash",
        "hash",
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
    report = verify_entries(chain, expect_head=_head(chain))
    assert (True, 5, None, "") == (report.ok, report.entries, report.first_bad_seq, report.problem)
    assert str(report).startswith("OK: 5 entries")


def test_empty_chain_verifies() -> None:
    """No entries and no head is a valid (empty) chain."""
    assert verify_entries([], expect_head=ChainHead()).ok


def test_modified_details_are_caught() -> None:
    """Editing an entry's details breaks its hash at that seq."""
    chain = _chain(5)
    chain[2]["details"]["approve"] = False
    report = verify_entries(chain)
    assert (False, 3) == (report.ok, report.first_bad_seq)
    assert "modified" in report.problem
    assert str(report).startswith("BROKEN at seq 3")


@pytest.mark.parametrize("field", ["kind", "actor", "request_id", "ts", "policy_version"])
def test_modified_field_is_caught(field: str) -> None:
    """Every covered field is in the hash."""
    chain = _chain(4)
    chain[1][field] = "forged" if field != "ts" else 1.0
    assert 2 == verify_entries(chain).first_bad_seq


def test_deleted_entry_is_caught() -> None:
    """Removing an entry in the middle is reported at the position it left empty."""
    chain = _chain(5)
    del chain[2]
    report = verify_entries(chain)
    assert (False, 3) == (report.ok, report.first_bad_seq)
    assert "expected seq 3, found 4" in report.problem


def test_inserted_forged_entry_is_caught() -> None:
    """A forged entry with the right seq and link, carelessly renumbered after, breaks a link."""
    chain = _chain(4)
    forged = _rehash(dict(chain[2], kind="approved", actor="mallory"), chain[1]["hash"])
    renumbered = [_rehash(dict(e, seq=e["seq"] + 1), "") for e in chain[2:]]
    report = verify_entries([*chain[:2], forged, *renumbered])
    assert (False, 4) == (report.ok, report.first_bad_seq)


def test_inserted_copy_is_caught() -> None:
    """A replayed (duplicated) entry breaks the numbering where it was inserted."""
    chain = _chain(4)
    report = verify_entries([*chain[:2], chain[1], *chain[2:]])
    assert (False, 3) == (report.ok, report.first_bad_seq)
    assert "inserted or reordered" in report.problem


def test_swapped_entries_are_caught() -> None:
    """Swapping two entries is reported at the first of them."""
    chain = _chain(5)
    chain[1], chain[2] = chain[2], chain[1]
    report = verify_entries(chain)
    assert (False, 2) == (report.ok, report.first_bad_seq)


def test_swapped_seqs_with_original_numbers_are_caught() -> None:
    """Swapping contents but keeping the seq numbers breaks the prev_hash link."""
    chain = _chain(5)
    a, b = copy.deepcopy(chain[1]), copy.deepcopy(chain[2])
    chain[1] = dict(b, seq=2)
    chain[2] = dict(a, seq=3)
    report = verify_entries(chain)
    assert (False, 2) == (report.ok, report.first_bad_seq)
    assert "prev_hash" in report.problem


def _checkpoint(chain: list[dict[str, Any]], upto: int, ring: KeyRing = RING) -> Checkpoint:
    entry = chain[upto - 1]
    return Checkpoint(entry["seq"], entry["hash"], 2000.0 + upto, CHAIN).signed(ring)


def _rebuilt(chain: list[dict[str, Any]], from_seq: int) -> list[dict[str, Any]]:
    """The chain with entry ``from_seq`` edited and every later hash recomputed (no key needed)."""
    out = copy.deepcopy(chain)
    out[from_seq - 1]["details"] = {"n": from_seq, "approve": False}
    prev = out[from_seq - 2]["hash"] if from_seq > 1 else GENESIS
    for i in range(from_seq - 1, len(out)):
        out[i] = _rehash(out[i], prev)
        prev = out[i]["hash"]
    return out


def test_rebuilt_chain_passes_the_links_but_not_a_checkpoint() -> None:
    """A rewrite that recomputes every hash links fine; the signed checkpoint catches it."""
    chain = _chain(6)
    cps = [_checkpoint(chain, 2), _checkpoint(chain, 4), _checkpoint(chain, 6)]
    forged = _rebuilt(chain, 3)
    assert verify_entries(forged).ok
    report = verify_chain(forged, cps, PUBLIC, chain=CHAIN)
    assert (False, 3) == (report.ok, report.first_bad_seq)
    assert "rewritten after seq 2" in report.problem


def test_checkpointed_chain_verifies_and_counts_the_unanchored_tail() -> None:
    """Every checkpoint matches; entries after the newest one are reported as not yet anchored."""
    chain = _chain(7)
    report = verify_chain(chain, [_checkpoint(chain, 3), _checkpoint(chain, 5)], PUBLIC)
    assert (True, 5, 2, 2) == (
        report.ok,
        report.anchored_seq,
        report.unanchored,
        report.checkpoints,
    )
    assert "2 newer entries not yet checkpointed" in str(report)


def test_truncation_is_caught_by_the_checkpoint() -> None:
    """Deleting the newest entries (and rewriting the head) is named at the first deleted seq."""
    chain = _chain(6)
    report = verify_chain(chain[:4], [_checkpoint(chain, 6)], PUBLIC)
    assert (False, 5) == (report.ok, report.first_bad_seq)
    assert "entries 5..6 were deleted" in report.problem


def test_wipe_is_caught_by_the_checkpoint() -> None:
    """Deleting the whole chain and its head no longer verifies as 'OK: 0 entries'."""
    chain = _chain(3)
    report = verify_chain([], [_checkpoint(chain, 3)], PUBLIC)
    assert (False, 1) == (report.ok, report.first_bad_seq)
    assert "wiped" in report.problem


def test_forged_checkpoint_is_refused() -> None:
    """A checkpoint signed by another key (or edited) does not count; it is reported."""
    chain = _chain(3)
    forged = _checkpoint(chain, 3, KeyRing.generate())
    report = verify_chain(chain, [forged], PUBLIC)
    assert (False, 3) == (report.ok, report.first_bad_seq)
    assert "does not verify" in report.problem
    edited = Checkpoint(
        2, chain[1]["hash"], 1.0, CHAIN, RING.active, _checkpoint(chain, 3).signature
    )
    assert not verify_chain(chain, [edited], PUBLIC).ok


def test_checkpoints_of_another_chain_are_ignored() -> None:
    """A deployment with another prefix keeps its own checkpoints in the same anchor."""
    chain = _chain(3)
    other = Checkpoint(9, "f" * 64, 1.0, "acme:audit").signed(RING)
    report = verify_chain(chain, [other, _checkpoint(chain, 3)], PUBLIC, chain=CHAIN)
    assert (True, 1) == (report.ok, report.checkpoints)


def test_file_anchor_appends_and_reads(tmp_path: Any) -> None:
    """The file anchor keeps one JSON line per checkpoint, in order."""
    chain = _chain(3)
    anchor = FileAnchor(tmp_path / "a" / "anchors.jsonl")
    assert [] == anchor.read()
    first, second = _checkpoint(chain, 1), _checkpoint(chain, 3)
    anchor.append(first)
    anchor.append(second)
    assert [first, second] == anchor.read()


def test_export_lines_carry_entries_and_checkpoints() -> None:
    """An export holds both; split_export separates them and read_jsonl skips checkpoints."""
    chain = _chain(2)
    cp = _checkpoint(chain, 2)
    lines = [json.dumps(e) for e in chain] + [json.dumps({"checkpoint": cp.to_json()})]
    entries, cps = split_export(lines)
    assert (chain, [cp]) == (entries, cps)
    assert chain == list(read_jsonl(lines))


def test_garbage_entry_is_reported() -> None:
    """A line that is not an audit entry is reported at its position."""
    chain = _chain(3)
    report = verify_entries([chain[0], {"hello": "world"}, chain[2]])
    assert (False, 2) == (report.ok, report.first_bad_seq)
    assert "no integer seq" in report.problem


def test_read_jsonl_keeps_bad_lines_as_unverifiable() -> None:
    """Exported lines that are not JSON objects still count, so the verifier names them."""
    chain = _chain(3)
    lines = [json.dumps(chain[0]), "not json", "", json.dumps([1]), json.dumps(chain[1])]
    entries = list(read_jsonl(lines))
    assert [1, None, None, 2] == [e["seq"] for e in entries]
    assert 2 == verify_entries(entries).first_bad_seq


# -- a log of several chains ------------------------------------------------------------------

NAMES = Keys().audit_chains


def _log(sizes: dict[int, int]) -> list[dict[str, Any]]:
    """A sharded log, as an export holds it: chain 0 first, each chain in its own order."""
    out = []
    for n, size in sorted(sizes.items()):
        head = ChainHead()
        for i in range(1, size + 1):
            event = AuditEvent("vote", f"r-{n}-{i}", "bob", {"i": i}, "v1")
            entry = build_entry(head, event, 1000.0 + i, n)
            out.append(entry)
            head = ChainHead(entry["seq"], entry["hash"])
    return out


def _heads(entries: list[dict[str, Any]]) -> dict[int, ChainHead]:
    return {e["chain"]: ChainHead(e["seq"], e["hash"]) for e in entries}


def _log_checkpoints(entries: list[dict[str, Any]]) -> list[Checkpoint]:
    return [
        Checkpoint(h.seq, h.hash, 1.0, NAMES[n]).signed(RING) for n, h in _heads(entries).items()
    ]


def test_every_chain_of_a_log_verifies_and_the_root_pins_them_all() -> None:
    """A log of several chains verifies against each chain's head and checkpoints; the root
    counts every entry and changes when any chain's head does."""
    log = _log({0: 2, 3: 4, 15: 1})
    cps = _log_checkpoints(log)
    report = verify_chains(log, cps, PUBLIC, names=NAMES, expect_head=_heads(log))
    root = heads_root(_heads(log))
    assert (True, 7, 3, 7, 0, root) == (
        report.ok,
        report.entries,
        report.checkpoints,
        report.anchored_seq,
        report.unanchored,
        report.head,
    )
    assert str(report).startswith(f"OK: 7 entries in 16 chains, root seq 7 hash {root.hash}")
    assert verify_chains(log, cps, PUBLIC, names=NAMES, expect_head=root).ok
    assert root != heads_root(_heads(log[:-1]))
    assert _heads(log)[0] == heads_root({0: _heads(log)[0]})  # one chain is its own root


@pytest.mark.parametrize(
    ("tamper", "chain", "seq", "problem"),
    [
        pytest.param(lambda e: e[:2] + e[3:], 3, 1, "expected seq 1, found 2", id="delete"),
        pytest.param(lambda e: e[:3] + [e[4], e[3]] + e[5:], 3, 2, "found 3", id="reorder"),
        pytest.param(lambda e: e[:5] + e[6:], 3, 4, "were deleted (truncation)", id="truncate"),
        pytest.param(lambda e: e[:2] + e[6:], 3, 1, "the chain was wiped", id="wipe-a-chain"),
        pytest.param(
            lambda e: [
                dict(x, details={"i": 0}) if x["seq"] == 2 and x["chain"] == 15 else x for x in e
            ],
            15,
            2,
            "the entry was modified",
            id="modify",
        ),
    ],
)
def test_tampering_in_any_chain_is_named_with_its_chain(
    tamper: Any, chain: int, seq: int, problem: str
) -> None:
    """Deleting, reordering, truncating or editing entries of one chain (or deleting it all)
    breaks that chain, reported as 'BROKEN at seq N of chain C'."""
    log = _log({0: 2, 3: 4, 15: 3})
    report = verify_chains(tamper(log), _log_checkpoints(log), PUBLIC, names=NAMES)
    assert (False, chain, seq) == (report.ok, report.chain, report.first_bad_seq)
    assert problem in report.problem
    assert str(report).startswith(f"BROKEN at seq {seq} of chain {chain}: ")


def test_an_entry_moved_to_another_chain_is_caught() -> None:
    """The chain number is hashed into each entry: relabelling it (or XADDing it to another
    chain's stream) breaks the chain it lands in."""
    log = _log({3: 2, 4: 2})
    moved = [*log[:2], dict(log[2], chain=3), log[3]]
    report = verify_chains(moved, names=NAMES)
    assert (False, 3, 3) == (report.ok, report.chain, report.first_bad_seq)
    assert "was moved" not in report.problem or "chain" in report.problem
    relabelled = verify_chain([log[0]], [], PUBLIC, chain_no=4)
    assert (False, "entry of chain 3 found in chain 4: it was moved") == (
        relabelled.ok,
        relabelled.problem,
    )


def test_deleting_a_whole_chain_and_its_head_is_caught_by_the_heads_and_checkpoints() -> None:
    """Without checkpoints a head key that still counts entries catches a deleted chain; with
    its head deleted too, the chain's signed checkpoint does."""
    log = _log({0: 1, 7: 3})
    gone = log[:1]
    heads = _heads(log)
    report = verify_chains(gone, expect_head=heads)
    assert (False, 7, 1) == (report.ok, report.chain, report.first_bad_seq)
    assert "the newest entries were deleted" in report.problem
    wiped = verify_chains(gone, _log_checkpoints(log), PUBLIC, names=NAMES)
    assert (False, 7, "wiped") == (wiped.ok, wiped.chain, wiped.problem[-5:])


def test_an_entry_naming_a_chain_the_log_does_not_have_is_refused() -> None:
    """Chain numbers beyond the log's chains are reported, not ignored."""
    stray = build_entry(ChainHead(), AuditEvent("x", None, "y"), 1.0, 16)
    report = verify_chains([stray], names=NAMES)
    assert (False, 16) == (report.ok, report.chain)
    assert "the log has chains 0..15" in report.problem


# -- the chain the store writes ----------------------------------------------------------------


def test_store_appends_a_verifiable_chain(store: Store, r: redis.Redis) -> None:
    """Entries appended through the store verify against the head keys; an event goes to its
    request's chain, one about no request to chain 0, each chain numbered from 1."""
    store.append_events([AuditEvent("policy_reloaded", None, "operator", {"m": "ok"})])
    store.append_events([AuditEvent("vote", "r-1", "bob", {"é": "ü"}), AuditEvent("x", None, "y")])
    entries = audit_entries(r)
    chain = Keys.chain_of("r-1")
    assert 0 != chain
    assert [(0, 1), (0, 2), (chain, 1)] == sorted((e["chain"], e["seq"]) for e in entries)
    assert [{"é": "ü"}] == [e["details"] for e in entries if e["request_id"] == "r-1"]
    assert verify_entries(entries, expect_head=store.head()).ok
    heads = store.head()
    assert (2, 1, 16) == (heads[0].seq, heads[chain].seq, len(heads))
