"""The inbox's pages and forms: sessions and CSRF here, every rule in the API's handlers.

Each form ends in a call of the JSON API's own handler (:class:`hitl.bot.api.Api`: ``approve``,
``reject``, ``modify``, ``list_requests``), with a :class:`~hitl.handlers.tokens.Caller` built
from the session (channel ``web``) instead of a token, and a body checked by the API's models.
What the inbox adds is what a browser needs: a signed session cookie, a CSRF token on every
form, pages rendered by Jinja2 (autoescaped), and live updates (:mod:`hitl.bot.inbox.live`).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from hitl.bot.api import Api
from hitl.bot.api.routes import MAX_BODY, ApiService, error_status, parse_body
from hitl.bot.api.schemas import ModifyBody, ReasonBody, RejectBody
from hitl.bot.cards import card_view, format_time, format_value
from hitl.errors import ConfigError, HitlError, InvalidRequest, NotFound, Unauthenticated
from hitl.handlers.audit import request_trail
from hitl.handlers.metrics import governance_of, stats
from hitl.handlers.queries import history, show
from hitl.handlers.sessions import (
    authenticate_session,
    check_csrf,
    refuse,
    sign_in_with_link,
    sign_in_with_password,
    sign_out,
)
from hitl.handlers.timeouts import mark_seen
from hitl.handlers.tokens import Caller
from hitl.models import RequestRecord, Risk
from hitl.queue.sessions import SessionRecord, WebRecords

from .forms import modify_inputs, read_modify_form
from .live import CLOSING, Live

__all__ = ["Inbox", "InboxSettings"]

PREFIX = "/inbox"
LOGIN_CSRF = "hitl_login_csrf"
HEARTBEAT_S = 15.0
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


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


@dataclass(frozen=True)
class Visit:
    """A signed-in request: who, and their session (for its CSRF token)."""

    caller: Caller
    session: SessionRecord


Page = Callable[[web.Request, Visit], Awaitable[web.StreamResponse]]
Form = Callable[[web.Request, Visit, MultiDictProxy[Any]], Awaitable[web.StreamResponse]]


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d"


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hitl.bot.inbox", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda ts: format_time(ts) if ts else "-"
    env.filters["value"] = format_value
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    env.filters["pct"] = lambda v: "-" if v is None else f"{v * 100:.1f}%"
    env.filters["secs"] = lambda v: "-" if v is None else _age(v) if v >= 120 else f"{v:.1f}s"
    env.filters["age"] = _age
    return env


class Inbox:
    """The routes of ``/inbox``, bound to the service and its API handlers."""

    def __init__(
        self, service: ApiService, api: Api, settings: InboxSettings | None = None
    ) -> None:
        self.service = service
        self.api = api
        self.settings = settings or InboxSettings.from_env()
        self.web = WebRecords(service.store)
        self.live = Live(service.store)
        self.templates = _templates()
        self.extra_pages: dict[str, Page] = {}

    def mount(self, app: web.Application) -> None:
        r = app.router
        r.add_get(PREFIX, self.page(self.pending_page))
        r.add_get(PREFIX + "/", self.page(self.pending_page))
        r.add_get(PREFIX + "/login", self.login_page)
        r.add_post(PREFIX + "/login", self.login)
        r.add_get(PREFIX + "/login/link", self.link_page)
        r.add_post(PREFIX + "/login/link", self.link_login)
        r.add_post(PREFIX + "/logout", self.form(self.logout, "logout"))
        r.add_get(PREFIX + "/history", self.page(self.history_page))
        r.add_get(PREFIX + "/stats", self.page(self.stats_page))
        r.add_get(PREFIX + "/events", self.page(self.events))
        r.add_get(PREFIX + "/static/{name}", self.static)
        r.add_get(PREFIX + "/r/{id}", self.page(self.detail_page))
        r.add_post(PREFIX + "/r/{id}/approve", self.form(self.approve, "approve"))
        r.add_post(PREFIX + "/r/{id}/reject", self.form(self.reject, "reject"))
        r.add_post(PREFIX + "/r/{id}/modify", self.form(self.modify, "modify"))
        app.on_shutdown.append(lambda _: self.live.close())

    # -- plumbing ------------------------------------------------------------------------------

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

    def render(
        self, request: web.Request, name: str, visit: Visit | None, *, status: int = 200, **ctx: Any
    ) -> web.Response:
        text = self.templates.get_template(name).render(
            me=visit.caller if visit else None,
            csrf=visit.session.csrf if visit else "",
            path=request.path,
            **ctx,
        )
        return web.Response(
            text=text, status=status, content_type="text/html", headers=SECURITY_HEADERS
        )

    async def _visit(self, request: web.Request) -> Visit | None:
        cookie = request.cookies.get(self._cookie_name(request), "")
        if not cookie:
            return None
        try:
            caller, session = await asyncio.to_thread(
                authenticate_session,
                self.web,
                self.service.keyring.public(),
                self.api.directory,
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
                return _redirect(f"{PREFIX}/login?next={target}")
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

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = STATIC_TYPES.get(os.path.splitext(name)[1])
        folder = resources.files("hitl.bot.inbox") / "static"
        if kind is None or "/" in name or not (folder / name).is_file():
            raise web.HTTPNotFound()
        return web.Response(
            body=(folder / name).read_bytes(),
            content_type=kind,
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

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
                self.api.directory,
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
                self.api.directory,
                str(data.get("t", ""))[:2048],
            )
        except Unauthenticated as exc:
            return await self.login_page(request, error=str(exc), status=401)
        return self._signed_in(request, signed.cookie, "")

    def _signed_in(self, request: web.Request, cookie: str, target: str) -> web.StreamResponse:
        response = _redirect(self._next(target))
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
        response = _redirect(f"{PREFIX}/login")
        response.del_cookie(self._cookie_name(request), path="/")
        return response

    # -- pages ---------------------------------------------------------------------------------

    def _row(self, record: RequestRecord, now: float) -> dict[str, Any]:
        view = card_view(record)
        where = record.verdict.destination
        return {
            "view": view,
            "age": _age(now - record.created_at),
            "destination": f"{where.kind}:{where.target}" if where and where.target else "",
        }

    async def pending_page(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        q = request.query
        try:
            page = await self.api.list_requests(request, visit.caller, None)
            error = ""
        except InvalidRequest as exc:
            page, error = None, str(exc)
        empty: dict[str, Any] = {"total": 0, "offset": 0, "next_offset": None, "requests": []}
        data: dict[str, Any] = page.model_dump() if page is not None else empty
        limit = int(q["limit"]) if q.get("limit", "").isdigit() else 20
        records = [RequestRecord.model_validate(r) for r in data["requests"]]
        now = self.service.store.clock()
        filters = {
            k: q.get(k, "")
            for k in ("risk", "action", "agent_id", "destination", "min_age_s", "mine", "limit")
        }
        return self.render(
            request,
            "pending.html",
            visit,
            status=400 if error else 200,
            rows=[self._row(r, now) for r in records],
            total=data["total"],
            offset=data["offset"],
            next_offset=data["next_offset"],
            prev_offset=max(0, int(data["offset"]) - limit),
            filters=filters,
            risks=[r.value for r in Risk],
            error=error,
            query=lambda **kw: _query(filters, **kw),
        )

    async def history_page(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        search = request.query.get("q", "")[:200]
        offset = _offset(request.query.get("offset"))
        page = await asyncio.to_thread(
            history, self.service.store, search=search, offset=offset, limit=25
        )
        now = self.service.store.clock()
        return self.render(
            request,
            "history.html",
            visit,
            rows=[self._row(r, now) for r in page.records],
            total=page.total,
            search=search,
            offset=offset,
            next_offset=page.next_offset,
            prev_offset=max(0, offset - 25),
        )

    async def stats_page(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        governance = governance_of(self.service.authority)
        figures = await asyncio.to_thread(stats, self.service.store, governance=governance)
        by_risk = figures["latency_by_risk"]

        def secs(v: float | None) -> str:
            return "-" if v is None else f"{v:.1f}s"

        return self.render(
            request,
            "stats.html",
            visit,
            s=figures,
            latency_rows_p50=[
                (risk, f["decision_p50_s"], secs(f["decision_p50_s"]))
                for risk, f in by_risk.items()
            ],
            latency_rows_p95=[
                (risk, f["decision_p95_s"], secs(f["decision_p95_s"]))
                for risk, f in by_risk.items()
            ],
            reviewer_rows=[
                (
                    r["name"][:18],
                    r["approval_rate"],
                    "-" if r["approval_rate"] is None else f"{r['approval_rate']:.0%}",
                )
                for r in figures["reviewers"]
            ],
            canaries=any(r["canaries"] for r in figures["reviewers"]),
        )

    async def detail_page(
        self,
        request: web.Request,
        visit: Visit,
        *,
        error: str = "",
        errors: dict[str, str] | None = None,
        values: dict[str, str] | None = None,
        status: int = 200,
    ) -> web.StreamResponse:
        rid = request.match_info["id"]
        record = await asyncio.to_thread(show, self.service.store, rid)
        await asyncio.to_thread(mark_seen, self.service.store, rid)
        trail = await asyncio.to_thread(request_trail, self.service.store, rid)
        view = card_view(record)
        check = self.service.authority.check_vote(
            record.verdict, record.votes, visit.caller.sub, record.request.requested_by
        )
        return self.render(
            request,
            "detail.html",
            visit,
            status=status,
            record=record,
            view=view,
            trail=trail,
            may_approve=check.ok,
            why_not=check.reason,
            inputs=modify_inputs(record) if view.open else [],
            error=error,
            errors=errors or {},
            values=values or {},
            done=request.query.get("done", ""),
            destination=self._row(record, self.service.store.clock())["destination"],
        )

    async def events(self, request: web.Request, visit: Visit) -> web.StreamResponse:
        """Server-sent events: one ``change`` per record change, a comment every 15 s; the
        stream ends when the session does."""
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        async with self.live.subscription() as changes:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    change = await asyncio.wait_for(changes.get(), HEARTBEAT_S)
                except TimeoutError:
                    session = await asyncio.to_thread(self.web.session, visit.session.sid)
                    if session is None or self.service.store.clock() >= session.exp:
                        break
                    await response.write(b": still here\n\n")
                    continue
                if change is CLOSING:
                    break
                payload = json.dumps(
                    {k: change.get(k, "") for k in ("request_id", "kinds", "state")}
                )
                await response.write(f"event: change\ndata: {payload}\n\n".encode())
        return response

    # -- decisions: the API's handlers ---------------------------------------------------------

    async def _decide(
        self,
        request: web.Request,
        visit: Visit,
        call: Callable[[], Awaitable[Any]],
        done: str,
        values: dict[str, str] | None = None,
    ) -> web.StreamResponse:
        try:
            await call()
        except HitlError as exc:
            status = (error_status(exc) or (500, ""))[0]
            errors = dict(exc.errors) if isinstance(exc, InvalidRequest) else {}
            return await self.detail_page(
                request, visit, error=str(exc), errors=errors, values=values, status=status
            )
        rid = urllib.parse.quote(request.match_info["id"], safe="")
        return _redirect(f"{PREFIX}/r/{rid}?done={done}")

    async def approve(
        self, request: web.Request, visit: Visit, data: MultiDictProxy[Any]
    ) -> web.StreamResponse:
        def body() -> ReasonBody:
            return parse_body(ReasonBody, {"reason": str(data.get("reason", ""))})

        return await self._decide(
            request, visit, lambda: self.api.approve(request, visit.caller, body()), "approve"
        )

    async def reject(
        self, request: web.Request, visit: Visit, data: MultiDictProxy[Any]
    ) -> web.StreamResponse:
        reason = str(data.get("reason", ""))

        async def call() -> Any:
            body = parse_body(RejectBody, {"reason": reason})
            return await self.api.reject(request, visit.caller, body)

        return await self._decide(request, visit, call, "reject", {"reject_reason": reason})

    async def modify(
        self, request: web.Request, visit: Visit, data: MultiDictProxy[Any]
    ) -> web.StreamResponse:
        values = {str(k): str(v) for k, v in data.items() if k != "csrf"}
        rid = request.match_info["id"]

        async def call() -> Any:
            record = await asyncio.to_thread(show, self.service.store, rid)
            params = read_modify_form(record, data)
            body = parse_body(ModifyBody, {"params": params, "reason": values.get("reason", "")})
            return await self.api.modify(request, visit.caller, body)

        return await self._decide(request, visit, call, "modify", values)


def _redirect(location: str) -> web.Response:
    """303 See Other: after a form, the browser GETs the next page (a reload re-posts nothing)."""
    return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})


def _offset(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and len(raw) < 10 else 0


def _query(filters: dict[str, str], **changes: Any) -> str:
    merged = {**filters, **{k: str(v) for k, v in changes.items()}}
    return urllib.parse.urlencode({k: v for k, v in merged.items() if v not in ("", "None")})
