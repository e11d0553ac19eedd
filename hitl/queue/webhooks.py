"""Webhook delivery: POST each decision to its request's ``callback_url``, with retries.

Decisions reach the outbox stream ``hitl:webhooks`` in the same transaction that decides them.
The deliverer reads it through a consumer group, POSTs the Decision JSON with an
``X-Hitl-Signature: ed25519 kid=<key id>,sig=<base64>`` header (the service's Ed25519
signature of ``b"hitl-webhook/1\\n" + body``; receivers verify it with the public keys, and the
Decision inside carries its own signature too), retries failures with exponential
backoff, and audits the result (``webhook_delivered`` or ``webhook_failed``). An entry is
acknowledged only after that, so a deliverer that dies mid-retry leaves it for another one
(the reading is :class:`~hitl.queue.streams.GroupReader`'s).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

import aiohttp

from hitl.keys import KeyRing, PublicKeys
from hitl.queue.audit import AuditEvent
from hitl.queue.store import Store
from hitl.queue.streams import Entry, GroupReader, follow

__all__ = ["WebhookDeliverer", "signature_header", "verify_signature_header"]

log = logging.getLogger("hitl.webhooks")


WEBHOOK_DOMAIN = b"hitl-webhook/1\n"


def signature_header(keyring: KeyRing, body: bytes) -> str:
    """The value of ``X-Hitl-Signature`` for ``body``: ``ed25519 kid=<id>,sig=<base64>``."""
    kid, sig = keyring.sign(WEBHOOK_DOMAIN + body)
    return f"ed25519 kid={kid},sig={sig}"


def verify_signature_header(keys: PublicKeys, body: bytes, header: str) -> bool:
    """True when ``header`` is a valid ``X-Hitl-Signature`` of ``body`` by a trusted key."""
    scheme, _, rest = header.partition(" ")
    fields = dict(part.partition("=")[::2] for part in rest.split(","))
    if scheme != "ed25519" or "kid" not in fields or "sig" not in fields:
        return False
    return keys.verify(fields["kid"], WEBHOOK_DOMAIN + body, fields["sig"])


class WebhookDeliverer:
    def __init__(
        self,
        store: Store,
        *,
        group: str = "hitl-webhooks",
        attempts: int = 5,
        first_delay_s: float = 0.5,
        timeout_s: float = 10.0,
        claim_idle_ms: int = 60_000,
    ) -> None:
        self.store = store
        self.keys = store.keys
        self.group = group
        self.name = f"{socket.gethostname()}-{os.getpid()}"
        self.attempts = attempts
        self.first_delay_s = first_delay_s
        self.timeout_s = timeout_s
        self.claim_idle_ms = claim_idle_ms
        self.reader = GroupReader(
            store.redis,
            self.keys.webhooks,
            group,
            consumer=self.name,
            start="0",  # an outbox: every decision queued before the group existed counts
            count=20,
            claim_idle_ms=claim_idle_ms,
            claim_every_s=0.0,
        )

    def ensure_group(self) -> None:
        self.reader.ensure_group()

    def read(self, block_ms: int = 1000) -> list[Entry]:
        """Entries another deliverer abandoned, else new ones (see :class:`GroupReader`)."""
        return self.reader.read(block_ms)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, through Redis outages (see :func:`follow`). Each entry
        is acknowledged by :meth:`deliver` once its result is audited."""
        async with aiohttp.ClientSession() as session:

            async def deliver_all(entries: list[Entry]) -> None:
                results = await asyncio.gather(
                    *(self.deliver(session, e) for e in entries), return_exceptions=True
                )
                for result in results:
                    # Typically Redis failing while auditing/acking: that entry stays
                    # unacknowledged and is reclaimed later; follow() backs off.
                    if isinstance(result, BaseException):
                        raise result

            await follow(self.reader, deliver_all, stop, block_ms=1000, ack=False)

    async def deliver(self, session: aiohttp.ClientSession, entry: Sequence[Any]) -> bool:
        entry_id, fields = entry[0], entry[1]
        url, body = fields["url"], fields["decision"].encode()
        request_id = _request_id(fields["decision"])
        headers = {
            "Content-Type": "application/json",
            "X-Hitl-Signature": signature_header(self.store.require_signer(), body),
            "User-Agent": "hitl-webhooks/1",
        }
        delay, last = self.first_delay_s, ""
        for attempt in range(1, self.attempts + 1):
            try:
                timeout = aiohttp.ClientTimeout(total=self.timeout_s)
                async with session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                    if 200 <= resp.status < 300:
                        await self._finish(entry_id, request_id, "webhook_delivered", url, attempt)
                        return True
                    last = f"HTTP {resp.status}"
                    if 400 <= resp.status < 500 and resp.status not in (408, 429):
                        break  # the receiver refuses this body: retrying will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                await asyncio.sleep(delay)
                delay *= 2
        await self._finish(entry_id, request_id, "webhook_failed", url, attempt, last)
        return False

    async def _finish(
        self,
        entry_id: str,
        request_id: str | None,
        kind: str,
        url: str,
        tries: int,
        error: str = "",
    ) -> None:
        details: dict[str, Any] = {"url": url, "attempts": tries}
        if error:
            details["error"] = error
        event = AuditEvent(kind, request_id, "webhooks", details)

        def commit() -> None:
            self.store.append_events([event])
            # Done with: acknowledged and deleted together, so the outbox holds only open work.
            self.reader.ack([entry_id], delete=True)

        await asyncio.to_thread(commit)


def _request_id(decision_json: str) -> str | None:
    import json

    try:
        value = json.loads(decision_json).get("request_id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None
