"""Signing in to the inbox and the checks in front of every page and form.

A page without a session redirects to the sign-in page; a form without a session, or with a
CSRF token that is not the session's, is refused (audited) before anything runs. The session
itself is :mod:`hitl.handlers.sessions`' signed cookie::

    gate = Gate(service, directory, renderer, InboxSettings.from_env())
    gate.mount(app)                               # /inbox/login, /inbox/login/link, /inbox/logout
    app.router.add_get("/inbox", gate.page(show_pending))
    app.router.add_post("/inbox/r/{id}/approve", gate.form(approve, "approve"))
"""

from __future__ import annotations

import asyncio
import os
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from hitl.bot.api.routes import MAX_BODY, ApiService
from hitl.errors import ConfigError, NotFound, Unauthenticated
from hitl.handlers.sessions import (
    authenticate_session,
    check_csrf,
    refuse,
    sign_in_with_link,
    sign_in_with_password,
    sign_out,
)
from hitl.handlers.tokens import Directory
from hitl.queue.sessions import WebRecords

from .rendering import PREFIX, Form, Page, Renderer, Visit, redirect

__all__ = ["Gate", "InboxSettings"]

LOGIN_CSRF = "hitl_login_csrf"


@dataclass(frozen=True)
class InboxSettings:
    """``HITL_INBOX_SECURE_COOKIE``: ``auto`` (Secure when the page came over https, also behind
    a proxy that says so in X-Forwarded-Proto), ``1`` always, ``0`` never (plain-http localhost).
    ``HITL_INBOX_SESSION_HOURS``: how long a sign-in lasts (default 8)."""

    secure_cookie: str = "auto"
    session_hours: float = 8.0

    @classmethod
    def from_env(cls) -> InboxSettings:
        secure = os.environ.get("HITL_INBOX_SECURE_COOKIE", "auto").strip().lower() or "auto"
        if secure not in ("auto", "1", "0"):
            raise ConfigError(f"HITL_INBOX_SECURE_COOKIE must be auto, 1 or 0, got {secure!r}")
        hours = os.environ.get("HITL_INBOX_SESSION_HOURS", "8")
        try:
            session_hours = float(hours)
        except ValueError:
            raise ConfigError(f"HITL_INBOX_SESSION_HOURS must be hours, got {hours!r}") from None
        if not 0 < session_hours <= 24 * 30:
            raise ConfigError("HITL_INBOX_SESSION_HOURS must be above 0 and at most 720")
        return cls(secure, session_hours)


class Gate:
    """Sessions, CSRF and the sign-in pages."""

    def __init__(
        self,
        service: ApiService,
        directory: Directory | None,
        renderer: Renderer,
        settings: InboxSettings,
    ) -> None:
        self.service = service
        self.directory = directory
        self.web = WebRecords(service.store)
        self.public = service.keyring.public()
        self.settings = settings
        self.render = renderer.render

    def mount(self, app: web.Application) -> None:
        r = app.router
        r.add_get(PREFIX + "/login", self.login_page)
        r.add_post(PREFIX + "/login", self.login)
        r.add_get(PREFIX + "/login/link", self.link_page)
        r.add_post(PREFIX + "/login/link", self.link_login)
        r.add_post(PREFIX + "/logout", self.form(self.logout, "logout"))

    def _secure(self, request: web.Request) -> bool:
        if self.settings.secure_cookie != "auto":
            return self.settings.secure_cookie == "1"
        forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return request.secure or forwarded == "https"

    def _cookie_name(self, request: web.Request) -> str:
        """``__Host-`` binds the cookie to this host and path / (browsers demand Secure)."""
        return "__Host-hitl_session" if self._secure(request) else "hitl_session"

    def _set_cookie(
        self, response: web.StreamResponse, request: web.Request, name: str, value: str, **kw: Any
    ) -> None:
        response.set_cookie(
            name,
            value,
            path="/",
            httponly=True,
            secure=self._secure(request),
            samesite="Lax",
            **kw,
        )

    async def _visit(self, request: web.Request) -> Visit | None:
        cookie = request.cookies.get(self._cookie_name(request), "")
        if not cookie:
            return None
        try:
            caller, session = await asyncio.to_thread(
                authenticate_session,
                self.web,
                self.public,
                self.directory,
                cookie,
            )
        except Unauthenticated:
            return None  # audited by authenticate_session
        return Visit(caller, session)

    def page(self, fn: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A page that needs a session: without one, the sign-in page (then back here)."""

        async def handle(request: web.Request) -> web.StreamResponse:
            visit = await self._visit(request)
            if visit is None:
                target = urllib.parse.quote(request.path_qs, safe="")
                response = redirect(f"{PREFIX}/login?next={target}")
                if self._cookie_name(request) in request.cookies:  # refused (and audited) once
                    response.del_cookie(self._cookie_name(request), path="/")
                return response
            try:
                return await fn(request, visit)
            except NotFound as exc:
                return self.render(request, "error.html", visit, status=404, message=str(exc))

        return handle

    def form(
        self, fn: Form, attempt: str
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A form post: refused (audited, nothing changed) without a session or with a CSRF
        token that is not the session's."""

        async def handle(request: web.Request) -> web.StreamResponse:
            target = request.match_info.get("id")
            if request.content_length is not None and request.content_length > MAX_BODY:
                return self.render(
                    request, "error.html", None, status=413, message="the form is too large"
                )
            visit = await self._visit(request)
            if visit is None:
                await asyncio.to_thread(
                    refuse, self.web, "no_session", attempt=attempt, request_id=target
                )
                return self.render(
                    request,
                    "error.html",
                    None,
                    status=401,
                    message="you are not signed in (or your session ended): nothing was done",
                )
            data = await request.post()
            try:
                await asyncio.to_thread(
                    check_csrf, self.web, visit.session, str(data.get("csrf", "")), attempt=attempt
                )
            except Unauthenticated as exc:
                return self.render(request, "error.html", visit, status=403, message=str(exc))
            return await fn(request, visit, data)

        return handle

    # -- signing in and out --------------------------------------------------------------------

    def _next(self, raw: str) -> str:
        """Only a path of this inbox (never another site: no open redirect)."""
        target = urllib.parse.unquote(raw or "")
        ok = target.startswith(PREFIX) and not target.startswith("//") and "\\" not in target
        return target if ok and "/login" not in target and "/events" not in target else PREFIX

    async def login_page(
        self, request: web.Request, *, error: str = "", status: int = 200
    ) -> web.Response:
        token = request.cookies.get(LOGIN_CSRF) or secrets.token_urlsafe(24)
        response = self.render(
            request,
            "login.html",
            None,
            status=status,
            login_csrf=token,
            error=error,
            next=self._next(request.query.get("next", "")),
        )
        self._set_cookie(response, request, LOGIN_CSRF, token, max_age=3600)
        return response

    def _login_csrf_ok(self, request: web.Request, data: MultiDictProxy[Any]) -> bool:
        cookie = request.cookies.get(LOGIN_CSRF, "")
        given = str(data.get("csrf", ""))
        return bool(cookie) and secrets.compare_digest(cookie.encode(), given.encode()[:256])

    async def login(self, request: web.Request) -> web.StreamResponse:
        data = await request.post()
        if not self._login_csrf_ok(request, data):
            await asyncio.to_thread(refuse, self.web, "bad_csrf", attempt="sign-in")
            return await self.login_page(
                request, error="the form expired; please try again", status=403
            )
        name, password = str(data.get("user", ""))[:128], str(data.get("password", ""))
        try:
            signed = await asyncio.to_thread(
                sign_in_with_password,
                self.web,
                self.service.keyring,
                self.directory,
                name,
                password,
                hours=self.settings.session_hours,
            )
        except Unauthenticated as exc:
            return await self.login_page(request, error=str(exc), status=401)
        return self._signed_in(request, signed.cookie, str(data.get("next", "")))

    async def link_page(self, request: web.Request) -> web.Response:
        """A page with a button: a link scanner that fetches the URL does not use it up."""
        token = request.cookies.get(LOGIN_CSRF) or secrets.token_urlsafe(24)
        response = self.render(
            request, "link.html", None, link=request.query.get("t", "")[:2048], login_csrf=token
        )
        self._set_cookie(response, request, LOGIN_CSRF, token, max_age=3600)
        return response

    async def link_login(self, request: web.Request) -> web.StreamResponse:
        data = await request.post()
        if not self._login_csrf_ok(request, data):
            await asyncio.to_thread(refuse, self.web, "bad_csrf", attempt="sign-in link")
            return await self.login_page(
                request, error="the form expired; open the link again", status=403
            )
        try:
            signed = await asyncio.to_thread(
                sign_in_with_link,
                self.web,
                self.service.keyring,
                self.directory,
                str(data.get("t", ""))[:2048],
            )
        except Unauthenticated as exc:
            return await self.login_page(request, error=str(exc), status=401)
        return self._signed_in(request, signed.cookie, "")

    def _signed_in(self, request: web.Request, cookie: str, target: str) -> web.StreamResponse:
        response = redirect(self._next(target))
        self._set_cookie(
            response,
            request,
            self._cookie_name(request),
            cookie,
            max_age=int(self.settings.session_hours * 3600),
        )
        response.del_cookie(LOGIN_CSRF, path="/")
        return response

    async def logout(
        self, request: web.Request, visit: Visit, _: MultiDictProxy[Any]
    ) -> web.StreamResponse:
        await asyncio.to_thread(sign_out, self.web, visit.session)
        response = redirect(f"{PREFIX}/login")
        response.del_cookie(self._cookie_name(request), path="/")
        return response
