"""The hash-chained audit log, its signed checkpoints and the offline verifier.

The log is :data:`~hitl.queue.keys.AUDIT_CHAINS` chains sharded by request id
(``hitl:audit:{n}``), each verified on its own exactly like one chain (:func:`verify_chains`).
Each entry is ``{chain, seq, ts, kind, request_id, actor, details, policy_version, prev_hash,
hash}`` with ``hash = sha256(prev_hash + canonical_json(entry without hash))``: every entry is
linked to the one before, so editing one breaks every later link. A hash chain alone does not
stop someone with Redis write access from rebuilding it (or truncating it, or deleting it): that
is what **checkpoints** are for. At an interval (and on demand) the service signs
``{seq, hash, ts, chain}`` of each chain's head with its Ed25519 key and appends the checkpoint
to an **anchor** outside Redis (a file, or an S3-compatible bucket). The verifier then checks
each chain against every checkpoint, with only the public key::

    report = verify_chain(entries, checkpoints, public_keys)
    if not report.ok:
        print(report.first_bad_seq, report.problem)

Appends happen inside the same MULTI/EXEC as the state change they record (see
:mod:`hitl.queue.store`), conditional on the chain's head key ``hitl:audit:{n}:head``, so an
entry exists exactly when its change does. The checkpointer re-checks the entries since the
last checkpoint before it signs, so a checkpoint never anchors a history rewritten in between.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hitl.errors import AuditError, ConfigError
from hitl.keys import KeyRing, PublicKeys
from hitl.queue.keys import AUDIT_CHAINS
from hitl.signing import canonical_bytes, canonical_json

__all__ = [
    "GENESIS",
    "AnchorSink",
    "AuditEvent",
    "ChainHead",
    "Checkpoint",
    "FileAnchor",
    "VerifyReport",
    "build_entry",
    "check_entry",
    "encode_entry",
    "group_chains",
    "heads_root",
    "open_anchor",
    "read_jsonl",
    "verify_chain",
    "verify_chains",
    "verify_entries",
]

GENESIS = "0" * 64
CHECKPOINT_DOMAIN = b"hitl-checkpoint/1\n"


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


def build_entry(head: ChainHead, event: AuditEvent, ts: float, chain: int = 0) -> dict[str, Any]:
    """The next entry after ``head``: numbered, linked and hashed."""
    return json.loads(encode_entry(head, event, ts, chain)[1])  # type: ignore[no-any-return]


def encode_entry(
    head: ChainHead, event: AuditEvent, ts: float, chain: int = 0
) -> tuple[ChainHead, str]:
    """The next entry after ``head`` in chain number ``chain``, as the JSON text the chain
    stores, and the new head.

    The text is the canonical body (what the hash covers) with ``hash`` appended: the body is
    serialized once, for hashing and for storage alike (a reader parses it like any entry). The
    chain number is hashed too, so an entry cannot be moved to another chain unnoticed.
    """
    body = canonical_json(
        {
            "chain": chain,
            "seq": head.seq + 1,
            "ts": round(ts, 6),
            "kind": event.kind,
            "request_id": event.request_id,
            "actor": event.actor,
            "details": event.details,
            "policy_version": event.policy_version,
            "prev_hash": head.hash,
        }
    )
    digest = _hash(head.hash, body)
    return ChainHead(head.seq + 1, digest), f'{body[:-1]},"hash":"{digest}"}}'


# -- checkpoints -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: "chain ``chain`` had ``seq`` entries, the last hashed ``hash``, at
    ``ts``"."""

    seq: int
    hash: str
    ts: float
    chain: str
    key_id: str = ""
    signature: str = ""

    def message(self) -> bytes:
        body = {"seq": self.seq, "hash": self.hash, "ts": self.ts, "chain": self.chain}
        return CHECKPOINT_DOMAIN + canonical_bytes(body)

    def signed(self, keyring: KeyRing) -> Checkpoint:
        kid, sig = keyring.sign(self.message())
        return Checkpoint(self.seq, self.hash, self.ts, self.chain, kid, sig)

    def verifies(self, keys: PublicKeys) -> bool:
        return keys.verify(self.key_id, self.message(), self.signature)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "ts": self.ts,
            "chain": self.chain,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint:
        if not isinstance(data, dict):
            raise ValueError("a checkpoint is a JSON object")
        return cls(
            seq=int(data["seq"]),
            hash=str(data["hash"]),
            ts=float(data["ts"]),
            chain=str(data.get("chain", "")),
            key_id=str(data.get("key_id", "")),
            signature=str(data.get("signature", "")),
        )


class AnchorSink(Protocol):
    """Somewhere outside Redis that keeps checkpoints (append-only by its own means)."""

    @property
    def where(self) -> str: ...

    def append(self, checkpoint: Checkpoint) -> None: ...

    def read(self) -> list[Checkpoint]: ...


class FileAnchor:
    """Checkpoints as JSON lines in a local file (put it on another disk, or ship it off-box).

    Each checkpoint is one ``write`` of one line with ``O_APPEND`` and an ``fsync``, so several
    writers (service replicas on one host) never interleave.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def where(self) -> str:
        return str(self.path)

    def append(self, checkpoint: Checkpoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(checkpoint.to_json(), sort_keys=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[Checkpoint]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"audit anchor {self.path}: {exc.strerror or exc}") from None
        return _parse_checkpoints(text.splitlines(), str(self.path))


def _parse_checkpoints(lines: Iterable[str], where: str) -> list[Checkpoint]:
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(Checkpoint.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(
                f"{where}:{n}: not a checkpoint ({exc}): the anchor is damaged"
            ) from None
    return out


def open_anchor(spec: str) -> AnchorSink:
    """An anchor from ``HITL_AUDIT_ANCHOR``: a path, ``file:///path`` or ``s3://bucket/key``."""
    if spec.startswith("s3://"):
        from hitl.queue.anchor_s3 import S3Anchor

        return S3Anchor.from_url(spec)
    if spec.startswith("file://"):
        spec = spec.removeprefix("file://")
    if "://" in spec:
        raise ConfigError(f"HITL_AUDIT_ANCHOR {spec!r}: expected a file path or s3://bucket/key")
    return FileAnchor(spec)


# -- verification ------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    """The verdict on a chain. ``first_bad_seq`` is the first position that cannot be trusted."""

    ok: bool
    entries: int
    head: ChainHead
    first_bad_seq: int | None = None
    problem: str = ""
    anchored_seq: int = 0
    """The newest checkpoint the chain matches (0: none)."""
    checkpoints: int = 0
    unanchored: int = 0
    """Entries after the newest checkpoint: linked, but not yet covered by a signature."""
    chains: int = 1
    chain: int | None = None
    """The chain ``first_bad_seq`` is in, when several were verified."""

    def __str__(self) -> str:
        if not self.ok:
            where = f" of chain {self.chain}" if self.chain is not None else ""
            return f"BROKEN at seq {self.first_bad_seq}{where}: {self.problem}"
        text = f"OK: {self.entries} entries, head seq {self.head.seq} hash {self.head.hash}"
        if self.chains > 1:
            text = (
                f"OK: {self.entries} entries in {self.chains} chains, root seq {self.head.seq} "
                f"hash {self.head.hash}"
            )
        if self.checkpoints:
            covered = (
                f"covering {self.anchored_seq} entries"
                if self.chains > 1
                else f"up to seq {self.anchored_seq}"
            )
            text += f"; anchored by {self.checkpoints} signed checkpoints {covered}"
            if self.unanchored:
                text += f" ({self.unanchored} newer entries not yet checkpointed)"
        else:
            text += "; no signed checkpoint yet (truncation or a rebuilt chain cannot be ruled out)"
        return text


def heads_root(heads: Mapping[int, ChainHead]) -> ChainHead:
    """One head for several chains: every entry counted, and a hash over each chain's head (a
    single chain 0 is its own root), so that one ``SEQ:HASH`` pins them all."""
    moved = {n: h for n, h in heads.items() if h.seq}
    if set(moved) <= {0}:
        return moved.get(0, ChainHead())
    text = "".join(f"{n}:{h.seq}:{h.hash}\n" for n, h in sorted(moved.items()))
    return ChainHead(sum(h.seq for h in moved.values()), hashlib.sha256(text.encode()).hexdigest())


def group_chains(entries: Iterable[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """Entries by chain number, each chain in the order given. An entry with no integer
    ``chain`` (an older entry, a damaged line) stays in the chain of the entry before it."""
    groups: dict[int, list[dict[str, Any]]] = {}
    current = 0
    for entry in entries:
        chain = entry.get("chain")
        if isinstance(chain, int) and not isinstance(chain, bool):
            current = chain
        groups.setdefault(current, []).append(entry)
    return groups


def verify_chains(
    entries: Iterable[dict[str, Any]],
    checkpoints: Iterable[Checkpoint] | None = None,
    keys: PublicKeys | None = None,
    *,
    names: Sequence[str] = (),
    expect_head: ChainHead | Mapping[int, ChainHead] | None = None,
) -> VerifyReport:
    """Every chain of a sharded log (``names[n]`` is chain ``n``'s name in the anchor): each is
    checked as :func:`verify_chain` checks one, against its own checkpoints and head.

    ``expect_head`` is either every chain's head (the head keys in Redis) or the
    :func:`heads_root` of them all (``--head SEQ:HASH``). Without ``checkpoints`` only links
    and heads are checked. The first broken chain is reported, with its number.
    """
    groups = group_chains(entries)
    count = len(names) or AUDIT_CHAINS
    cps = list(checkpoints or [])
    heads: dict[int, ChainHead] = {}
    total = VerifyReport(True, 0, ChainHead(), chains=count)
    for n in sorted(set(range(count)) | set(groups)):
        if not 0 <= n < count:
            problem = f"entries name chain {n}, but the log has chains 0..{count - 1}"
            return VerifyReport(
                False, total.entries, ChainHead(), 1, problem, chains=count, chain=n
            )
        own = expect_head.get(n) if isinstance(expect_head, Mapping) else None
        chain = groups.get(n, [])
        if keys is None:
            report = verify_entries(chain, own, chain_no=n)
        else:
            report = verify_chain(chain, cps, keys, chain=names[n], expect_head=own, chain_no=n)
        if not report.ok:
            report.chains, report.chain = count, n
            return report
        heads[n] = report.head
        total.entries += report.entries
        total.checkpoints += report.checkpoints
        total.anchored_seq += report.anchored_seq
        total.unanchored += report.unanchored
    total.head = heads_root(heads)
    if isinstance(expect_head, ChainHead) and expect_head != total.head:
        problem = (
            f"the chains end at root seq {total.head.seq} hash {total.head.hash}, not at the "
            f"expected seq {expect_head.seq} hash {expect_head.hash}: entries were added or deleted"
        )
        return VerifyReport(False, total.entries, total.head, None, problem, chains=count)
    return total


def verify_entries(
    entries: Iterable[dict[str, Any]],
    expect_head: ChainHead | Mapping[int, ChainHead] | None = None,
    *,
    chain_no: int | None = None,
) -> VerifyReport:
    """Numbering, links and hashes, and (optionally) the head the chain must end at.

    A modified entry fails its hash; a deleted, inserted or reordered entry breaks the numbering
    and the ``prev_hash`` link. A chain rebuilt from scratch (every hash recomputed), a
    truncation or a wipe is only visible against checkpoints: see :func:`verify_chain`.
    Entries of several chains (a head per chain) are checked chain by chain
    (:func:`verify_chains`); ``chain_no`` says the entries are all of that one chain.
    """
    if chain_no is None:
        entries = list(entries)
        if isinstance(expect_head, Mapping) or set(group_chains(entries)) - {0}:
            return verify_chains(entries, expect_head=expect_head)
        chain_no = 0
    if isinstance(expect_head, Mapping):
        expect_head = expect_head.get(chain_no)
    report, _ = _walk(entries, chain_no)
    if not report.ok or expect_head is None:
        return report
    prev = report.head
    if (expect_head.seq, expect_head.hash) != (prev.seq, prev.hash):
        if expect_head.seq > prev.seq:
            problem = (
                f"the chain ends at seq {prev.seq} but its head says {expect_head.seq}: "
                "the newest entries were deleted"
            )
            return VerifyReport(False, report.entries, prev, prev.seq + 1, problem)
        problem = f"the last entry (seq {prev.seq}) does not match the recorded head"
        return VerifyReport(False, report.entries, prev, prev.seq, problem)
    return report


def verify_chain(
    entries: Iterable[dict[str, Any]],
    checkpoints: Iterable[Checkpoint],
    keys: PublicKeys,
    *,
    chain: str | None = None,
    expect_head: ChainHead | None = None,
    chain_no: int = 0,
) -> VerifyReport:
    """The chain, checked against every signed checkpoint (only public keys are needed).

    Reports, naming the first sequence number that cannot be trusted:

    - a checkpoint whose signature does not verify (the anchor itself was tampered with);
    - a **wipe**: checkpoints exist but the chain is empty;
    - a **truncation**: the chain ends before a checkpoint's ``seq``;
    - a **rewrite**: the entry at a checkpoint's ``seq`` does not have its hash (the chain was
      rebuilt from an earlier point; the first bad seq is just after the last checkpoint that
      still matches).
    """
    report, hashes = _walk(entries, chain_no)
    cps = sorted((c for c in checkpoints if chain is None or c.chain == chain), key=lambda c: c.seq)
    for cp in cps:
        if not cp.verifies(keys):
            return _broken(
                report,
                cp.seq,
                f"the checkpoint for seq {cp.seq} does not verify with the trusted public keys "
                f"(key {cp.key_id or 'missing'}): the anchor was tampered with",
            )
    good = 0
    for cp in cps:
        if not report.ok and cp.seq >= (report.first_bad_seq or 0):
            break  # the walk failed before this checkpoint: its first bad seq stands
        available = len(hashes)
        if cp.seq > available:
            signed = f"a checkpoint signed at {_when(cp.ts)} covers seq {cp.seq}"
            if available == 0:
                problem = f"the audit chain is empty but {signed}: the chain was wiped"
                return _broken(report, 1, problem)
            problem = (
                f"the chain ends at seq {available} but {signed}: entries "
                f"{available + 1}..{cp.seq} were deleted (truncation)"
            )
            return _broken(report, available + 1, problem)
        if hashes[cp.seq - 1] != cp.hash:
            problem = (
                f"the entry at seq {cp.seq} does not have the hash its checkpoint (signed at "
                f"{_when(cp.ts)}) records: the chain was rewritten after seq {good}"
            )
            return _broken(report, good + 1, problem)
        good = cp.seq
    report.checkpoints = len(cps)
    report.anchored_seq = good
    if not report.ok:
        return report
    report.unanchored = len(hashes) - good
    if expect_head is not None and (expect_head.seq, expect_head.hash) != (
        report.head.seq,
        report.head.hash,
    ):
        head = report.head
        if expect_head.seq > head.seq:
            problem = (
                f"the chain ends at seq {head.seq} but its head says {expect_head.seq}: "
                "the newest entries were deleted"
            )
            return _broken(report, head.seq + 1, problem)
        return _broken(
            report, head.seq, f"the last entry (seq {head.seq}) does not match the recorded head"
        )
    return report


def _broken(report: VerifyReport, seq: int, problem: str) -> VerifyReport:
    return VerifyReport(False, report.entries, report.head, seq, problem)


def _walk(entries: Iterable[dict[str, Any]], chain: int = 0) -> tuple[VerifyReport, list[str]]:
    prev = ChainHead()
    hashes: list[str] = []
    for position, entry in enumerate(entries, start=1):
        problem = check_entry(entry, prev, position, chain)
        if problem:
            return VerifyReport(False, position, prev, position, problem), hashes
        prev = ChainHead(position, str(entry["hash"]))
        hashes.append(prev.hash)
    return VerifyReport(True, len(hashes), prev), hashes


def check_entry(entry: dict[str, Any], prev: ChainHead, position: int, chain: int = 0) -> str:
    seq = entry.get("seq")
    if not isinstance(seq, int):
        return "entry has no integer seq (not an audit entry, or damaged)"
    if entry.get("chain", 0) != chain:
        return f"entry of chain {entry.get('chain')!r} found in chain {chain}: it was moved"
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
    return ""


def _when(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def read_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Entries from an exported file; a line that is not JSON becomes an unverifiable entry.

    Checkpoint lines (``{"checkpoint": {...}}``, written by ``hitl audit export``) are skipped
    here; :func:`split_export` returns both.
    """
    for line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            yield {"seq": None, "_raw": line}
            continue
        if isinstance(value, dict) and "checkpoint" in value and "seq" not in value:
            continue
        yield value if isinstance(value, dict) else {"seq": None, "_raw": line}


def split_export(lines: Iterable[str]) -> tuple[list[dict[str, Any]], list[Checkpoint]]:
    """An export's entries and the checkpoints it carries."""
    entries: list[dict[str, Any]] = []
    cps: list[Checkpoint] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            entries.append({"seq": None, "_raw": line})
            continue
        if isinstance(value, dict) and "checkpoint" in value and "seq" not in value:
            try:
                cps.append(Checkpoint.from_json(value["checkpoint"]))
            except (ValueError, KeyError, TypeError):
                raise AuditError("the export holds a damaged checkpoint line") from None
            continue
        entries.append(value if isinstance(value, dict) else {"seq": None, "_raw": line})
    return entries, cps
