"""Personal API tokens: how the HTTP API (and so the CLI) knows who is calling.

A token is ``hitl_`` + base64url(payload) + ``.`` + base64url(signature)::

    payload   = canonical JSON {"exp", "iat", "kid", "role", "sub", "tid"}
    signature = Ed25519 by the service keyring (key ``kid``) over b"hitl-token/1\\n" + payload

The service accepts a token when the signature verifies with its own keyring's public keys, the
token has not expired, and a live record ``<prefix>token:<tid>`` exists in Redis (so a token can
be revoked). Redis write access alone therefore mints nothing: a planted record has no signature,
and an edited payload breaks it. Issuing needs the keyring (an operator's credential). The
identity is the token's ``sub``, canonicalized to the reviewer directory's id when issued::

    token, record = issue(records, ring, policy, "Bob@example.com", actor="ops")   # sub "bob"
    caller = authenticate(records, ring.public(), policy, token)
    caller.reviewer()     # Reviewer(user_id="bob", display_name="Bob Brown", channel="api")
    revoke(records, record.tid, actor="ops")

Creation, revocation and every refused use are audited (``token_created``, ``token_revoked``,
``token_refused``); the token itself is never written anywhere.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from hitl.errors import InvalidRequest, NotAuthorized, NotFound, Unauthenticated
from hitl.keys import KeyRing, PublicKeys
from hitl.models import Reviewer
from hitl.queue.audit import AuditEvent
from hitl.queue.tokens import Role, TokenRecord, TokenRecords

__all__ = [
    "API_TOKEN",
    "TOKEN_PREFIX",
    "Caller",
    "Claims",
    "Directory",
    "Format",
    "authenticate",
    "decode",
    "encode",
    "issue",
    "require_operator",
    "revoke",
]

TOKEN_PREFIX = "hitl_"
DOMAIN = b"hitl-token/1\n"
"""Signed before the payload: a token signature can never pass for a decision's or a
checkpoint's, which the same keyring signs."""


@dataclass(frozen=True)
class Format:
    """A kind of signed credential: its text prefix and the domain signed before its payload.

    API tokens are :data:`API_TOKEN`; the web inbox's session cookies and one-time sign-in
    links (:mod:`hitl.handlers.sessions`) are their own formats, so none passes for another.
    """

    prefix: str
    domain: bytes


API_TOKEN = Format(TOKEN_PREFIX, DOMAIN)
DEFAULT_EXPIRES_DAYS = 90.0
MAX_TOKEN_CHARS = 2048


class Claims(BaseModel):
    """What a token says, once its signature is verified."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    tid: str
    sub: str
    role: Role
    iat: float
    exp: float
    kid: str


class _Entry(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def display_name(self) -> str: ...


@runtime_checkable
class Directory(Protocol):
    """The server policy's reviewer directory (:class:`hitl.policies.Policy` is one)."""

    def reviewer(self, user_id: str) -> _Entry | None: ...


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of the API."""

    tid: str
    sub: str
    role: Role
    display_name: str = ""
    channel: str = "api"
    """Recorded on votes and decisions: ``api`` for a token, ``web`` for an inbox session."""

    @property
    def operator(self) -> bool:
        return self.role == "operator"

    def reviewer(self) -> Reviewer:
        """The identity recorded on votes and decisions made with this credential."""
        return Reviewer(user_id=self.sub, display_name=self.display_name, channel=self.channel)


# -- the format (pure) -------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(claims: Claims, ring: KeyRing, form: Format = API_TOKEN) -> str:
    """The token for ``claims``, signed by ``ring``'s active key (which must be ``claims.kid``)."""
    payload = json.dumps(claims.model_dump(), sort_keys=True, separators=(",", ":")).encode()
    kid, signature = ring.sign(form.domain + payload)
    if kid != claims.kid:
        raise ValueError(f"claims name key {claims.kid}, the keyring signs with {kid}")
    return form.prefix + _b64(payload) + "." + _b64(base64.b64decode(signature))


def _parts(token: str, form: Format = API_TOKEN) -> tuple[bytes, bytes]:
    if len(token) > MAX_TOKEN_CHARS or not token.startswith(form.prefix):
        raise Unauthenticated("malformed")
    body, dot, sig = token[len(form.prefix) :].partition(".")
    try:
        return _unb64(body), _unb64(sig) if dot else b""
    except (binascii.Error, ValueError):
        raise Unauthenticated("malformed") from None


def claimed_subject(token: str, form: Format = API_TOKEN) -> str:
    """What an unverified token claims to be (for the audit entry of a refusal; bounded)."""
    try:
        data = json.loads(_parts(token, form)[0])
    except (Unauthenticated, ValueError):
        return ""
    return str(data.get("sub", ""))[:64] if isinstance(data, dict) else ""


def decode(token: str, public: PublicKeys, form: Format = API_TOKEN) -> Claims:
    """The claims of a token whose signature verifies, else :class:`Unauthenticated`.

    The error's message is the refusal's reason code: ``malformed`` or ``bad_signature``.
    Expiry and revocation are checked by :func:`authenticate`.
    """
    payload, signature = _parts(token, form)
    try:
        claims = Claims.model_validate_json(payload)
    except ValidationError:
        raise Unauthenticated("malformed") from None
    if not signature or not public.verify(
        claims.kid, form.domain + payload, base64.b64encode(signature).decode("ascii")
    ):
        raise Unauthenticated("bad_signature")
    return claims


# -- issue, authenticate, revoke ---------------------------------------------------------------


def issue(
    records: TokenRecords,
    ring: KeyRing,
    directory: Directory | None,
    subject: str,
    *,
    actor: str,
    operator: bool = False,
    label: str = "",
    expires_days: float = DEFAULT_EXPIRES_DAYS,
) -> tuple[str, TokenRecord]:
    """A new token for ``subject``; its record is stored and its creation audited.

    A reviewer token names someone in the server policy's directory (canonicalized to their
    directory id); an operator token may name anyone (a person or a service account).
    """
    subject = subject.strip()
    if not subject or len(subject) > 128:
        raise InvalidRequest("the token needs a name of 1 to 128 characters")
    if not 0 < expires_days <= 3660:
        raise InvalidRequest(f"--expires must be 1 to 3660 days, got {expires_days:g}")
    if len(label) > 200:
        raise InvalidRequest("keep the label under 200 characters")
    if not operator:
        entry = directory.reviewer(subject) if directory is not None else None
        if entry is None:
            raise InvalidRequest(
                f"{subject!r} is not in the server policy's reviewer directory; add them to the "
                "policy's `reviewers:` first (operator tokens, --operator, may name anyone)"
            )
        subject = entry.id
    now = records.store.clock()
    claims = Claims(
        tid="t-" + secrets.token_hex(6),
        sub=subject,
        role="operator" if operator else "reviewer",
        iat=round(now, 3),
        exp=round(now + expires_days * 86400, 3),
        kid=ring.active,
    )
    token = encode(claims, ring)
    record = TokenRecord(
        tid=claims.tid,
        sub=claims.sub,
        role=claims.role,
        label=label,
        iat=claims.iat,
        exp=claims.exp,
        created_by=actor,
    )
    event = AuditEvent(
        "token_created",
        None,
        actor,
        {"tid": claims.tid, "sub": claims.sub, "role": claims.role, "label": label,
         "exp": claims.exp, "kid": claims.kid},
    )  # fmt: skip
    records.create(record, event)
    return token, record


def authenticate(
    records: TokenRecords, public: PublicKeys, directory: Directory | None, token: str
) -> Caller:
    """Who presents ``token``, or :class:`Unauthenticated` (the refusal is audited first)."""
    tid: str | None = None
    claimed = ""
    try:
        claims = decode(token, public)
        tid, claimed = claims.tid, claims.sub
        return _admit(records, directory, claims)
    except Unauthenticated as exc:
        reason = str(exc)
        details: dict[str, object] = {"reason": reason, "tid": tid}
        if tid is None:  # unverified: what it claimed, for the investigation
            details["claimed_sub"] = claimed_subject(token)
        actor = claimed if tid is not None else "unknown"
        records.refused(AuditEvent("token_refused", None, actor, details))
        raise Unauthenticated(_WORDS.get(reason, reason)) from None


_WORDS = {
    "malformed": "the token is not a hitl token (hitl_...); check HITL_TOKEN",
    "bad_signature": "the token's signature does not verify with this service's keys",
    "expired": "the token has expired; ask an operator for a new one (`hitl tokens create`)",
    "unknown": "the token is not known to this service (it was never issued here, or is gone)",
    "revoked": "the token was revoked; ask an operator for a new one",
    "mismatch": "the token does not match its record",
    "not_in_directory": "the token's reviewer is no longer in the policy's reviewer directory",
}


def _admit(records: TokenRecords, directory: Directory | None, claims: Claims) -> Caller:
    if records.store.clock() >= claims.exp:
        raise Unauthenticated("expired")
    record = records.get(claims.tid)
    if record is None:
        raise Unauthenticated("unknown")
    if record.revoked_at is not None:
        raise Unauthenticated("revoked")
    if (record.sub, record.role) != (claims.sub, claims.role):
        raise Unauthenticated("mismatch")
    name = ""
    if directory is not None:
        entry = directory.reviewer(claims.sub)
        if entry is None and claims.role == "reviewer":
            raise Unauthenticated("not_in_directory")
        name = entry.display_name if entry is not None else ""
    return Caller(claims.tid, claims.sub, claims.role, name)


def revoke(records: TokenRecords, tid: str, *, actor: str) -> TokenRecord:
    """Mark a token revoked (audited). Revoking a revoked token changes nothing."""
    record = records.get(tid)
    if record is None:
        raise NotFound(f"no token {tid!r} (see `hitl tokens list`)")
    if record.revoked_at is not None:
        return record
    revoked = record.model_copy(update={"revoked_at": records.store.clock(), "revoked_by": actor})
    event = AuditEvent("token_revoked", None, actor, {"tid": tid, "sub": record.sub})
    records.revoke(revoked, event)
    return revoked


def require_operator(
    records: TokenRecords, caller: Caller, attempt: str, request_id: str | None = None
) -> None:
    """Refuse (audited, :class:`NotAuthorized`) unless ``caller`` holds an operator token."""
    if caller.operator:
        return
    reason = f"{attempt} needs an operator token; {caller.sub} holds a reviewer token"
    event = AuditEvent(
        "refused",
        request_id,
        caller.sub,
        {"attempt": attempt, "reason": reason, "channel": "api", "tid": caller.tid},
    )
    records.refused(event)
    raise NotAuthorized(f"{reason} (an operator creates one with `hitl tokens create --operator`)")
