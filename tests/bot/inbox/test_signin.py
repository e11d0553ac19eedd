"""Signing in to the inbox through its real pages: one-time links, passwords, sessions, CSRF,
cookie flags; every refusal audited."""

from __future__ import annotations

import redis

from hitl.bot.inbox import InboxSettings
from hitl.handlers.sessions import SESSION, issue_link, set_password
from hitl.handlers.tokens import Claims, encode
from hitl.keys import KeyRing
from hitl.queue.sessions import SessionRecord, WebRecords
from tests.api_server import ApiServer
from tests.bot.inbox.client import Browser, csrf_of
from tests.bot.inbox.conftest import Refund, SignedIn
from tests.conftest import KEYRING
from tests.scenarios.helpers import audit_entries


def _refusals(r: redis.Redis) -> list[str]:
    return [e["details"]["reason"] for e in audit_entries(r) if e["kind"] == "web_refused"]


def _link(api: ApiServer, who: str) -> str:
    return issue_link(WebRecords(api.service.store), KEYRING, api.api.directory, who, actor="t")


def test_every_page_sends_the_signed_out_to_sign_in(api: ApiServer) -> None:
    """Without a session each page redirects to the sign-in page, which comes back afterwards."""
    browser = Browser(api.url)
    for path in ("/inbox", "/inbox/r/r-1", "/inbox/history", "/inbox/stats", "/inbox/events"):
        status, _ = browser.get(path)
        assert (303, True) == (
            status,
            browser.last_headers["Location"].startswith("/inbox/login?next="),
        ), path


def test_a_link_signs_in_once(api: ApiServer, r: redis.Redis, refund: Refund) -> None:
    """A one-time link opens a session (the pending list shows); used again it is refused and
    the refusal audited."""
    refund("r-1")
    link = _link(api, "bob")
    browser = Browser(api.url)
    assert 303 == browser.sign_in_with_link(link)
    status, page = browser.get("/inbox")
    assert (200, True, True) == (status, "r-1" in page, "Bob Brown" in page)
    again = Browser(api.url)
    assert 401 == again.sign_in_with_link(link)
    assert ["used"] == _refusals(r)


def test_a_link_page_alone_does_not_use_the_link(api: ApiServer) -> None:
    """Fetching the link (a mail scanner, a chat unfurl) shows a button; only the POST signs in."""
    link = _link(api, "bob")
    Browser(api.url).get("/inbox/login/link?t=" + link)
    assert 303 == Browser(api.url).sign_in_with_link(link)


def test_password_sign_in_and_wrong_passwords(api: ApiServer, r: redis.Redis) -> None:
    """A right password signs in; a wrong one, an unknown reviewer, and a reviewer without a
    password are each refused with the same words and audited with their own reason."""
    web = WebRecords(api.service.store)
    set_password(web, KEYRING, api.api.directory, "bob@example.com", "a long passphrase", actor="t")
    browser = Browser(api.url)
    assert 401 == browser.sign_in("bob", "wrong password!")[0]
    assert 401 == browser.sign_in("mallory", "a long passphrase")[0]
    assert 401 == browser.sign_in("carol", "a long passphrase")[0]
    assert ["bad_password", "unknown_reviewer", "no_password"] == _refusals(r)
    status, _ = browser.sign_in("Bob@Example.com", "a long passphrase")
    assert (303, 200) == (status, browser.get("/inbox")[0])


def test_a_planted_password_record_signs_nobody_in(api: ApiServer, r: redis.Redis) -> None:
    """Someone with Redis write access who writes a password hash of their choosing for bob
    still cannot sign in as bob: the record carries no keyring signature."""
    from hitl.queue.sessions import PasswordRecord

    web = WebRecords(api.service.store)
    set_password(web, KEYRING, api.api.directory, "frank", "frank's own secret", actor="t")
    planted = web.password("frank")
    assert planted is not None
    web.put_password(
        PasswordRecord(user="bob", hash=planted.hash, set_at=planted.set_at, kid=planted.kid,
                       signature=planted.signature),
        __import__("hitl.queue.audit", fromlist=["AuditEvent"]).AuditEvent("x", None, "attacker"),
    )  # fmt: skip
    assert 401 == Browser(api.url).sign_in("bob", "frank's own secret")[0]
    assert "bad_password_record" == _refusals(r)[-1]


def test_sign_in_is_locked_after_many_failures(api: ApiServer, r: redis.Redis) -> None:
    """Ten failures lock a reviewer's password sign-in for a while, even with the right one."""
    web = WebRecords(api.service.store)
    set_password(web, KEYRING, api.api.directory, "bob", "a long passphrase", actor="t")
    browser = Browser(api.url)
    for _ in range(10):
        browser.sign_in("bob", "guess guess guess")
    assert 401 == browser.sign_in("bob", "a long passphrase")[0]
    assert "locked" == _refusals(r)[-1]


def test_sign_in_form_needs_its_csrf_token(api: ApiServer, r: redis.Redis) -> None:
    """A sign-in posted from another site (no matching CSRF cookie) is refused and audited."""
    status, _ = Browser(api.url).request(
        "POST", "/inbox/login", {"user": "bob", "password": "x", "csrf": "forged"}
    )
    assert (403, ["bad_csrf"]) == (status, _refusals(r))


def test_session_cookie_flags(api: ApiServer) -> None:
    """The session cookie is HttpOnly and SameSite=Lax; with Secure cookies on it is Secure and
    named __Host- (bound to this host, path /)."""
    browser = Browser(api.url)
    browser.sign_in_with_link(_link(api, "bob"))
    cookie = next(c for c in browser.set_cookies if c.startswith("hitl_session="))
    assert ("HttpOnly" in cookie, "SameSite=Lax" in cookie, "Secure" in cookie) == (
        True,
        True,
        False,
    )
    api.inbox.gate.settings = InboxSettings(secure_cookie="1")
    secure = Browser(api.url)
    secure.sign_in_with_link(_link(api, "bob"))
    cookie = next(c for c in secure.set_cookies if c.startswith("__Host-hitl_session="))
    assert ("Secure" in cookie, "Path=/" in cookie) == (True, True)


def test_forged_and_planted_sessions_are_refused(api: ApiServer, r: redis.Redis) -> None:
    """A session cookie signed by another key is refused (audited); a session record planted in
    Redis is useless without a cookie the service signed."""
    other = KeyRing.generate()
    now = api.service.store.clock()
    claims = Claims(tid="s-forged", sub="bob", role="reviewer", iat=now, exp=now + 600,
                    kid=other.active)  # fmt: skip
    WebRecords(api.service.store).put_session(
        SessionRecord(sid="s-forged", sub="bob", csrf="x", via="link", iat=now, exp=now + 600),
        __import__("hitl.queue.audit", fromlist=["AuditEvent"]).AuditEvent("x", None, "attacker"),
    )
    browser = Browser(api.url)
    browser.cookies["hitl_session"] = encode(claims, other, SESSION)
    assert 303 == browser.get("/inbox")[0]
    assert "session_bad_signature" == _refusals(r)[-1]
    assert "hitl_session" not in browser.cookies  # cleared: refused and audited once


def test_sign_out_ends_the_session(api: ApiServer, signed_in: SignedIn, r: redis.Redis) -> None:
    """After signing out, the old cookie no longer opens a page."""
    browser = signed_in("bob")
    old = dict(browser.cookies)
    status, _ = browser.post("/inbox/logout", {})
    assert 303 == status
    replay = Browser(api.url)
    replay.cookies = old
    assert 303 == replay.get("/inbox")[0]
    assert "session_unknown" == _refusals(r)[-1]
    assert "session_ended" in [e["kind"] for e in audit_entries(r)]


def test_login_page_has_a_csrf_token(api: ApiServer) -> None:
    """The sign-in form carries a token matching its cookie."""
    browser = Browser(api.url)
    _, page = browser.get("/inbox/login")
    assert csrf_of(page) == browser.cookies["hitl_login_csrf"]
