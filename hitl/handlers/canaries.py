"""Canary requests: synthetic requests that should be rejected, sent among the real ones.

A reviewer who approves a canary approved something the policy owner wrote to be refused (the
article's rubber-stamping, measured rather than guessed). A canary is an ordinary request on the
intake stream with a random id, so its card is like any other; what marks it is the
``<prefix>canaries`` set and a ``canary_created`` audit entry (with no request id, so it is not
in the request's own trail), written in one transaction before it is submitted. Its decision is
recorded and audited but delivered to no agent (:meth:`hitl.queue.store.Store.update`)::

    sender = CanarySender(store, authority, lambda: governance_of(authority))
    sender.after_stored(records)       # maybe one canary, at the configured rate
    catches(store)                     # {"bob": Catches(seen=3, caught=2)}
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hitl.models import ApprovalRequest, RequestRecord, State, VerdictKind
from hitl.policies import GovernanceConfig
from hitl.queue.audit import AuditEvent
from hitl.queue.store import Store

from .authority import Authority
from .queries import answerers

__all__ = ["CanarySender", "Catches", "catches", "send_canary"]

log = logging.getLogger("hitl.canaries")


@dataclass
class Catches:
    """One reviewer's answers to canaries: how many they answered, how many they rejected."""

    answered: int = 0
    caught: int = 0

    @property
    def rate(self) -> float | None:
        return round(self.caught / self.answered, 4) if self.answered else None


def send_canary(store: Store, request: ApprovalRequest) -> str:
    """Mark ``request`` as a canary (set + audit) and submit it, in one transaction."""
    assert request.id is not None
    rid = request.id
    event = AuditEvent(
        "canary_created", None, "governance", {"canary": rid, "action": request.action}
    )

    def submit(pipe: Any) -> None:
        pipe.sadd(store.keys.canaries, rid)
        pipe.xadd(store.keys.requests, {"request": request.model_dump_json()})

    store.append_events([event], also=submit)
    return rid


class CanarySender:
    """Decides, after each batch of stored requests, whether to send a canary."""

    def __init__(
        self,
        store: Store,
        authority: Authority,
        governance: Callable[[], GovernanceConfig],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.authority = authority
        self.governance = governance
        """Read at each batch, so a policy reload changes the rate at once."""
        self.rng = rng or random.SystemRandom()
        self.sent: set[str] = set()

    def after_stored(self, records: Sequence[RequestRecord]) -> list[str]:
        """For each stored request that needs a human (not a canary itself), with probability
        ``rate``, send one canary; returns the ids sent."""
        config = self.governance().canary
        if config is None:
            return []
        out = []
        for record in records:
            if record.id in self.sent or record.verdict.kind is not VerdictKind.REVIEW:
                continue
            if self.rng.random() >= config.rate:
                continue
            template = self.rng.choice(config.requests)
            request = ApprovalRequest.model_validate({**template, "id": uuid.uuid4().hex})
            if self.authority.evaluate(request).kind is not VerdictKind.REVIEW:
                log.warning("canary %s skipped: the policy would not ask a human", request.action)
                continue
            out.append(send_canary(self.store, request))
        self.sent.update(out)
        return out


def catches(store: Store) -> dict[str, Catches]:
    """Per reviewer: the canaries they answered and those they rejected (caught)."""
    members: Any = store.redis.smembers(store.keys.canaries)
    ids = sorted(str(i) for i in members)
    out: dict[str, Catches] = {}
    for start in range(0, len(ids), 500):
        raws = store.redis.mget([store.keys.req(i) for i in ids[start : start + 500]])
        for raw in raws:
            if not raw:
                continue
            record = RequestRecord.model_validate_json(raw)
            for who in answerers(record):
                figures = out.setdefault(who.user_id, Catches())
                figures.answered += 1
                figures.caught += 0 if record.state is State.APPROVED else 1
    return out
