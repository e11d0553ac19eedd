"""Canonical JSON, params hashes and the HMAC signature on every Decision.

The executing tool can check that it runs exactly what a human approved::

    from hitl.signing import verify_decision
    verify_decision(decision, key)   # raises SignatureError if params or outcome were altered

The signature covers ``request_id``, the SHA-256 of the canonical JSON of the final ``params``
and the ``outcome``, joined by newlines: ``HMAC-SHA256(key, "id\\nparams_sha256\\noutcome")``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from hitl.errors import SignatureError
from hitl.models import Decision

__all__ = ["canonical_json", "derive_key", "params_hash", "sign_decision", "verify_decision"]


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def params_hash(params: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``params``."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A sub-key for one purpose ("decision", "audit"), so that one secret never signs two kinds."""
    return hmac.new(secret, f"hitl/{purpose}".encode(), hashlib.sha256).digest()


def _message(decision: Decision) -> bytes:
    return (
        f"{decision.request_id}\n{params_hash(decision.params)}\n{decision.outcome.value}".encode()
    )


def sign_decision(decision: Decision, key: bytes) -> Decision:
    """Return ``decision`` with its ``signature`` set."""
    sig = hmac.new(key, _message(decision), hashlib.sha256).hexdigest()
    return decision.model_copy(update={"signature": sig})


def verify_decision(decision: Decision, key: bytes) -> Decision:
    """Return ``decision`` if its signature is right; raise :class:`SignatureError` otherwise."""
    expected = hmac.new(key, _message(decision), hashlib.sha256).hexdigest()
    if not decision.signature or not hmac.compare_digest(expected, decision.signature):
        raise SignatureError(
            f"decision for {decision.request_id} has a bad signature: its params or outcome are "
            "not what was decided (or the key differs); do not execute it"
        )
    return decision
