"""What every inbox page shares: the templates, the security headers, the signed-in visit.

::

    pages = Renderer()
    pages.render(request, "detail.html", visit, record=record)      # text/html, CSP and no-store
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from hitl.bot.cards import age_words, format_time, format_value
from hitl.handlers.tokens import Caller
from hitl.queue.sessions import SessionRecord

__all__ = ["PREFIX", "SECURITY_HEADERS", "Form", "Page", "Renderer", "Visit", "redirect"]

PREFIX = "/inbox"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True)
class Visit:
    """A signed-in request: who, and their session (for its CSRF token)."""

    caller: Caller
    session: SessionRecord


Page = Callable[[web.Request, Visit], Awaitable[web.StreamResponse]]
Form = Callable[[web.Request, Visit, MultiDictProxy[Any]], Awaitable[web.StreamResponse]]


def _environment() -> jinja2.Environment:
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
    env.filters["secs"] = lambda v: "-" if v is None else age_words(v) if v >= 120 else f"{v:.1f}s"
    return env


class Renderer:
    """The inbox's Jinja2 templates (autoescaped; an undefined name is an error)."""

    def __init__(self) -> None:
        self.templates = _environment()

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


def redirect(location: str) -> web.Response:
    """303 See Other: after a form, the browser GETs the next page (a reload re-posts nothing)."""
    return web.Response(status=303, headers={"Location": location, **SECURITY_HEADERS})
