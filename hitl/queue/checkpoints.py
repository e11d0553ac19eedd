"""Signed checkpoints of the audit chain, written to an anchor outside Redis.

``hitl serve`` runs :meth:`Checkpointer.run` (every ``HITL_CHECKPOINT_S`` seconds, default 10,
and once when it stops); ``hitl audit checkpoint`` makes one on demand (it needs the keyring). A
checkpoint is made only after the entries since the previous one have been re-read and found
linked to it: a history rewritten in Redis in between is reported, never signed::

    checkpointer = Checkpointer(store, settings.signing_keys(), FileAnchor("anchors.jsonl"))
    checkpointer.checkpoint()        # -> Checkpoint, or None when the chain has not moved
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from hitl.errors import AuditError
from hitl.keys import KeyRing
from hitl.queue.audit import AnchorSink, ChainHead, Checkpoint, check_entry, verify_chain
from hitl.queue.store import Store

__all__ = ["Checkpointer", "read_entries"]

log = logging.getLogger("hitl.checkpoints")


def read_entries(store: Store, after: str = "-", count: int = 5000) -> list[tuple[str, Any]]:
    """``(stream id, entry)`` pairs of the audit stream after ``after`` (exclusive)."""
    out: list[tuple[str, Any]] = []
    last = after
    while True:
        start = "-" if last == "-" else f"({last}"
        batch = store.redis.xrange(store.keys.audit, min=start, max="+", count=count)
        if not batch:
            return out
        for sid, fields in batch:
            text = (fields or {}).get("e", "")
            try:
                out.append((str(sid), json.loads(text or "")))
            except json.JSONDecodeError:
                out.append((str(sid), {"seq": None, "_raw": fields}))
        last = str(batch[-1][0])


class Checkpointer:
    """Signs the chain's head and appends it to the anchor; checks what it signs first."""

    def __init__(self, store: Store, keyring: KeyRing, anchor: AnchorSink) -> None:
        self.store = store
        self.keyring = keyring
        self.anchor = anchor
        self.chain = store.keys.audit
        self.last_error: str = ""
        self._lock = threading.Lock()
        self._cursor: tuple[int, str, str] | None = None
        """(seq, hash, stream id) of the newest entry already checked against the anchor."""

    def checkpoint(self) -> Checkpoint | None:
        """Anchor the current head; None when nothing changed since the last checkpoint.

        Raises :class:`AuditError` (and remembers it in ``last_error``) when the chain in Redis
        no longer matches the anchor: a truncation, a wipe or a rewrite.
        """
        with self._lock:
            try:
                made = self._checkpoint()
            except AuditError as exc:
                self.last_error = str(exc)
                raise
            self.last_error = ""
            return made

    def _checkpoint(self) -> Checkpoint | None:
        anchored = [c for c in self.anchor.read() if c.chain == self.chain]
        latest = max(anchored, key=lambda c: c.seq) if anchored else None
        if self._cursor is None or latest is None or self._cursor[0] < latest.seq:
            # First run (or the anchor moved on without us): check the whole chain once.
            pairs = read_entries(self.store)
            report = verify_chain(
                [e for _, e in pairs], anchored, self.keyring.public(), chain=self.chain
            )
            if not report.ok:
                raise AuditError(f"not checkpointing: {report}", report.first_bad_seq)
            if not pairs:
                return None
            sid, entry = pairs[-1]
            self._cursor = (int(entry["seq"]), str(entry["hash"]), sid)
        else:
            seq, digest, sid = self._cursor
            newer = read_entries(self.store, after=sid)
            for new_sid, entry in newer:
                problem = check_entry(entry, ChainHead(seq, digest), seq + 1)
                if problem:
                    raise AuditError(
                        f"not checkpointing: audit entry {seq + 1}: {problem} (the chain in Redis "
                        "changed since it was last checked)",
                        seq + 1,
                    )
                seq, digest, sid = seq + 1, str(entry["hash"]), new_sid
            self._cursor = (seq, digest, sid)
        seq, digest, _ = self._cursor
        if latest is not None and latest.seq == seq and latest.hash == digest:
            return None
        checkpoint = Checkpoint(seq, digest, round(self.store.clock(), 3), self.chain).signed(
            self.keyring
        )
        self.anchor.append(checkpoint)
        self.store.redis.set(self.store.keys.audit_checkpoint, json.dumps(checkpoint.to_json()))
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
