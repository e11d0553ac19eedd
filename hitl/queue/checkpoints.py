"""Signed checkpoints of the audit chain, written to an anchor outside Redis.

The log is :data:`~hitl.queue.keys.AUDIT_CHAINS` chains; each gets its own checkpoints (named
by the chain's stream key). ``hitl serve`` runs :meth:`Checkpointer.run` (every
``HITL_CHECKPOINT_S`` seconds, default 10, and once when it stops); ``hitl audit checkpoint``
makes them on demand (it needs the keyring). A chain is checkpointed only after its entries
since its previous checkpoint have been re-read and found linked to it: a history rewritten in
Redis in between is reported, never signed::

    checkpointer = Checkpointer(store, settings.signing_keys(), FileAnchor("anchors.jsonl"))
    checkpointer.checkpoint()        # -> the checkpoints made: [] when no chain moved
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from typing import Any

from hitl.errors import AuditError
from hitl.keys import KeyRing, PublicKeys
from hitl.queue.audit import (
    AnchorSink,
    ChainHead,
    Checkpoint,
    VerifyReport,
    check_entry,
    verify_chain,
    verify_chains,
)
from hitl.queue.keys import AUDIT_CHAINS
from hitl.queue.store import Store

__all__ = ["Checkpointer", "read_entries", "read_log", "verify_store"]

log = logging.getLogger("hitl.checkpoints")


def read_entries(
    store: Store, chain: int, after: str = "-", count: int = 5000
) -> list[tuple[str, Any]]:
    """``(stream id, entry)`` pairs of audit chain ``chain`` after ``after`` (exclusive)."""
    out: list[tuple[str, Any]] = []
    last = after
    while True:
        start = "-" if last == "-" else f"({last}"
        batch = store.redis.xrange(store.keys.audit(chain), min=start, max="+", count=count)
        if not batch:
            return out
        for sid, fields in batch:
            text = (fields or {}).get("e", "")
            try:
                out.append((str(sid), json.loads(text or "")))
            except json.JSONDecodeError:
                out.append((str(sid), {"seq": None, "_raw": fields}))
        last = str(batch[-1][0])


def read_log(store: Store) -> list[dict[str, Any]]:
    """Every entry of every chain: chain 0 first, each chain in order (as exports hold them)."""
    return [e for n in range(AUDIT_CHAINS) for _, e in read_entries(store, n)]


def verify_store(store: Store, checkpoints: Iterable[Checkpoint], keys: PublicKeys) -> VerifyReport:
    """Every chain in Redis against its signed checkpoints and its head key."""
    return verify_chains(
        read_log(store), checkpoints, keys, names=store.keys.audit_chains, expect_head=store.head()
    )


class Checkpointer:
    """Signs each chain's head and appends it to the anchor; checks what it signs first."""

    def __init__(self, store: Store, keyring: KeyRing, anchor: AnchorSink) -> None:
        self.store = store
        self.keyring = keyring
        self.anchor = anchor
        self.names = store.keys.audit_chains
        """Chain ``n``'s name in the anchor (its stream key)."""
        self.last_error: str = ""
        self._lock = threading.Lock()
        self._cursors: dict[int, tuple[int, str, str]] = {}
        """Per chain: (seq, hash, stream id) of the newest entry already checked."""

    def checkpoint(self) -> list[Checkpoint]:
        """Anchor the head of every chain that moved since its last checkpoint (none: ``[]``).

        Every chain that still matches the anchor is checkpointed; then :class:`AuditError` is
        raised (and remembered in ``last_error``) for the first chain in Redis that no longer
        matches it: a truncation, a wipe or a rewrite.
        """
        with self._lock:
            anchored = self.anchor.read()
            made: list[Checkpoint] = []
            errors: list[AuditError] = []
            for n, name in enumerate(self.names):
                try:
                    cp = self._checkpoint(n, [c for c in anchored if c.chain == name])
                except AuditError as exc:
                    errors.append(exc)
                    continue
                if cp is not None:
                    made.append(cp)
            if made:
                newest = json.dumps(made[-1].to_json())
                self.store.redis.set(self.store.keys.audit_checkpoint, newest)
            self.last_error = str(errors[0]) if errors else ""
            if errors:
                raise errors[0]
            return made

    def _checkpoint(self, n: int, anchored: list[Checkpoint]) -> Checkpoint | None:
        latest = max(anchored, key=lambda c: c.seq) if anchored else None
        cursor = self._cursors.get(n)
        if cursor is None or latest is None or cursor[0] < latest.seq:
            # First run (or the anchor moved on without us): check the whole chain once.
            pairs = read_entries(self.store, n)
            report = verify_chain(
                [e for _, e in pairs],
                anchored,
                self.keyring.public(),
                chain=self.names[n],
                chain_no=n,
            )
            if not report.ok:
                raise AuditError(f"not checkpointing chain {n}: {report}", report.first_bad_seq)
            if not pairs:
                return None
            sid, entry = pairs[-1]
            cursor = (int(entry["seq"]), str(entry["hash"]), sid)
        else:
            seq, digest, sid = cursor
            for new_sid, entry in read_entries(self.store, n, after=sid):
                problem = check_entry(entry, ChainHead(seq, digest), seq + 1, n)
                if problem:
                    raise AuditError(
                        f"not checkpointing chain {n}: audit entry {seq + 1}: {problem} (the "
                        "chain in Redis changed since it was last checked)",
                        seq + 1,
                    )
                seq, digest, sid = seq + 1, str(entry["hash"]), new_sid
            cursor = (seq, digest, sid)
        self._cursors[n] = cursor
        seq, digest, _ = cursor
        if latest is not None and latest.seq == seq and latest.hash == digest:
            return None
        checkpoint = Checkpoint(seq, digest, round(self.store.clock(), 3), self.names[n])
        checkpoint = checkpoint.signed(self.keyring)
        self.anchor.append(checkpoint)
        return checkpoint

    def run(self, stop: threading.Event, every_s: float = 10.0) -> None:
        """Checkpoint every ``every_s`` seconds until ``stop``, then once more."""
        while True:
            stopping = stop.wait(every_s)
            try:
                self.checkpoint()
            except AuditError as exc:
                log.error("audit: %s", exc)
            except Exception:  # a transient Redis/disk failure must not end the loop
                log.exception("audit checkpoint failed")
            if stopping:
                return
