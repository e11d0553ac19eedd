"""The inbox's pages and forms; every rule in the API's handlers.

Each form ends in a call of the JSON API's own handler (:class:`hitl.bot.api.Api`: ``approve``,
``reject``, ``modify``, ``list_requests``), with a :class:`~hitl.handlers.tokens.Caller` built
from the session (channel ``web``) instead of a token, and a body checked by the API's models.
What the inbox adds is what a browser needs: sign-in, sessions and CSRF
(:mod:`hitl.bot.inbox.signin`), pages rendered by Jinja2 (autoescaped), and live updates
(:mod:`hitl.bot.inbox.live`).
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from hitl.bot.api import Api
from hitl.bot.api.routes import ApiService, error_status, parse_body
from hitl.bot.api.schemas import ModifyBody, ReasonBody, RejectBody
from hitl.bot.cards import age_words, card_view
from hitl.errors import HitlError, InvalidRequest
from hitl.handlers.audit import request_trail
from hitl.handlers.metrics import governance_of, stats
from hitl.handlers.queries import history, show
from hitl.handlers.timeouts import mark_seen
from hitl.models import RequestRecord, Risk

from .forms import modify_inputs, read_modify_form
from .live import CLOSING, Live
from .rendering import PREFIX, Renderer, Visit, redirect
from .signin import Gate, InboxSettings

__all__ = ["Inbox"]

HEARTBEAT_S = 15.0
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


class Inbox:
    """The routes of ``/inbox``, bound to the service and its API handlers."""

    def __init__(
        self, service: ApiService, api: Api, settings: InboxSettings | None = None
    ) -> None:
        self.service = service
        self.api = api
        renderer = Renderer()
        self.render = renderer.render
        self.gate = Gate(service, api.directory, renderer, settings or InboxSettings.from_env())
        self.live = Live(service.store)

    def mount(self, app: web.Application) -> None:
        r, page, form = app.router, self.gate.page, self.gate.form
        self.gate.mount(app)
        r.add_get(PREFIX, page(self.pending_page))
        r.add_get(PREFIX + "/", page(self.pending_page))
        r.add_get(PREFIX + "/history", page(self.history_page))
        r.add_get(PREFIX + "/stats", page(self.stats_page))
        r.add_get(PREFIX + "/events", page(self.events))
        r.add_get(PREFIX + "/static/{name}", self.static)
        r.add_get(PREFIX + "/r/{id}", page(self.detail_page))
        r.add_post(PREFIX + "/r/{id}/approve", form(self.approve, "approve"))
        r.add_post(PREFIX + "/r/{id}/reject", form(self.reject, "reject"))
        r.add_post(PREFIX + "/r/{id}/modify", form(self.modify, "modify"))
        app.on_shutdown.append(lambda _: self.live.close())

    # -- plumbing ------------------------------------------------------------------------------

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

    # -- pages ---------------------------------------------------------------------------------

    def _row(self, record: RequestRecord, now: float) -> dict[str, Any]:
        view = card_view(record)
        where = record.verdict.destination
        return {
            "view": view,
            "age": age_words(now - record.created_at),
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
                    session = await asyncio.to_thread(self.gate.web.session, visit.session.sid)
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
        return redirect(f"{PREFIX}/r/{rid}?done={done}")

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


def _offset(raw: str | None) -> int:
    return int(raw) if raw and raw.isdigit() and len(raw) < 10 else 0


def _query(filters: dict[str, str], **changes: Any) -> str:
    merged = {**filters, **{k: str(v) for k, v in changes.items()}}
    return urllib.parse.urlencode({k: v for k, v in merged.items() if v not in ("", "None")})
