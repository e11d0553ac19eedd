"""The hash-chained audit log (``hitl:audit``) and its offline verifier.

Each entry is ``{seq, ts, kind, request_id, actor, details, policy_version, prev_hash, hash,
mac}``. ``hash = sha256(prev_hash + canonical_json(entry without hash and mac))`` links every
entry to the one before, and ``mac = HMAC-SHA256(audit_key, hash)`` means nobody without the key
can rebuild a consistent chain after editing it. The chain starts at ``prev_hash = "0" * 64``.

Appends happen inside the same MULTI/EXEC as the state change they record (see
:mod:`hitl.queue.store`), conditional on the head key ``hitl:audit:head``, so an entry exists
exactly when its change does.

Verify a chain read from Redis or from an exported JSON-lines file::

    report = verify_entries(entries, audit_key)
    if not report.ok:
        print(report.first_bad_seq, report.problem)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hitl.signing import canonical_json

__all__ = [
    "GENESIS",
    "AuditEvent",
    "ChainHead",
    "VerifyReport",
    "build_entry",
    "verify_entries",
]

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    """Something that happened, before it is numbered and chained."""

    kind: str
    request_id: str | None
    actor: str
    details: dict[str, Any] = field(default_factory=dict)
    policy_version: str = ""


@dataclass(frozen=True)
class ChainHead:
    seq: int = 0
    hash: str = GENESIS

    @classmethod
    def parse(cls, raw: str | bytes | None) -> ChainHead:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(seq=int(data["seq"]), hash=str(data["hash"]))

    def dumps(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash})


def _body(entry: dict[str, Any]) -> str:
    return canonical_json({k: v for k, v in entry.items() if k not in ("hash", "mac")})


def _hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _mac(key: bytes, entry_hash: str) -> str:
    return hmac.new(key, entry_hash.encode(), hashlib.sha256).hexdigest()


def build_entry(head: ChainHead, event: AuditEvent, ts: float, key: bytes) -> dict[str, Any]:
    """The next entry after ``head``: numbered, linked, hashed and MACed."""
    entry: dict[str, Any] = {
        "seq": head.seq + 1,
        "ts": round(ts, 6),
        "kind": event.kind,
        "request_id": event.request_id,
        "actor": event.actor,
        "details": event.details,
        "policy_version": event.policy_version,
        "prev_hash": head.hash,
    }
    entry["hash"] = _hash(head.hash, _body(entry))
    entry["mac"] = _mac(key, entry["hash"])
    return entry


@dataclass
class VerifyReport:
    """The verdict on a chain. ``first_bad_seq`` is the first position where it breaks."""

    ok: bool
    entries: int
    head: ChainHead
    first_bad_seq: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"OK: {self.entries} entries, head seq {self.head.seq} hash {self.head.hash}"
        return f"BROKEN at seq {self.first_bad_seq}: {self.problem}"


def verify_entries(
    entries: Iterable[dict[str, Any]],
    key: bytes,
    expect_head: ChainHead | None = None,
) -> VerifyReport:
    """Check numbering, links, hashes and MACs; name the first bad seq.

    A modified entry fails its hash (or its MAC, if the hash was recomputed); a deleted,
    inserted or reordered entry breaks the numbering and the ``prev_hash`` link. Deleting the
    newest entries is only visible against a known head: pass ``expect_head`` (the online
    verifier passes the head key kept in Redis).
    """
    prev = ChainHead()
    count = 0
    for position, entry in enumerate(entries, start=1):
        count = position
        problem = _check(entry, prev, position, key)
        if problem:
            return VerifyReport(False, count, prev, first_bad_seq=position, problem=problem)
        prev = ChainHead(position, str(entry["hash"]))
    if expect_head is not None and (expect_head.seq, expect_head.hash) != (prev.seq, prev.hash):
        if expect_head.seq > prev.seq:
            problem = (
                f"the chain ends at seq {prev.seq} but its head says {expect_head.seq}: "
                "the newest entries were deleted"
            )
            return VerifyReport(False, count, prev, first_bad_seq=prev.seq + 1, problem=problem)
        problem = f"the last entry (seq {prev.seq}) does not match the recorded head"
        return VerifyReport(False, count, prev, first_bad_seq=prev.seq, problem=problem)
    return VerifyReport(True, count, prev)


def _check(entry: dict[str, Any], prev: ChainHead, position: int, key: bytes) -> str:
    seq = entry.get("seq")
    if not isinstance(seq, int):
        return "entry has no integer seq (not an audit entry, or damaged)"
    if seq != position:
        if seq > position:
            return f"expected seq {position}, found {seq}: entries deleted or reordered"
        return f"expected seq {position}, found {seq}: an entry was inserted or reordered"
    if entry.get("prev_hash") != prev.hash:
        return "prev_hash does not link to the entry before: inserted, deleted or reordered"
    try:
        recomputed = _hash(prev.hash, _body(entry))
    except (TypeError, ValueError) as exc:
        return f"entry cannot be canonicalized: {exc}"
    if recomputed != entry.get("hash"):
        return "hash does not match the content: the entry was modified"
    if not hmac.compare_digest(_mac(key, recomputed), str(entry.get("mac", ""))):
        return "MAC does not match: the entry was rewritten without the audit key (or wrong key)"
    return ""


def read_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Entries from an exported file; a line that is not JSON becomes an unverifiable entry."""
    for line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            yield {"seq": None, "_raw": line}
            continue
        yield value if isinstance(value, dict) else {"seq": None, "_raw": line}
