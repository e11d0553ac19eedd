"""The Redis key names of the wire protocol, under one configurable prefix (default ``hitl:``)."""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass

__all__ = ["AUDIT_CHAINS", "Keys"]

AUDIT_CHAINS = 16
"""How many audit chains the log is sharded into (by request id). Fixed: changing it would move
requests to other chains, so it is part of the key layout, not a setting."""


@dataclass(frozen=True)
class Keys:
    """Every key hitl touches. ``Keys("acme:hitl:").req("r1") == "acme:hitl:req:r1"``."""

    prefix: str = "hitl:"

    @property
    def requests(self) -> str:
        """Stream agents ``XADD`` to (field ``request``)."""
        return f"{self.prefix}requests"

    @property
    def dead(self) -> str:
        """Stream of rejected input, with the reason and the original payload."""
        return f"{self.prefix}dead"

    @property
    def pending(self) -> str:
        """Sorted set of pending request ids, scored by deadline (``inf`` when none)."""
        return f"{self.prefix}pending"

    @property
    def decisions(self) -> str:
        """Stream of every Decision, for subscribers."""
        return f"{self.prefix}decisions"

    @staticmethod
    def chain_of(request_id: str | None) -> int:
        """The audit chain a request's entries go to: CRC-32 of its id modulo
        :data:`AUDIT_CHAINS`; entries about no request (policy reloads, tokens) go to chain 0."""
        if not request_id:
            return 0
        return zlib.crc32(request_id.encode()) % AUDIT_CHAINS

    def audit(self, chain: int) -> str:
        """Stream of one chain's hash-chained audit entries (``{n}`` is a Redis Cluster hash
        tag: a chain and its head live in one slot)."""
        return f"{self.prefix}audit:{{{chain}}}"

    def audit_head(self, chain: int) -> str:
        """One chain's last ``{seq, hash}``; every append is conditional on it (WATCH)."""
        return f"{self.prefix}audit:{{{chain}}}:head"

    @property
    def audit_chains(self) -> list[str]:
        """The stream of every chain, chain 0 first (a checkpoint names its chain this way)."""
        return [self.audit(n) for n in range(AUDIT_CHAINS)]

    @property
    def audit_checkpoint(self) -> str:
        """The newest signed checkpoint (a copy; the anchor outside Redis is what counts)."""
        return f"{self.prefix}audit:checkpoint"

    @property
    def webhooks(self) -> str:
        """Outbox stream of decisions whose request has a ``callback_url``."""
        return f"{self.prefix}webhooks"

    @property
    def notify(self) -> str:
        """Stream of the scheduler's notifications (escalations, reminders, digests) for the
        channels; ``<prefix>notified:<key>`` marks one as sent."""
        return f"{self.prefix}notify"

    @property
    def break_glass(self) -> str:
        """Sorted set of break-glass approvals awaiting acknowledgement, scored by deadline."""
        return f"{self.prefix}breakglass"

    @property
    def events(self) -> str:
        """Stream of record changes (``request_id``, ``kinds``, ``state``) for channel adapters:
        whoever changed a request (CLI, Slack, scheduler), every posted card gets re-rendered."""
        return f"{self.prefix}events"

    @property
    def reminded_until(self) -> str:
        """The deadline up to which the sweep has sent reminders (a float, as text)."""
        return f"{self.prefix}sweep:reminded-until"

    @property
    def tokens(self) -> str:
        """Set of the ids of personal API tokens (``hitl tokens list``)."""
        return f"{self.prefix}tokens"

    @property
    def teams_conversations(self) -> str:
        """Hash: Teams conversation id -> the bot's ``ConversationReference`` there (JSON), stored
        when the bot is installed or first messaged, to post proactively later."""
        return f"{self.prefix}teams:conversations"

    @property
    def teams_names(self) -> str:
        """Hash: ``user:<aadObjectId>`` / ``channel:<name>`` -> a Teams conversation id."""
        return f"{self.prefix}teams:names"

    def token(self, token_id: str) -> str:
        """String: a personal API token's record (JSON); the token itself is never stored."""
        return f"{self.prefix}token:{token_id}"

    def deliveries(self, request_id: str) -> str:
        """Hash: the notifications sent about one request (email, SMS, PagerDuty, Jira), one
        Delivery JSON per field (``hitl show`` lists them)."""
        return f"{self.prefix}deliveries:{request_id}"

    def delivery_ref(self, ref: str) -> str:
        """String ``<request id> <delivery key>``: finds a delivery by its provider's id (a
        Twilio message SID in a status callback)."""
        return f"{self.prefix}delivery-ref:{ref}"

    def link_used(self, link_id: str) -> str:
        """Set once a decision link (email/SMS) is used: each link acts once."""
        return f"{self.prefix}link-used:{link_id}"

    def web(self, kind: str, name: str) -> str:
        """The web inbox's records: ``session``, ``link`` (one-time sign-in links) and
        ``password`` (a reviewer's signed argon2 hash), ``failures`` (sign-in failure counts)."""
        return f"{self.prefix}web:{kind}:{name}"

    def label(self, request_id: str) -> str:
        """String: the latest label (``correct``/``incorrect``) put on a decided request."""
        return f"{self.prefix}label:{request_id}"

    @property
    def canaries(self) -> str:
        """Set: the ids of canary requests (synthetic, should be rejected); their decisions are
        delivered to no agent. Written before the canary is submitted."""
        return f"{self.prefix}canaries"

    def feedback(self, agent_id: str, action: str) -> str:
        """List: the newest human decisions on one agent's requests for one action
        (:class:`~hitl.models.FeedbackEntry` JSON, newest first, capped). Both names may hold
        ``:``, so the key carries a digest of the pair, never the names themselves."""
        pair = json.dumps([agent_id, action]).encode()
        return f"{self.prefix}feedback:{hashlib.sha256(pair).hexdigest()[:32]}"

    @property
    def controls(self) -> str:
        """Stream of every override (pause, resume, stop) as signed Control JSON."""
        return f"{self.prefix}controls"

    def agent_control(self, agent_id: str) -> str:
        """String: the agent's latest pause or resume (signed Control JSON)."""
        return f"{self.prefix}control:agent:{agent_id}"

    def session_control(self, session_id: str) -> str:
        """String: the stop of a session (signed Control JSON); a stop is final."""
        return f"{self.prefix}control:session:{session_id}"

    def seen(self, request_id: str) -> str:
        """String (with a TTL): when a reviewer first saw the request (review latency)."""
        return f"{self.prefix}seen:{request_id}"

    def notified(self, key: str) -> str:
        """String (with a TTL): the scheduler's notification ``key`` was sent (sent once)."""
        return f"{self.prefix}notified:{key}"

    def digest(self, part: str) -> str:
        """The digests' bookkeeping (:mod:`hitl.queue.digest`): ``q:<dest>`` (zset of waiting
        ids), ``due`` (zset of destinations), ``outbox`` (zset), ``doc:<digest id>`` (string),
        ``of:<request id>`` (string), ``lock:<dest>`` (string)."""
        return f"{self.prefix}digest:{part}"

    def pace(self, destination: str, window: int) -> str:
        """Counter (with a TTL) of cards posted to ``destination`` in time window ``window``."""
        return f"{self.prefix}pace:{destination}:{window}"

    def req(self, request_id: str) -> str:
        """Hash: the request record (field ``record``) and its ``state``."""
        return f"{self.prefix}req:{request_id}"

    def decision(self, request_id: str) -> str:
        """List the blocked agent ``BLPOP``s; holds one Decision JSON, with a TTL."""
        return f"{self.prefix}decision:{request_id}"
