"""Signing in to the web inbox: passwords, one-time links, sessions and their CSRF tokens.

Reviewers come from the server policy's directory, as for API tokens. A session cookie and a
one-time sign-in link are signed credentials in the format of API tokens
(:func:`hitl.handlers.tokens.encode`) with their own prefix and signing domain, so none passes
for another; a password record carries the keyring's signature over the reviewer and the argon2
hash. Redis write access therefore mints no session, no link and no password::

    set_password(web, ring, policy, "bob", "correct horse", actor="ops")
    link = issue_link(web, ring, policy, "bob", actor="ops")          # hitll_... (15 minutes)
    cookie, session = sign_in_with_link(web, ring, policy, link)      # once; then refused
    caller, session = authenticate_session(web, ring.public(), policy, cookie)
    caller.reviewer()      # Reviewer(user_id="bob", display_name="Bob Brown", channel="web")
    check_csrf(web, session, submitted, attempt="approve")            # else Unauthenticated

Every refusal (bad password, unknown reviewer, used or expired link, refused cookie, wrong CSRF
token, a form posted without a session) is audited as ``web_refused`` with its reason; sign-in
and sign-out as ``session_created`` / ``session_ended``; ``password_set`` when a password is set.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass

import argon2
import argon2.exceptions

from hitl.errors import InvalidRequest, Unauthenticated
from hitl.keys import KeyRing, PublicKeys
from hitl.queue.audit import AuditEvent
from hitl.queue.sessions import PasswordRecord, SessionRecord, WebRecords

from .tokens import Caller, Claims, Directory, Format, claimed_subject, decode, encode

__all__ = [
    "LINK",
    "SESSION",
    "SignIn",
    "authenticate_session",
    "check_csrf",
    "issue_link",
    "refuse",
    "set_password",
    "sign_in_with_link",
    "sign_in_with_password",
    "sign_out",
]

SESSION = Format("hitls_", b"hitl-session/1\n")
LINK = Format("hitll_", b"hitl-login-link/1\n")
PASSWORD_DOMAIN = b"hitl-password/1\n"

SESSION_HOURS = 8.0
LINK_MINUTES = 15.0
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
MAX_FAILURES = 10
"""Sign-in failures per reviewer within :data:`FAILURE_WINDOW_S` before sign-in is locked."""
FAILURE_WINDOW_S = 15 * 60

_hasher = argon2.PasswordHasher()
_DUMMY = _hasher.hash("not a password anyone has")
"""Verified against when the reviewer has no password, so both cases take as long."""


@dataclass(frozen=True)
class SignIn:
    """A new session: the cookie value to set and its record."""

    cookie: str
    session: SessionRecord


def refuse(web: WebRecords, reason: str, actor: str = "unknown", **details: object) -> None:
    """Audit a refusal of the inbox (``web_refused``) with its reason."""
    web.refused(AuditEvent("web_refused", None, actor[:64], {"reason": reason, **details}))


def _entry_id(directory: Directory | None, name: str) -> tuple[str, str] | None:
    entry = directory.reviewer(name.strip()) if directory is not None and name.strip() else None
    return (entry.id, entry.display_name) if entry is not None else None


# -- passwords ---------------------------------------------------------------------------------


def _password_message(user: str, hashed: str, set_at: float) -> bytes:
    body = json.dumps({"hash": hashed, "set_at": set_at, "user": user}, sort_keys=True)
    return PASSWORD_DOMAIN + body.encode()


def set_password(
    web: WebRecords,
    ring: KeyRing,
    directory: Directory | None,
    user: str,
    password: str,
    *,
    actor: str,
) -> PasswordRecord:
    """Store ``user``'s argon2 hash, signed by ``ring`` (audited ``password_set``)."""
    found = _entry_id(directory, user)
    if found is None:
        raise InvalidRequest(
            f"{user!r} is not in the server policy's reviewer directory; add them to the "
            "policy's `reviewers:` first"
        )
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidRequest(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    user = found[0]
    hashed = _hasher.hash(password)
    now = round(web.store.clock(), 3)
    kid, signature = ring.sign(_password_message(user, hashed, now))
    record = PasswordRecord(
        user=user, hash=hashed, set_at=now, set_by=actor, kid=kid, signature=signature
    )
    web.put_password(record, AuditEvent("password_set", None, actor, {"user": user, "kid": kid}))
    return record


def sign_in_with_password(
    web: WebRecords,
    ring: KeyRing,
    directory: Directory | None,
    name: str,
    password: str,
    *,
    hours: float = SESSION_HOURS,
) -> SignIn:
    """A session for the reviewer ``name`` if ``password`` is theirs, else :class:`Unauthenticated`
    (audited). After :data:`MAX_FAILURES` failures in a window, sign-in is locked for a while."""
    found = _entry_id(directory, name)
    key = found[0] if found is not None else name.strip().lower()[:64]
    if web.failures(key) >= MAX_FAILURES:
        refuse(web, "locked", key, via="password")
        raise Unauthenticated(
            "too many failed sign-ins; wait 15 minutes or ask an operator for a sign-in link "
            "(`hitl inbox login USER`)"
        )
    record = web.password(found[0]) if found is not None else None
    good = record is not None and ring.public().verify(
        record.kid, _password_message(record.user, record.hash, record.set_at), record.signature
    )
    try:
        _hasher.verify(record.hash if record is not None and good else _DUMMY, password[:4096])
        matched = record is not None and good
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        matched = False
    if not matched or found is None:
        web.failed(key, FAILURE_WINDOW_S)
        reason = (
            "unknown_reviewer"
            if found is None
            else "no_password"
            if record is None
            else ("bad_password_record" if not good else "bad_password")
        )
        refuse(web, reason, key, via="password")
        raise Unauthenticated("that name and password do not match a reviewer")
    return _new_session(web, ring, found, "password", hours)


# -- one-time links ----------------------------------------------------------------------------


def issue_link(
    web: WebRecords,
    ring: KeyRing,
    directory: Directory | None,
    user: str,
    *,
    actor: str,
    minutes: float = LINK_MINUTES,
) -> str:
    """A one-time sign-in credential for ``user`` (put it in ``/inbox/login/link?t=...``)."""
    found = _entry_id(directory, user)
    if found is None:
        raise InvalidRequest(
            f"{user!r} is not in the server policy's reviewer directory; add them to the "
            "policy's `reviewers:` first"
        )
    if not 0 < minutes <= 7 * 24 * 60:
        raise InvalidRequest(f"a link lasts 1 minute to 7 days, not {minutes:g} minutes")
    now = web.store.clock()
    claims = Claims(
        tid="l-" + secrets.token_hex(8),
        sub=found[0],
        role="reviewer",
        iat=round(now, 3),
        exp=round(now + minutes * 60, 3),
        kid=ring.active,
    )
    event = AuditEvent(
        "login_link_created", None, actor, {"link": claims.tid, "user": found[0], "exp": claims.exp}
    )
    web.put_link(claims.tid, claims.sub, claims.exp, event)
    return encode(claims, ring, LINK)


def sign_in_with_link(
    web: WebRecords, ring: KeyRing, directory: Directory | None, link: str
) -> SignIn:
    """A session for the link's reviewer; the link works once (audited refusal afterwards)."""
    try:
        claims = decode(link, ring.public(), LINK)
    except Unauthenticated as exc:
        refuse(web, str(exc), claimed_subject(link, LINK) or "unknown", via="link")
        raise Unauthenticated("this sign-in link is not valid; ask for a new one") from None
    reason = ""
    if web.store.clock() >= claims.exp:
        reason = "expired"
    elif web.take_link(claims.tid) != claims.sub:
        reason = "used"
    found = _entry_id(directory, claims.sub)
    if not reason and (found is None or found[0] != claims.sub):
        reason = "not_in_directory"
    if reason or found is None:
        refuse(web, reason, claims.sub, via="link", link=claims.tid)
        raise Unauthenticated(
            f"this sign-in link is {'expired' if reason == 'expired' else 'no longer valid'}: "
            "links work once, for 15 minutes; ask for a new one (`hitl inbox login USER`)"
        )
    return _new_session(web, ring, found, "link", SESSION_HOURS)


# -- sessions ----------------------------------------------------------------------------------


def _new_session(
    web: WebRecords, ring: KeyRing, who: tuple[str, str], via: str, hours: float
) -> SignIn:
    now = web.store.clock()
    claims = Claims(
        tid="s-" + secrets.token_hex(8),
        sub=who[0],
        role="reviewer",
        iat=round(now, 3),
        exp=round(now + hours * 3600, 3),
        kid=ring.active,
    )
    session = SessionRecord(
        sid=claims.tid,
        sub=claims.sub,
        csrf=secrets.token_urlsafe(24),
        via=via,
        iat=claims.iat,
        exp=claims.exp,
    )
    event = AuditEvent(
        "session_created", None, who[0], {"session": session.sid, "via": via, "exp": session.exp}
    )
    web.put_session(session, event)
    return SignIn(encode(claims, ring, SESSION), session)


def authenticate_session(
    web: WebRecords, public: PublicKeys, directory: Directory | None, cookie: str
) -> tuple[Caller, SessionRecord]:
    """Who holds the session cookie, or :class:`Unauthenticated` (audited)."""
    try:
        claims = decode(cookie, public, SESSION)
    except Unauthenticated as exc:
        refuse(web, f"session_{exc}", claimed_subject(cookie, SESSION) or "unknown")
        raise Unauthenticated("your session is not valid; sign in again") from None
    session = web.session(claims.tid)
    reason = ""
    if web.store.clock() >= claims.exp:
        reason = "session_expired"
    elif session is None:
        reason = "session_unknown"  # signed out, expired in Redis, or never stored
    elif session.sub != claims.sub:
        reason = "session_mismatch"
    found = _entry_id(directory, claims.sub)
    if not reason and found is None:
        reason = "not_in_directory"
    if reason or session is None or found is None:
        refuse(web, reason, claims.sub, session=claims.tid)
        raise Unauthenticated("your session has ended; sign in again")
    return Caller(claims.tid, found[0], "reviewer", found[1], channel="web"), session


def check_csrf(web: WebRecords, session: SessionRecord, submitted: str, *, attempt: str) -> None:
    """Refuse (audited, :class:`Unauthenticated`) a form whose CSRF token is not the session's."""
    if hmac.compare_digest(session.csrf.encode(), submitted.encode()[:256]):
        return
    refuse(web, "bad_csrf", session.sub, session=session.sid, attempt=attempt)
    raise Unauthenticated("the form's security token did not match; reload the page and retry")


def sign_out(web: WebRecords, session: SessionRecord) -> None:
    web.end_session(
        session.sid, AuditEvent("session_ended", None, session.sub, {"session": session.sid})
    )
