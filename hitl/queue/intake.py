"""The intake consumer: ``hitl:requests`` stream -> validated, classified, stored requests.

Several consumers may run (one consumer group, ``hitl-intake``). Each batch is stored and
acknowledged in one transaction, so an entry is processed exactly once: a consumer that dies
holding unacknowledged entries leaves them pending in the group, and another consumer reclaims
them with ``XAUTOCLAIM`` once they have been idle for ``claim_idle_ms``.

Input that cannot become a request goes to ``hitl:dead`` with the reason and the original
payload, and the consumer carries on with the next entry::

    consumer = IntakeConsumer(store, classify=policy.evaluate)
    consumer.run(stop_event)          # or run_once() in tests
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hitl.errors import HitlError, StoreUnavailable
from hitl.models import (
    MAX_DEPTH,
    MAX_PAYLOAD_BYTES,
    ApprovalRequest,
    Decision,
    Outcome,
    RequestRecord,
    State,
    Verdict,
    VerdictKind,
    json_depth,
)
from hitl.queue.audit import AuditEvent
from hitl.queue.connection import with_decoding
from hitl.queue.store import IntakeItem, Store

__all__ = [
    "DEAD_PAYLOAD_MAX",
    "DEAD_PREFIX_BYTES",
    "READ_BUDGET_BYTES",
    "Classifier",
    "IntakeConsumer",
    "IntakeStats",
    "validation_errors",
]

DEAD_PAYLOAD_MAX = 8 * 1024
"""A dead letter keeps its entry whole up to this many bytes; beyond, a digest and a prefix."""
DEAD_PREFIX_BYTES = 1024
READ_BUDGET_BYTES = 16 * 1024 * 1024
"""After a read larger than this, intake reads one entry at a time until entries are small."""

_Reply = list[tuple[Any, list[tuple[Any, dict[Any, Any]]]]]
"""What XREADGROUP returns; redis-py types it loosely."""

log = logging.getLogger("hitl.intake")


class Classifier(Protocol):
    """The policy seam: a request in, a verdict out (pure; see :mod:`hitl.policies`)."""

    def __call__(self, request: ApprovalRequest) -> Verdict: ...


@dataclass
class IntakeStats:
    stored: int = 0
    duplicate: int = 0
    dead: int = 0
    reclaimed: int = 0

    def add(self, outcomes: Sequence[str]) -> None:
        for outcome in outcomes:
            setattr(self, outcome, getattr(self, outcome) + 1)


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """``(field, message)`` pairs a person can act on, e.g. ``("params", "Input should be...")``."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(request)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see the ApprovalRequest fields in README)"
        out.append((loc, msg.removeprefix("Value error, ")))
    return out


class IntakeConsumer:
    """One member of the intake consumer group."""

    def __init__(
        self,
        store: Store,
        classify: Classifier,
        *,
        group: str = "hitl-intake",
        name: str | None = None,
        batch: int = 200,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        on_stored: Callable[[list[RequestRecord]], None] | None = None,
        on_cancel: Callable[[str, str | None, str], object] | None = None,
    ) -> None:
        self.store = store
        self.keys = store.keys
        self.classify = classify
        self.group = group
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.on_stored = on_stored
        self.on_cancel = on_cancel
        self.stats = IntakeStats()
        # Raw entries may hold bytes that are not UTF-8.
        self._raw = with_decoding(store.redis, decode=False)
        self._claim_cursor = "0-0"
        self._reclaimed_at = -math.inf
        self.read_count = batch
        """Entries per read: ``batch``, or 1 for a while after a read over READ_BUDGET_BYTES."""
        self.alive = False
        self.failures = 0
        """Consecutive failed rounds of :meth:`run` (0 once a round succeeds)."""
        self.last_error: str | None = None
        self.last_error_at: float | None = None

    def close(self) -> None:
        self._raw.close()

    def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start, so nothing queued is skipped)."""
        try:
            self._raw.xgroup_create(self.keys.requests, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set. Survives Redis outages and unexpected errors alike: it
        logs them, records them (see :meth:`health`), backs off and carries on."""
        backoff = 0.1
        self.alive = True
        try:
            while not stop.is_set():
                try:
                    self.ensure_group()
                    while not stop.is_set():
                        self.run_once()
                        backoff, self.failures = 0.1, 0
                except (StoreUnavailable, RedisConnectionError, RedisTimeoutError) as exc:
                    self._failed(exc)
                    log.warning("intake: Redis unavailable (%s); retrying in %.1fs", exc, backoff)
                except Exception as exc:  # a bug must not end the thread: log, back off, go on
                    self._failed(exc)
                    log.exception(
                        "intake %s: unexpected error; retrying in %.1fs", self.name, backoff
                    )
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        finally:
            self.alive = False

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        self.last_error_at = time.time()

    def health(self) -> dict[str, Any]:
        """``alive`` (run() is looping), ``failures`` in a row, and the ``last_error`` seen."""
        return {
            "alive": self.alive,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }

    def run_once(self, block_ms: int | None = None) -> int:
        """Reclaim stale entries (when due), then read and process one batch. Returns entries
        handled."""
        handled = self._reclaim_when_due()
        block = self.block_ms if block_ms is None else block_ms
        reply = self._raw.xreadgroup(
            self.group,
            self.name,
            {self.keys.requests: ">"},
            count=self.read_count,
            block=block or None,
        )
        for _stream, entries in cast(_Reply, reply) or []:
            self._pace(entries)
            handled += self.process(entries)
        return handled

    def _pace(self, entries: Sequence[tuple[Any, dict[Any, Any]]]) -> None:
        """Keep a read's memory bounded: after a read of more than READ_BUDGET_BYTES, read one
        entry at a time until entries are small again (a batch of 10 MB entries is 1 GB)."""
        size = sum(_size(v) for _sid, fields in entries for v in (fields or {}).values())
        if size > READ_BUDGET_BYTES:
            self.read_count = 1
        elif self.read_count == 1 and size <= MAX_PAYLOAD_BYTES:
            self.read_count = self.batch

    def _reclaim_when_due(self) -> int:
        """:meth:`reclaim` at most every ``claim_idle_ms / 2`` (and at least every second),
        or at once while a scan of the pending entries is unfinished: an entry is idle for at
        least ``claim_idle_ms`` before it can be claimed anyway, and checking on every batch
        cost a round trip per batch."""
        now = time.monotonic()
        every = min(self.claim_idle_ms / 2000, 1.0)
        if self._claim_cursor == "0-0" and now - self._reclaimed_at < every:
            return 0
        self._reclaimed_at = now
        return self.reclaim()

    def reclaim(self) -> int:
        """Take over entries another consumer read but never acknowledged (it died)."""
        handled = 0
        reply = self._raw.xautoclaim(
            self.keys.requests,
            self.group,
            self.name,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self.read_count,
        )
        cursor, entries = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        if deleted:  # trimmed from the stream while pending: nothing left to process
            self._raw.xack(self.keys.requests, self.group, *deleted)
        live = [(i, f) for i, f in entries if f is not None]
        if live:
            self._pace(live)
            log.info("intake %s: reclaimed %d stale entries", self.name, len(live))
            self.stats.reclaimed += len(live)
            handled += self.process(live)
        return handled

    def process(self, entries: Sequence[tuple[Any, dict[Any, Any]]]) -> int:
        """Validate, classify and store entries; one transaction for the whole batch.

        An entry with a ``cancel`` field (``{"id": ..., "reason": ..., "agent_id": ...}``) is an
        agent withdrawing its request: it goes to ``on_cancel(request_id, agent_id, reason)``
        (normally :meth:`Decider.cancel_by_agent`, which checks the agent owns the request).
        """
        requests, cancels = [], []
        for sid, fields in entries:
            if (b"cancel" in fields or "cancel" in fields) and not (
                b"request" in fields or "request" in fields
            ):
                cancels.append((sid, fields))
            else:
                requests.append((sid, fields))
        items = [self._safe_item(_s(sid), fields) for sid, fields in requests]
        # Requests first: a cancel read in the same batch as its request must find it stored.
        outcomes = self._commit(items) if items else []
        for sid, fields in cancels:
            self._cancel(_s(sid), fields)
        if not items:
            return len(cancels)
        self.stats.add(outcomes)
        if self.on_stored is not None:
            stored = [
                it.record
                for it, outcome in zip(items, outcomes, strict=True)
                if outcome == "stored" and it.record is not None
            ]
            if stored:
                self.on_stored(stored)
        return len(items) + len(entries) - len(requests)

    def _commit(self, items: list[IntakeItem]) -> list[str]:
        """Commit the batch; if that fails for any reason but Redis being down, commit it one
        entry at a time and dead-letter the entry that fails, so its neighbours are stored."""
        try:
            return self.store.commit_intake(self.group, items)
        except (StoreUnavailable, RedisConnectionError, RedisTimeoutError):
            raise
        except Exception:
            log.exception("intake: committing a batch of %d failed; one at a time", len(items))
        outcomes: list[str] = []
        for item in items:
            try:
                outcomes += self.store.commit_intake(self.group, [item])
            except (StoreUnavailable, RedisConnectionError, RedisTimeoutError):
                raise
            except Exception as exc:
                log.exception("intake: cannot store %s", item.stream_id)
                rid = item.record.id if item.record is not None else None
                entry = _Entry(item.payload, item.payload_digest, 0)
                dead = self._dead(item.stream_id, entry, _internal("storing", exc), request_id=rid)
                outcomes += self.store.commit_intake(self.group, [dead])
        return outcomes

    def _cancel(self, stream_id: str, raw_fields: dict[Any, Any]) -> None:
        entry = _entry(raw_fields)
        raw = raw_fields.get(b"cancel", raw_fields.get("cancel"))
        try:
            if _size(raw) > DEAD_PAYLOAD_MAX:
                raise ValueError("too large")
            text = _s(raw)
            if _too_deep(text):
                raise ValueError("too deep")
            data = json.loads(text)
            request_id = str(data["id"])
            reason = str(data.get("reason") or "")[:3000]
            agent_id = str(data["agent_id"])[:128] if data.get("agent_id") else None
        except (ValueError, KeyError, TypeError):
            item = self._dead(stream_id, entry, 'cancel must be JSON {"id": ..., "reason": ...}')
            self.store.commit_intake(self.group, [item])
            self.stats.dead += 1
            return
        if self.on_cancel is None:
            item = self._dead(stream_id, entry, "this consumer has no cancel handler")
            self.store.commit_intake(self.group, [item])
            self.stats.dead += 1
            return
        try:
            self.on_cancel(request_id, agent_id, reason)
        except HitlError as exc:  # already decided / unknown id: refused and audited by handler
            if isinstance(exc, StoreUnavailable):
                raise
            log.info("intake: cancel of %s refused: %s", request_id, exc)
        except Exception as exc:  # a handler bug: keep the cancel in hitl:dead, go on
            log.exception("intake: cancel of %s failed", request_id)
            item = self._dead(stream_id, entry, _internal("cancelling", exc))
            self.store.commit_intake(self.group, [item])
            self.stats.dead += 1
            return
        with self._raw.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.requests, self.group, stream_id)
            pipe.xdel(self.keys.requests, stream_id)
            pipe.execute()

    # -- one entry -----------------------------------------------------------------------------

    def _safe_item(self, stream_id: str, raw_fields: dict[Any, Any]) -> IntakeItem:
        """:meth:`_item`, with any exception turned into that entry's dead letter."""
        try:
            return self._item(stream_id, raw_fields)
        except Exception as exc:
            log.exception("intake: internal error on %s", stream_id)
            try:
                entry = _entry(raw_fields)
            except Exception:  # pragma: no cover - the payload is bytes and str only
                entry = _Entry({}, {}, 0)
            return self._dead(stream_id, entry, _internal("validating", exc))

    def _item(self, stream_id: str, raw_fields: dict[Any, Any]) -> IntakeItem:
        fields = _entry(raw_fields)  # for the dead letter: never a copy of a huge value
        raw = raw_fields.get(b"request", raw_fields.get("request"))
        if raw is None:
            return self._dead(
                stream_id,
                fields,
                "entry has no 'request' field: send XADD hitl:requests * request '<JSON>'",
            )
        size = _size(raw)
        if size > MAX_PAYLOAD_BYTES:
            return self._dead(
                stream_id,
                fields,
                f"request is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes",
            )
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        except UnicodeDecodeError:
            return self._dead(stream_id, fields, "request is not UTF-8 text")
        # Before json.loads, which recurses: ~1 KB of brackets would otherwise kill the thread.
        if _too_deep(text):
            return self._dead(
                stream_id,
                fields,
                f"request nests deeper than {MAX_DEPTH} levels (MAX_DEPTH; params, context "
                f"and param_schema may nest {MAX_DEPTH - 1}): flatten it or send a reference",
            )
        try:
            data = json.loads(
                text, parse_constant=_no_constants, parse_float=_finite, parse_int=_safe_int
            )
        except ValueError as exc:  # JSONDecodeError is a ValueError
            return self._dead(stream_id, fields, f"request is not valid JSON: {exc}")
        if not isinstance(data, dict):
            kind = type(data).__name__
            return self._dead(stream_id, fields, f"request must be a JSON object, got {kind}")
        try:
            request = ApprovalRequest.model_validate(data)
        except ValidationError as exc:
            errors = validation_errors(exc)
            reason = "invalid request: " + "; ".join(f"{f}: {m}" for f, m in errors[:5])
            rid = data.get("id") if isinstance(data.get("id"), str) else None
            return self._dead(stream_id, fields, reason, errors=errors, request_id=rid)
        if request.id is None:
            request = request.model_copy(update={"id": f"x-{stream_id}"})
        try:
            verdict = self.classify(request)
        except Exception as exc:  # a policy bug must not lose the request: dead-letter it
            log.exception("intake: policy evaluation failed for %s", request.id)
            return self._dead(
                stream_id, fields, f"policy evaluation failed: {exc}", request_id=request.id
            )
        item = self._accepted(stream_id, request, verdict)
        # Kept only if the id turns out to name another request:
        item.payload, item.payload_digest = fields.fields, fields.digest
        return item

    def _accepted(self, stream_id: str, request: ApprovalRequest, verdict: Verdict) -> IntakeItem:
        now = self.store.clock()
        # The deadline is the next thing that happens: the first escalation, or the agent's own
        # timeout if that comes sooner (the scheduler moves it along the chain).
        firsts = [s.after_s for s in verdict.escalation[:1]]
        if request.timeout_s is not None:
            firsts.append(request.timeout_s)
        deadline = now + min(firsts) if firsts else None
        record = RequestRecord(
            request=request,
            verdict=verdict,
            created_at=now,
            deadline=deadline,
            params=request.params,
        )
        details: dict[str, Any] = {
            "action": request.action,
            "summary": request.summary,
            "params": request.params,
            "requested_by": request.requested_by,
            "session_id": request.session_id,
            "dry_run": request.dry_run,
            "stream_id": stream_id,
            "verdict": verdict.kind.value,
            "risk": verdict.risk.value,
            "rule": verdict.rule,
            "why": verdict.reason,
        }
        decision: Decision | None = None
        if verdict.kind is not VerdictKind.REVIEW:
            # Decided by the policy at once: the submission's one entry also records the
            # outcome (and, added by the store, where the decision was delivered).
            outcome = (
                Outcome.AUTO_APPROVED
                if verdict.kind is VerdictKind.AUTO_APPROVE
                else Outcome.AUTO_REJECTED
            )
            decision = self.store.make_decision(
                record, outcome, reason=verdict.reason or (verdict.rule or ""), now=now
            )
            record = record.model_copy(update={"state": outcome.state, "decision": decision})
            details["outcome"] = outcome.value
            details["decided_by"] = "policy"
        submitted = AuditEvent(
            "submitted", record.id, request.agent_id or "agent", details, verdict.policy_version
        )
        assert record.state is State.PENDING or decision is not None
        return IntakeItem(
            stream_id=stream_id, record=record, decision=decision, events_if_stored=[submitted]
        )

    def _dead(
        self,
        stream_id: str,
        entry: _Entry,
        reason: str,
        *,
        errors: list[tuple[str, str]] | None = None,
        request_id: str | None = None,
    ) -> IntakeItem:
        log.warning("intake: dead-lettered %s: %s", stream_id, reason)
        event = AuditEvent(
            "invalid_request",
            request_id,
            "intake",
            {"reason": reason, "stream_id": stream_id, "bytes": entry.size},
        )
        return IntakeItem(
            stream_id=stream_id,
            dead_reason=reason,
            dead_errors=errors or [],
            payload=entry.fields,
            payload_digest=entry.digest,
            events=[event],
        )


@dataclass(frozen=True)
class _Entry:
    """A stream entry as its dead letter keeps it (see :func:`_entry`)."""

    fields: dict[str, Any]
    digest: dict[str, str]
    size: int
    """Bytes of all its values, as received."""


def _entry(raw_fields: dict[Any, Any]) -> _Entry:
    """The entry for a dead letter: its fields losslessly (text as is, other bytes as base64) up
    to DEAD_PAYLOAD_MAX bytes in all. Beyond that its largest field is kept as a sha256, a size and
    a DEAD_PREFIX_BYTES prefix (``payload_*``), and any other field over the prefix size as its
    sha256 and size, so neither the dead letter nor intake's memory holds a copy of huge input."""
    size = sum(_size(v) for v in raw_fields.values())
    if size <= DEAD_PAYLOAD_MAX:
        return _Entry(_payload(raw_fields), {}, size)
    largest = max(raw_fields, key=lambda k: _size(raw_fields[k]))
    fields: dict[str, Any] = {}
    for key, value in raw_fields.items():
        if key == largest:
            continue
        if _size(value) <= DEAD_PREFIX_BYTES:
            fields.update(_payload({key: value}))
        else:
            data = _bytes(value)
            fields[_s(key)] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    data = _bytes(raw_fields[largest])
    digest = {
        "payload_field": _s(largest),
        "payload_sha256": hashlib.sha256(data).hexdigest(),
        "payload_bytes": str(len(data)),
        "payload_prefix": json.dumps(_prefix(data), ensure_ascii=False),
    }
    return _Entry(fields, digest, size)


def _prefix(data: bytes) -> str | dict[str, str]:
    """The first DEAD_PREFIX_BYTES as text (cut at a character boundary), else as base64."""
    head = data[:DEAD_PREFIX_BYTES]
    for cut in range(4):  # a UTF-8 character is at most 4 bytes: drop a partial last one
        try:
            return head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return {"base64": base64.b64encode(head).decode("ascii")}


def _size(value: Any) -> int:
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, str):
        return len(value.encode())
    return 0 if value is None else len(str(value))


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _internal(doing: str, exc: BaseException) -> str:
    return f"internal error while {doing}: {type(exc).__name__}: {exc}"[:2000]


def _too_deep(text: str) -> bool:
    """Whether ``text`` nests deeper than MAX_DEPTH (counting brackets first: a cheap skip)."""
    return text.count("[") + text.count("{") > MAX_DEPTH and json_depth(text) > MAX_DEPTH


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (send a string or null instead)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: json.loads would make it inf, stored as null
        raise ValueError(f"{text[:40]} is not a finite number (send a string or null instead)")
    return value


def _safe_int(text: str) -> int:
    if len(text.lstrip("-")) > 16:  # beyond 2**53 anyway; and int() of 5000 digits is refused
        raise ValueError(
            f"{text[:20]}...: integer outside ±(2**53-1) cannot be signed exactly (I-JSON, RFC "
            "7493): send large integers as strings"
        )
    return int(text)  # in range or not, the model names where it is


def _payload(raw_fields: dict[Any, Any]) -> dict[str, Any]:
    """The entry's fields for the dead letter, losslessly: text as is, other bytes as base64."""
    out: dict[str, Any] = {}
    for key, value in raw_fields.items():
        if isinstance(value, bytes):
            try:
                out[_s(key)] = value.decode("utf-8")
            except UnicodeDecodeError:
                out[_s(key)] = {"base64": base64.b64encode(value).decode("ascii")}
        else:
            out[_s(key)] = _s(value)
    return out


def _s(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
