"""The request store: records, the pending index, decision delivery and the audit chain.

Every change to a request is one optimistic transaction (``WATCH`` the record and the head of
its audit chain, read, compute, ``MULTI``/``EXEC``; retry if either moved). The audit log is
:data:`~hitl.queue.keys.AUDIT_CHAINS` chains sharded by request id, so changes to requests of
different chains never contend for one head. The write set of that
transaction holds the new record, the pending-index update, the audit entries that describe the
change, and, when the change is terminal, the decision's delivery (``LPUSH`` for the waiting
agent, ``XADD`` for subscribers, the webhook outbox). So a decision exists exactly when its audit
entry and its delivery do, and two racing reviewers can never both decide: the loser's
transaction is retried, sees the terminal state and becomes an audited refusal.

Business rules do not live here: callers (:mod:`hitl.handlers`, the intake consumer) pass a
function from the current record to a :class:`Change`::

    def approve(record):
        ...
        return Change(record=new_record, events=[...], decision=decision)

    store.update("r-42", approve)
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from hitl.errors import ConfigError, HitlError, NotFound, StoreUnavailable
from hitl.keys import KeyRing
from hitl.models import (
    CardRef,
    Decision,
    FeedbackEntry,
    Outcome,
    RequestRecord,
    Reviewer,
    State,
)
from hitl.queue.audit import AuditEvent, ChainHead, encode_entry
from hitl.queue.keys import AUDIT_CHAINS, Keys
from hitl.signing import request_digest, sign_decision

__all__ = ["Change", "Clock", "IntakeItem", "Store", "record_json"]

Clock = Callable[[], float]
T = TypeVar("T")
RETENTION_S = 7 * 24 * 3600
"""Default for how long a decided record stays in Redis (``HITL_RETENTION_S``)."""
DECISIONS_MAXLEN = 100_000
FEEDBACK_MAXLEN = 200
"""Human decisions kept per agent and action for :meth:`hitl.Client.feedback` (newest first)."""
"""``hitl:decisions`` is a notification stream, trimmed (approximately) to this length; the
record and the audit chain keep every decision forever."""


@dataclass
class Change:
    """What a transaction function wants written. Empty means: write nothing."""

    record: RequestRecord | None = None
    events: list[AuditEvent] = field(default_factory=list)
    decision: Decision | None = None
    error: HitlError | None = None
    """Raised to the caller after the commit (a refusal whose audit entry is committed)."""


@dataclass
class IntakeItem:
    """One stream entry, already validated and classified by the intake consumer."""

    stream_id: str
    record: RequestRecord | None = None
    decision: Decision | None = None
    dead_reason: str = ""
    dead_errors: list[tuple[str, str]] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)
    payload_digest: dict[str, str] = field(default_factory=dict)
    """For an entry over 8 KiB: ``payload_field``/``_sha256``/``_bytes``/``_prefix`` stand for its
    largest field, which ``payload`` then leaves out."""
    events: list[AuditEvent] = field(default_factory=list)
    """Audited whatever happens (e.g. the reason an entry was dead-lettered)."""
    events_if_stored: list[AuditEvent] = field(default_factory=list)
    """Audited only when the record is new (not a duplicate): the submission, auto verdicts."""


@dataclass
class _Writes:
    """Record writes gathered over a batch, sent as one ``MSET`` (one script call for decided
    records, which expire), one ``ZADD`` and one ``ZREM`` instead of three commands per record
    (each command costs the intake ~10 us in redis-py)."""

    records: dict[str, str] = field(default_factory=dict)
    expiring: dict[str, str] = field(default_factory=dict)
    """Decided records: kept ``retention_s``, then only the audit log remembers them."""
    pending: dict[str, float] = field(default_factory=dict)
    done: list[str] = field(default_factory=list)

    def queue(self, pipe: Any, store: Store) -> None:
        keys = store.keys
        if self.records:
            pipe.mset(self.records)
        if self.expiring:
            names = list(self.expiring)
            args: list[str | int] = [store.retention_s, *self.expiring.values()]
            store._set_expiring(keys=names, args=args, client=pipe)
        if self.pending:
            pipe.zadd(keys.pending, self.pending)
        if self.done:
            pipe.zrem(keys.pending, *self.done)


_SET_EXPIRING = """
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS
"""
"""``SET key value EX seconds`` for every key (one command for a batch; MSET has no TTL)."""


@dataclass
class _Chains:
    """The audit chains a transaction appends to: each one's head as read (and WATCHed) before
    ``MULTI``, advanced as entries are queued; :meth:`flush` queues the moved heads' ``SET``."""

    keys: Keys
    heads: dict[int, ChainHead] = field(default_factory=dict)
    moved: set[int] = field(default_factory=set)

    def missing(self, events: Sequence[AuditEvent]) -> list[int]:
        """The chains ``events`` go to whose heads were not read yet."""
        return sorted({self.keys.chain_of(e.request_id) for e in events} - set(self.heads))

    def read(self, chains: Sequence[int], raws: Sequence[Any]) -> None:
        for n, raw in zip(chains, raws, strict=True):
            self.heads[n] = ChainHead.parse(raw)

    def append(self, pipe: Any, event: AuditEvent, now: float) -> None:
        n = self.keys.chain_of(event.request_id)
        self.heads[n], text = encode_entry(self.heads[n], event, now, n)
        self.moved.add(n)
        pipe.xadd(self.keys.audit(n), {"e": text})

    def flush(self, pipe: Any) -> None:
        for n in sorted(self.moved):
            pipe.set(self.keys.audit_head(n), self.heads[n].dumps())
        self.moved.clear()


def record_json(record: RequestRecord) -> str:
    """The record as ``hitl:req:<id>`` holds it: every field at its default left out (parsing
    puts it back, so the record reads the same and a decided one stays under 2 KiB). The
    complete, signed Decision JSON is the one in ``hitl:decision:<id>`` and ``hitl:decisions``."""
    return record.model_dump_json(exclude_defaults=True)


def _same_request(stored: str | RequestRecord, new: RequestRecord) -> bool:
    """Whether a resubmission under an existing id asks for the same thing (a retry)."""
    old = stored if isinstance(stored, RequestRecord) else RequestRecord.model_validate_json(stored)
    return old.request == new.request


def _with_delivery(
    events: list[AuditEvent], decision: Decision, targets: list[str]
) -> list[AuditEvent]:
    """The change's events with the delivery recorded on the entry that records the decision
    (the request's last event: ``approved``, ``expired``, an auto-decided ``submitted``), so a
    decision is one audit entry, not two; a ``delivered`` entry only when no such event exists."""
    for index in range(len(events) - 1, -1, -1):
        event = events[index]
        if event.request_id == decision.request_id:
            details = {**event.details, "delivered_to": targets}
            return [*events[:index], replace(event, details=details), *events[index + 1 :]]
    delivered = AuditEvent(
        "delivered",
        decision.request_id,
        "store",
        {"outcome": decision.outcome.value, "delivered_to": targets},
        decision.policy_version,
    )
    return [*events, delivered]


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"Redis is unreachable ({exc}); nothing was written - retry later")


def _track_exec(pipe: Any, sent: list[bool]) -> None:
    """Set ``sent[0]`` once the pipeline's ``execute()`` (MULTI ... EXEC) is called."""
    execute = pipe.execute

    def tracked(raise_on_error: bool = True) -> Any:
        sent[0] = True
        return execute(raise_on_error)

    pipe.execute = tracked


def _watch_and_get(pipe: Any, keys: list[str]) -> list[Any]:
    """``WATCH keys`` and ``MGET keys`` in one round trip: redis-py sends a watching pipeline's
    commands one by one, and every decision pays this read. A connection lost here (before
    ``MULTI``) wrote nothing; the pipeline's reset unwatches or drops the connection."""
    if not keys:
        return []
    conn = pipe.connection
    if conn is None:
        conn = pipe.connection = pipe.connection_pool.get_connection()
    pipe.watching = True
    conn.send_packed_command(conn.pack_commands([("WATCH", *keys), ("MGET", *keys)]))
    pipe.parse_response(conn, "WATCH")
    return list(pipe.parse_response(conn, "MGET"))


def _maybe_committed(exc: BaseException, check: str) -> StoreUnavailable:
    return StoreUnavailable(
        f"Redis stopped answering after the change was sent ({exc}); it may have been "
        f"committed: check with {check} before retrying",
        maybe_committed=True,
    )


class Store:
    """Reads and atomically changes request records. Thread-safe (one connection pool)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        keys: Keys | None = None,
        signer: KeyRing | None,
        decision_ttl_s: int = 7 * 24 * 3600,
        clock: Clock = time.time,
        max_retries: int = 2000,
        dead_maxlen: int = 10_000,
        retention_s: int = RETENTION_S,
    ) -> None:
        self.redis = client
        self.keys = keys or Keys()
        self.signer = signer
        """Signs decisions; None for a read-only store (deciding then raises ConfigError)."""
        self.decision_ttl_s = decision_ttl_s
        self.clock = clock
        self.max_retries = max_retries
        self.dead_maxlen = dead_maxlen
        self.retention_s = retention_s
        """Seconds a decided record is kept (0: forever); the audit log keeps its facts."""
        self._set_expiring = client.register_script(_SET_EXPIRING)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, request_id: str) -> RequestRecord:
        """The record, or :class:`NotFound`."""
        raw = self._call(lambda: self.redis.get(self.keys.req(request_id)))
        if raw is None:
            raise NotFound(
                f"no request {request_id!r} (check the id with `hitl pending`; a decided request "
                "is kept HITL_RETENTION_S, then only the audit log has it)"
            )
        return RequestRecord.model_validate_json(raw)

    def find(self, request_id: str) -> RequestRecord | None:
        try:
            return self.get(request_id)
        except NotFound:
            return None

    def pending_ids(self, offset: int = 0, limit: int = 50) -> list[str]:
        """Pending ids, soonest deadline first."""
        stop = offset + limit - 1 if limit > 0 else -1
        ids = self._call(lambda: self.redis.zrange(self.keys.pending, offset, stop))
        return [str(i) for i in ids]

    def pending_count(self) -> int:
        return int(self._call(lambda: self.redis.zcard(self.keys.pending)))

    def pending(self, offset: int = 0, limit: int = 50) -> list[RequestRecord]:
        ids = self.pending_ids(offset, limit)
        if not ids:
            return []
        raws = self._call(lambda: self.redis.mget([self.keys.req(i) for i in ids]))
        return [RequestRecord.model_validate_json(r) for r in raws if r is not None]

    def head(self) -> dict[int, ChainHead]:
        """Every audit chain's head, by chain number."""
        names = [self.keys.audit_head(n) for n in range(AUDIT_CHAINS)]
        raws = self._call(lambda: self.redis.mget(names))
        return {n: ChainHead.parse(raw) for n, raw in enumerate(raws)}

    # -- writes --------------------------------------------------------------------------------

    def update(self, request_id: str, fn: Callable[[RequestRecord | None], Change]) -> Change:
        """Run ``fn`` on the current record and commit its Change atomically (retrying on races).

        Returns the committed Change; raises ``change.error`` after committing, if set.
        """
        key = self.keys.req(request_id)
        home = self.keys.chain_of(request_id)

        def attempt(pipe: Any) -> Change:
            raw, head_raw = _watch_and_get(pipe, [key, self.keys.audit_head(home)])
            record = RequestRecord.model_validate_json(raw) if raw else None
            change = fn(record)
            # A canary's decision goes to no agent (the set is written before the canary exists).
            canary = change.decision is not None and bool(
                pipe.sismember(self.keys.canaries, request_id)
            )
            chains = _Chains(self.keys, {home: ChainHead.parse(head_raw)})
            self._read_heads(pipe, chains, change.events)
            pipe.multi()
            self._write(pipe, chains, change, deliver=not canary)
            chains.flush(pipe)
            pipe.execute()
            return change

        change = self._transact(attempt, f"`hitl show {request_id}`")
        if change.error is not None:
            raise change.error
        return change

    def append_events(
        self, events: Sequence[AuditEvent], *, also: Callable[[Any], None] | None = None
    ) -> None:
        """Audit entries that change no record (policy reload, dead letters, webhooks).

        ``also(pipe)`` queues more commands in the same MULTI (e.g. an API token's record), so
        that they exist exactly when their audit entries do.
        """

        def attempt(pipe: Any) -> None:
            chains = _Chains(self.keys)
            self._read_heads(pipe, chains, events)
            pipe.multi()
            self._write(pipe, chains, Change(events=list(events)))
            chains.flush(pipe)
            if also is not None:
                also(pipe)
            pipe.execute()

        self._transact(attempt)

    def commit_intake(self, group: str, items: Sequence[IntakeItem]) -> list[str]:
        """Store a batch of stream entries and ``XACK`` them in the same transaction.

        A record whose id already exists is a duplicate: it is acknowledged and audited, and the
        stored request is left as it was (the id is the idempotency key). Returns, per item,
        ``"stored"``, ``"duplicate"`` or ``"dead"``.
        """
        ids = [it.record.id for it in items if it.record is not None]
        touched = [AuditEvent("", i, "") for i in ids]
        touched += [e for it in items for e in (*it.events, *it.events_if_stored)]
        chain_nos = _Chains(self.keys).missing(touched)
        record_keys = list({self.keys.req(i) for i in ids})
        watch_keys = [*(self.keys.audit_head(n) for n in chain_nos), *record_keys]

        def attempt(pipe: Any) -> list[str]:
            values = _watch_and_get(pipe, watch_keys)
            chains = _Chains(self.keys)
            chains.read(chain_nos, values[: len(chain_nos)])
            existing: dict[str, Any] = {
                k: v for k, v in zip(record_keys, values[len(chain_nos) :], strict=True) if v
            }
            pipe.multi()
            outcomes: list[str] = []
            writes = _Writes()
            for it in items:
                if it.record is None:
                    self._dead_letter(pipe, it, it.dead_reason, it.dead_errors)
                    self._write(pipe, chains, Change(events=it.events))
                    outcomes.append("dead")
                    continue
                key = self.keys.req(it.record.id)
                if key in existing and not _same_request(existing[key], it.record):
                    # Same id, other content: never silently keep one and drop the other.
                    reason = (
                        f"id {it.record.id!r} already names a different request (the stored one "
                        "is kept); give a new request a new id"
                    )
                    self._dead_letter(
                        pipe, it, reason, [("id", "already used for another request")]
                    )
                    conflict = AuditEvent(
                        "conflicting_submission",
                        it.record.id,
                        it.record.request.agent_id or "agent",
                        {"stream_id": it.stream_id, "reason": reason},
                        it.record.verdict.policy_version,
                    )
                    self._write(pipe, chains, Change(events=[*it.events, conflict]))
                    outcomes.append("dead")
                    continue
                if key in existing:
                    duplicate = AuditEvent(
                        "duplicate_submission",
                        it.record.id,
                        it.record.request.agent_id or "agent",
                        {"stream_id": it.stream_id},
                        it.record.verdict.policy_version,
                    )
                    self._write(pipe, chains, Change(events=[*it.events, duplicate]))
                    outcomes.append("duplicate")
                    continue
                existing[key] = it.record
                change = Change(
                    record=it.record,
                    decision=it.decision,
                    events=[*it.events, *it.events_if_stored],
                )
                self._write(pipe, chains, change, writes=writes)
                outcomes.append("stored")
            writes.queue(pipe, self)
            chains.flush(pipe)
            acked = [it.stream_id for it in items]
            pipe.xack(self.keys.requests, group, *acked)
            pipe.xdel(self.keys.requests, *acked)  # done with: the stream keeps only open work
            pipe.execute()
            return outcomes

        shown = ", ".join(it.stream_id for it in items[:3]) + (" ..." if len(items) > 3 else "")
        return self._transact(attempt, f"`hitl pending` and `hitl dead` (entries {shown})")

    def _dead_letter(
        self, pipe: Any, item: IntakeItem, reason: str, errors: list[tuple[str, str]]
    ) -> None:
        pipe.xadd(
            self.keys.dead,
            {
                "reason": reason,
                "errors": json.dumps(errors),
                "payload": json.dumps(item.payload, ensure_ascii=False),
                **item.payload_digest,
                "stream_id": item.stream_id,
                "at": f"{self.clock():.6f}",
            },
            maxlen=self.dead_maxlen,
            approximate=True,
        )

    # -- building blocks for handlers ----------------------------------------------------------

    def make_decision(
        self,
        record: RequestRecord,
        outcome: Outcome,
        *,
        reviewers: list[Reviewer] | None = None,
        reason: str = "",
        params: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> Decision:
        """A signed Decision for ``record`` (params default to the params under review)."""
        final = record.params if params is None else params
        modified = final != record.request.params
        decision = Decision(
            request_id=record.id,
            outcome=outcome,
            params=final,
            modified=modified,
            original_params=record.request.params if modified else None,
            reviewers=reviewers or [],
            reason=reason,
            policy_version=record.verdict.policy_version,
            requested_at=record.created_at,
            decided_at=self.clock() if now is None else now,
            dry_run=record.request.dry_run,
            request_digest=request_digest(record.request),
        )
        return sign_decision(decision, self.require_signer())

    def require_signer(self) -> KeyRing:
        """The signing keyring, or a :class:`ConfigError` for a store that only reads."""
        if self.signer is None:
            raise ConfigError(
                "this process holds no signing key, so it cannot decide: decisions are made by "
                "hitl serve and hitl worker (HITL_SIGNING_KEY_FILE)"
            )
        return self.signer

    def add_card(self, request_id: str, card: CardRef, actor: str = "bot") -> None:
        """Remember where a copy of the card was posted (so every copy can be updated)."""
        if self.add_cards([(request_id, card)], actor):
            raise NotFound(f"no request {request_id!r}")

    def add_cards(self, cards: Sequence[tuple[str, CardRef]], actor: str = "bot") -> list[str]:
        """Record several posted cards in one transaction; returns the ids that no longer exist."""
        by_id: dict[str, list[CardRef]] = {}
        for rid, card in cards:
            by_id.setdefault(rid, []).append(card)
        keys = [self.keys.req(i) for i in by_id]

        def attempt(pipe: Any) -> list[str]:
            values = _watch_and_get(pipe, keys)
            missing: list[str] = []
            changes: list[Change] = []
            for (rid, new), raw in zip(by_id.items(), values, strict=True):
                if raw is None:
                    missing.append(rid)
                    continue
                record = RequestRecord.model_validate_json(raw)
                added = [c for c in new if c not in record.cards]
                if added:
                    events = [
                        AuditEvent(
                            "card_posted", rid, actor, c.model_dump(), record.verdict.policy_version
                        )
                        for c in added
                    ]
                    cards_now = [*record.cards, *added]
                    changes.append(
                        Change(record=record.model_copy(update={"cards": cards_now}), events=events)
                    )
            chains = _Chains(self.keys)
            self._read_heads(pipe, chains, [e for c in changes for e in c.events])
            pipe.multi()
            for change in changes:
                self._write(pipe, chains, change)
            chains.flush(pipe)
            pipe.execute()
            return missing

        return self._transact(attempt)

    # -- internals -----------------------------------------------------------------------------

    def _read_heads(self, pipe: Any, chains: _Chains, events: Sequence[AuditEvent]) -> None:
        """WATCH and read the heads of the chains ``events`` go to and ``chains`` lacks (before
        ``MULTI``: the transaction then commits only if none of them moved)."""
        missing = chains.missing(events)
        if missing:
            names = [self.keys.audit_head(n) for n in missing]
            chains.read(missing, _watch_and_get(pipe, names))

    def _write(
        self,
        pipe: Any,
        chains: _Chains,
        change: Change,
        *,
        writes: _Writes | None = None,
        deliver: bool = True,
    ) -> None:
        """Queue the commands of ``change`` on a MULTI pipeline, its audit entries on ``chains``
        (whose heads the caller read before ``MULTI`` and flushes before ``EXEC``).

        ``writes`` gathers the record and pending-index writes for the caller to queue once;
        ``deliver=False`` (a canary's decision) records the decision but hands it to nobody.
        """
        record = change.record
        events = list(change.events)
        if record is not None:
            batch = _Writes() if writes is None else writes
            kept = batch.expiring if record.state.terminal and self.retention_s else batch.records
            kept[self.keys.req(record.id)] = record_json(record)
            if record.state is State.PENDING:
                score = record.deadline if record.deadline is not None else math.inf
                batch.pending[record.id] = score
            else:
                batch.done.append(record.id)
            if writes is None:
                batch.queue(pipe, self)
            glass = record.break_glass
            if glass is not None:
                if glass.acked_by is None and not glass.overdue_reported:
                    pipe.zadd(self.keys.break_glass, {record.id: glass.ack_deadline})
                else:
                    pipe.zrem(self.keys.break_glass, record.id)
        decision = change.decision
        if decision is not None and not deliver:
            events = _with_delivery(events, decision, [])
        elif decision is not None:
            payload = decision.model_dump_json()
            pipe.lpush(self.keys.decision(decision.request_id), payload)
            pipe.expire(self.keys.decision(decision.request_id), self.decision_ttl_s)
            pipe.xadd(
                self.keys.decisions,
                {"decision": payload},
                maxlen=DECISIONS_MAXLEN,
                approximate=True,
            )
            targets = ["list", "stream"]
            feedback = FeedbackEntry.of(record, decision) if record is not None else None
            if feedback is not None:
                key = self.keys.feedback(feedback.agent_id, feedback.action)
                pipe.lpush(key, feedback.model_dump_json())
                pipe.ltrim(key, 0, FEEDBACK_MAXLEN - 1)
            callback = record.request.callback_url if record is not None else None
            if callback:
                pipe.xadd(self.keys.webhooks, {"url": callback, "decision": payload})
                targets.append("webhook-outbox")
            events = _with_delivery(events, decision, targets)
        if record is not None:
            kinds = ",".join(e.kind for e in events if e.request_id == record.id) or "changed"
            pipe.xadd(
                self.keys.events,
                {"request_id": record.id, "kinds": kinds, "state": record.state.value},
                maxlen=DECISIONS_MAXLEN,
                approximate=True,
            )
        if events:
            now = self.clock()
            for event in events:
                chains.append(pipe, event, now)

    def _transact(self, attempt: Callable[[Any], T], check: str = "`hitl pending`") -> T:
        """Run ``attempt(pipe)`` (WATCH, read, MULTI, EXEC) until it commits without a conflict.

        A connection lost before EXEC was sent wrote nothing. Once EXEC was sent the outcome is
        unknown (Redis may have committed and only the reply was lost): that is reported as
        ``StoreUnavailable(maybe_committed=True)`` naming how to ``check``, and never retried
        blindly (redis-py turns such a loss while watching into a WatchError).
        """
        for n in range(self.max_retries):
            sent = [False]
            try:
                with self.redis.pipeline(transaction=True) as pipe:
                    _track_exec(pipe, sent)
                    return attempt(pipe)
            except WatchError as exc:
                cause = exc.__context__
                if isinstance(cause, RedisConnectionError | RedisTimeoutError):
                    self._drop_idle_connections()
                    if sent[0]:
                        raise _maybe_committed(cause, check) from exc
                # Someone else committed first; back off a little so a crowd spreads out.
                if n > 3:
                    time.sleep(random.uniform(0, min(0.02, 0.0005 * n)))
                continue
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self._drop_idle_connections()
                if sent[0]:
                    raise _maybe_committed(exc, check) from exc
                raise _unavailable(exc) from exc
        raise StoreUnavailable(
            f"gave up after {self.max_retries} conflicting attempts; nothing was written"
        )

    def _drop_idle_connections(self) -> None:
        """After a lost connection, close the pooled ones so that each reconnects (through the
        sentinels, to the new master after a failover): redis-py's pipeline reset re-opens a
        dropped watching connection to its old address just to send ``UNWATCH``."""
        self.redis.connection_pool.disconnect(inuse_connections=False)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise _unavailable(exc) from exc
