"""Decision signatures: Ed25519 over RFC 8785 canonical JSON, bound to the request they answer.

The service signs every Decision with its active key; an agent verifies it with the public keys
only, so the tool runs exactly what was decided, for exactly the request it asked about::

    from hitl.signing import verify_decision
    verify_decision(decision, public_keys, request_id="r-42", request_digest=digest)

What is signed: the bytes ``b"hitl-decision/1\\n" + rfc8785(decision without "signature")``. The
decision carries ``request_id``, ``request_digest`` (SHA-256 of the RFC 8785 bytes of the whole
request as submitted: action, params, agent and session ids, requester, dry_run, plan, ...), the
outcome, the final and original params, the reviewers, the reason, the policy version, the
request and decision times, ``dry_run`` and ``key_id``. Any language with an RFC 8785 library and
Ed25519 can verify it (see README, "Verifying a decision in another language").
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import rfc8785

from hitl.errors import SignatureError
from hitl.keys import KeyRing, PublicKeys
from hitl.models import ApprovalRequest, Control, Decision

__all__ = [
    "canonical_bytes",
    "canonical_json",
    "control_message",
    "decision_message",
    "params_hash",
    "request_digest",
    "sign_control",
    "sign_decision",
    "verify_control",
    "verify_decision",
]

DECISION_DOMAIN = b"hitl-decision/1\n"
CONTROL_DOMAIN = b"hitl-control/1\n"
"""A control's signature can never pass for a decision's, nor the reverse."""


def canonical_bytes(value: Any) -> bytes:
    """RFC 8785 (JCS) bytes: the same value gives the same bytes in every language.

    Most values take a fast path: the C JSON encoder (sorted keys, no spaces, UTF-8 kept) writes
    exactly the JCS bytes once integral floats are written as integers, as long as every other
    float prints the same in Python and ECMAScript (``1e-4 <= |x| < 1e16``) and no key holds a
    character beyond the Basic Multilingual Plane (JCS sorts keys by UTF-16 code units). Anything
    else goes through the ``rfc8785`` reference implementation, which also raises for values JCS
    cannot represent. ``tests/test_signing.py`` checks both paths give the same bytes.
    """
    try:
        simple = _jcs_safe(value)
    except _NotSimple:
        return rfc8785.dumps(value)
    try:
        text = json.dumps(simple, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError):
        return rfc8785.dumps(value)  # the reference implementation says what is wrong


class _NotSimple(Exception):
    """A value the fast path does not write exactly as JCS does."""


_MAX_SAFE = 2**53 - 1


def _jcs_safe(value: Any) -> Any:
    """``value`` with integral floats as ints, or :class:`_NotSimple`."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                raise _NotSimple
            out[key] = item if type(item) is str or item is None else _jcs_safe(item)
        return out
    if kind is float:
        if value.is_integer():
            if -_MAX_SAFE <= value <= _MAX_SAFE:
                return int(value)
            raise _NotSimple  # ECMAScript prints the shortest digits, then zeros
        if 1e-4 <= abs(value) < 1e16:
            return value
        raise _NotSimple
    if kind is int:
        if -_MAX_SAFE <= value <= _MAX_SAFE:
            return value
        raise _NotSimple
    if kind is list or kind is tuple:
        return [_jcs_safe(item) for item in value]
    raise _NotSimple  # subclasses (enums...) and anything else: the reference decides


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept (for hashing params and audit entries)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def params_hash(params: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``params``."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()


def request_digest(request: ApprovalRequest) -> str:
    """``sha256:<hex>`` of the RFC 8785 bytes of the whole request as submitted."""
    body = canonical_bytes(request.model_dump(mode="json"))
    return "sha256:" + hashlib.sha256(body).hexdigest()


def decision_message(decision: Decision) -> bytes:
    """The exact bytes the signature covers."""
    return DECISION_DOMAIN + canonical_bytes(
        decision.model_dump(mode="json", exclude={"signature"})
    )


def sign_decision(decision: Decision, keyring: KeyRing) -> Decision:
    """Return ``decision`` with ``key_id`` and ``signature`` set by the active key."""
    unsigned = decision.model_copy(update={"key_id": keyring.active, "signature": ""})
    kid, signature = keyring.sign(decision_message(unsigned))
    return unsigned.model_copy(update={"signature": signature, "key_id": kid})


def control_message(control: Control) -> bytes:
    """The exact bytes a control's signature covers."""
    return CONTROL_DOMAIN + canonical_bytes(control.model_dump(mode="json", exclude={"signature"}))


def sign_control(control: Control, keyring: KeyRing) -> Control:
    """Return ``control`` signed by the active key (see :class:`hitl.models.Control`)."""
    unsigned = control.model_copy(update={"key_id": keyring.active, "signature": ""})
    kid, signature = keyring.sign(control_message(unsigned))
    return unsigned.model_copy(update={"signature": signature, "key_id": kid})


def verify_control(control: Control, keys: PublicKeys) -> Control:
    """Return ``control`` if a trusted key signed it; else :class:`SignatureError`."""
    target = control.agent_id or control.session_id
    if (
        not control.signature
        or control.key_id not in keys.keys
        or not keys.verify(control.key_id, control_message(control), control.signature)
    ):
        raise SignatureError(
            f"the {control.kind} control for {target} does not verify: treat the agent as "
            "halted and tell an operator (someone may have written to Redis)"
        )
    return control


def verify_decision(
    decision: Decision,
    keys: PublicKeys,
    *,
    request_id: str | None = None,
    request_digest: str | None = None,
) -> Decision:
    """Return ``decision`` if it is genuine and answers the given request; else raise.

    :class:`SignatureError` when the signature does not verify with a trusted key, when it was
    issued for another request id (a replayed decision), or for another request under the same
    id (``request_digest`` differs: a request the agent did not make).
    """
    rid = decision.request_id
    if not decision.signature or not decision.key_id:
        raise SignatureError(f"decision for {rid} is not signed: do not execute it")
    if decision.key_id not in keys.keys:
        raise SignatureError(
            f"decision for {rid} is signed by key {decision.key_id!r}, which is not trusted "
            f"(trusted: {', '.join(keys.ids) or 'none'}): do not execute it"
        )
    if not keys.verify(decision.key_id, decision_message(decision), decision.signature):
        raise SignatureError(
            f"decision for {rid} has a bad signature: its content is not what was decided; "
            "do not execute it"
        )
    if request_id is not None and rid != request_id:
        raise SignatureError(
            f"received the decision for request {rid!r} while waiting for {request_id!r}: a "
            "decision is valid only for its own request; do not execute it"
        )
    if request_digest is not None and decision.request_digest != request_digest:
        raise SignatureError(
            f"the decision for {rid} answers a different request under the same id (digest "
            f"{decision.request_digest or 'missing'}, expected {request_digest}): do not execute it"
        )
    return decision
