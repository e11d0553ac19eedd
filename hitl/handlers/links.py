"""Decision links: the Approve / Reject links of an email and the link of an SMS.

A link is ``<service>/api/v1/links/<token>``; the token is ``hitl_l`` + base64url(payload) + ``.``
+ base64url(signature)::

    payload   = canonical JSON {"act", "exp", "kid", "lid", "rid", "sub", "via"}
    signature = Ed25519 by the service keyring over b"hitl-link/1\\n" + payload

It names the request (``rid``), the reviewer it was sent to (``sub``, a directory id), what it
may do (``act``: ``approve``, ``reject`` or ``any`` for the SMS page that offers both), how it
was sent (``via``: ``email`` / ``sms``) and when it expires. Opening it (GET) only shows a
confirmation page; the decision is made by POSTing that page's form, through the one
:class:`~hitl.handlers.Decider`, as that reviewer, authorized by the same rules as every click
(role, not the requester, distinct approvers). Each link acts once: its ``lid`` is burned in
Redis (``SET NX``) before the decision, so a second use, a forwarded copy, is refused. Redis
access alone mints nothing: a link without the keyring's signature is refused. Every view and
every refusal is audited (``link_viewed``, ``link_refused``)::

    token = issue_link(ring, request_id="r-42", reviewer_id="bob", act="any", via="sms",
                       expires_at=now + 3600)
    links = Links(decider, ring.public())
    view = links.view(token)                    # audited; raises LinkRefused
    result = links.use(token, "approve", "ok")  # a Result, like decider.approve
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, NoReturn

from pydantic import BaseModel, ConfigDict, ValidationError

from hitl.errors import InvalidRequest, RefusedAttempt
from hitl.keys import KeyRing, PublicKeys
from hitl.models import RequestRecord, Reviewer
from hitl.queue.audit import AuditEvent

from .decisions import Decider, Result
from .tokens import Directory, _b64, _unb64

__all__ = ["LINK_PREFIX", "LinkClaims", "LinkRefused", "LinkView", "Links", "issue_link"]

LINK_PREFIX = "hitl_l"
DOMAIN = b"hitl-link/1\n"
"""Signed before the payload: a link's signature never passes for a token's or a decision's."""
MAX_LINK_CHARS = 1024
Act = Literal["approve", "reject", "any"]


class LinkRefused(RefusedAttempt):
    """A link that cannot act: malformed, forged, expired, used, or for a reviewer who is gone.

    ``reason`` is the code in the audit entry (``malformed``, ``bad_signature``, ``expired``,
    ``used``, ``not_in_directory``, ``not_allowed``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class LinkClaims(BaseModel):
    """What a link says, once its signature is verified."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    lid: str
    rid: str
    sub: str
    act: Act
    via: Literal["email", "sms"]
    exp: float
    kid: str


def issue_link(
    ring: KeyRing,
    *,
    request_id: str,
    reviewer_id: str,
    act: Act,
    via: Literal["email", "sms"],
    expires_at: float,
) -> str:
    """A signed link token for ``reviewer_id`` (a directory id) to decide ``request_id``."""
    claims = LinkClaims(
        lid=secrets.token_urlsafe(12),
        rid=request_id,
        sub=reviewer_id,
        act=act,
        via=via,
        exp=round(expires_at, 3),
        kid=ring.active,
    )
    payload = json.dumps(claims.model_dump(), sort_keys=True, separators=(",", ":")).encode()
    _, signature = ring.sign(DOMAIN + payload)
    return LINK_PREFIX + _b64(payload) + "." + _b64(base64.b64decode(signature))


def read_link(token: str, public: PublicKeys) -> LinkClaims:
    """The claims of a link whose signature verifies, else :class:`LinkRefused`."""
    if len(token) > MAX_LINK_CHARS or not token.startswith(LINK_PREFIX):
        raise LinkRefused("this is not a hitl decision link", "malformed")
    body, dot, sig = token[len(LINK_PREFIX) :].partition(".")
    try:
        payload, signature = _unb64(body), _unb64(sig)
        claims = LinkClaims.model_validate_json(payload)
    except (binascii.Error, ValueError, ValidationError):
        raise LinkRefused("this is not a hitl decision link", "malformed") from None
    if not dot or not public.verify(
        claims.kid, DOMAIN + payload, base64.b64encode(signature).decode("ascii")
    ):
        raise LinkRefused(
            "this link's signature does not verify: it was not issued by this service or was "
            "changed",
            "bad_signature",
        )
    return claims


@dataclass(frozen=True)
class LinkView:
    """What the confirmation page shows: the request, who the link is for, what it may do."""

    claims: LinkClaims
    record: RequestRecord
    reviewer: Reviewer


class Links:
    """Views and uses of decision links, through a :class:`Decider` (see the module docstring)."""

    def __init__(self, decider: Decider, public: PublicKeys) -> None:
        self.decider = decider
        self.store = decider.store
        self.public = public
        authority = decider.authority
        self.directory: Directory | None = authority if isinstance(authority, Directory) else None

    def view(self, token: str) -> LinkView:
        """The page a GET shows (audited ``link_viewed``); nothing is decided."""
        claims = self._admit(token, attempt="view")
        if self.store.redis.exists(self.store.keys.link_used(claims.lid)):
            self._refuse(claims, "used", "this link was already used; each link acts once", "view")
        record = self.store.get(claims.rid)
        reviewer = self._reviewer(claims)
        self._audit("link_viewed", claims, {"via": claims.via, "lid": claims.lid})
        return LinkView(claims, record, reviewer)

    def use(self, token: str, outcome: str, reason: str = "") -> Result:
        """Decide as the link's reviewer (POST of the confirmation form). The link is burned
        first: whatever the Decider answers, it never acts again."""
        claims = self._admit(token, attempt=outcome)
        if outcome not in ("approve", "reject"):
            raise InvalidRequest("outcome must be approve or reject", [("outcome", "invalid")])
        if claims.act not in ("any", outcome):
            self._refuse(claims, "not_allowed", f"this link can only {claims.act}", outcome)
        if outcome == "reject" and not reason.strip():
            raise InvalidRequest(
                "a rejection needs a reason: the agent learns from it", [("reason", "required")]
            )
        reviewer = self._reviewer(claims)
        ttl = max(1, int(claims.exp - self.store.clock()) + 60)
        burned = self.store.redis.set(self.store.keys.link_used(claims.lid), "1", nx=True, ex=ttl)
        if not burned:
            self._refuse(claims, "used", "this link was already used; each link acts once", outcome)
        self._audit("link_used", claims, {"via": claims.via, "lid": claims.lid, "outcome": outcome})
        if outcome == "approve":
            return self.decider.approve(claims.rid, reviewer, reason)
        return self.decider.reject(claims.rid, reviewer, reason)

    # -- internals -----------------------------------------------------------------------------

    def _admit(self, token: str, attempt: str) -> LinkClaims:
        try:
            claims = read_link(token, self.public)
        except LinkRefused as exc:
            details = {"reason": exc.reason, "attempt": attempt}
            self.store.append_events([AuditEvent("link_refused", None, "unknown", details)])
            raise
        if self.store.clock() >= claims.exp:
            self._refuse(claims, "expired", "this link has expired; decide in chat or the CLI",
                         attempt)  # fmt: skip
        return claims

    def _reviewer(self, claims: LinkClaims) -> Reviewer:
        name = ""
        if self.directory is not None:
            entry = self.directory.reviewer(claims.sub)
            if entry is None:
                gone = f"{claims.sub} is no longer in the reviewer directory"
                self._refuse(claims, "not_in_directory", gone, "view")
            name = entry.display_name
        return Reviewer(user_id=claims.sub, display_name=name, channel=claims.via)

    def _refuse(self, claims: LinkClaims, reason: str, message: str, attempt: str) -> NoReturn:
        details = {"reason": reason, "attempt": attempt, "via": claims.via, "lid": claims.lid}
        self._audit("link_refused", claims, details)
        raise LinkRefused(message, reason)

    def _audit(self, kind: str, claims: LinkClaims, details: Mapping[str, object]) -> None:
        self.store.append_events([AuditEvent(kind, claims.rid, claims.sub, dict(details))])
