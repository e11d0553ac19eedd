"""The confirmation page behind an email's or an SMS's decision link (``/api/v1/links/<token>``).

``GET`` shows the request and a form; it never decides (mail scanners and link previews open
links). Only a ``POST`` of that form, with ``confirm=yes``, decides, through
:class:`~hitl.handlers.links.Links` and so the one :class:`~hitl.handlers.Decider`. The token in
the URL is the credential: the pages send ``Referrer-Policy: no-referrer`` and
``Cache-Control: no-store`` so it leaks nowhere, and a restrictive CSP (no scripts at all)::

    mount_links(app, Links(service.decider, service.keyring.public()))
"""

from __future__ import annotations

import asyncio
import html
import logging
from urllib.parse import parse_qs

import redis
from aiohttp import web

from hitl.bot.cards import card_view, format_time, format_value
from hitl.errors import (
    AlreadyDecided,
    HitlError,
    InvalidRequest,
    NotFound,
    RefusedAttempt,
    StoreUnavailable,
)
from hitl.handlers.links import LinkRefused, Links, LinkView

from .routes import API_PREFIX, MAX_BODY

__all__ = ["LINKS_PATH", "mount_links"]

log = logging.getLogger("hitl.api")

LINKS_PATH = API_PREFIX + "/links/{token}"
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:1em auto;"
        "padding:0 1em}th{text-align:left;padding-right:1em;vertical-align:top}"
        "button{font-size:1.1em;padding:.5em 1.2em;margin:.5em .5em 0 0}</style>"
        f"</head><body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return web.Response(text=text, status=status, content_type="text/html", headers=HEADERS)


def _confirm_page(view: LinkView, token: str) -> web.Response:
    card = card_view(view.record)
    rows = [
        ("Request", card.request_id),
        ("Action", card.action),
        ("Risk", card.risk.value),
        ("Requested by", card.requested_by or "-"),
        ("Status", card.status),
    ]
    if card.deadline is not None:
        rows.append(("Decide by", format_time(card.deadline)))
    if card.reasoning:
        rows.append(("Agent's reasoning", card.reasoning))
    rows += [(f"Parameter {k}", format_value(v)) for k, v in list(card.params.items())[:20]]
    table = "".join(
        f'<tr><th scope="row">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>' for k, v in rows
    )
    you = html.escape(view.reviewer.display_name or view.reviewer.user_id)
    body = f"<p>Signed in by this link as <strong>{you}</strong>.</p><table>{table}</table>"
    if not card.open:
        return _page(card.title, body + "<p>This request is no longer waiting for a decision.</p>")
    act = view.claims.act
    buttons = ""
    if act in ("approve", "any"):
        buttons += '<button type="submit" name="outcome" value="approve">Confirm: approve</button>'
    if act in ("reject", "any"):
        buttons += '<button type="submit" name="outcome" value="reject">Confirm: reject</button>'
    need = " (required to reject)" if act != "approve" else " (optional)"
    form = (
        f'<form method="post" action="{html.escape(token)}">'
        '<input type="hidden" name="confirm" value="yes">'
        f'<p><label for="reason">Reason{need}</label><br>'
        '<textarea id="reason" name="reason" rows="3" cols="40" maxlength="3000"></textarea></p>'
        f"<p>{buttons}</p></form>"
        "<p>Nothing has been decided yet: only the button above decides.</p>"
    )
    return _page(f"Decide: {card.title}", body + form)


def _refusal(exc: Exception) -> web.Response:
    if isinstance(exc, LinkRefused):
        return _page("This link cannot be used", f"<p>{html.escape(str(exc))}.</p>", 403)
    if isinstance(exc, AlreadyDecided):
        return _page("Already decided", f"<p>{html.escape(str(exc))}</p>", 409)
    if isinstance(exc, RefusedAttempt):
        return _page("Not allowed", f"<p>{html.escape(str(exc))}</p>", 403)
    if isinstance(exc, NotFound):
        return _page("Not found", "<p>No such request.</p>", 404)
    if isinstance(exc, InvalidRequest):
        return _page("Nothing was decided", f"<p>{html.escape(str(exc))}</p>", 400)
    if isinstance(exc, StoreUnavailable | redis.RedisError):
        return _page("Try again later", "<p>The service cannot reach its store.</p>", 503)
    log.exception("decision link failed", exc_info=exc)
    return _page("Something went wrong", "<p>Nothing was decided (see the log).</p>", 500)


def mount_links(app: web.Application, links: Links) -> None:
    """Add the confirmation page's GET and POST routes to ``app``."""

    async def show(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        try:
            view = await asyncio.to_thread(links.view, token)
        except (HitlError, redis.RedisError) as exc:
            return _refusal(exc)
        return _confirm_page(view, token)

    async def decide(request: web.Request) -> web.Response:
        token = request.match_info["token"]
        try:
            raw = await request.content.read(MAX_BODY + 1)
            if len(raw) > MAX_BODY:
                raise InvalidRequest(f"the form is over {MAX_BODY} bytes")
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
            if form.get("confirm") != "yes":
                raise InvalidRequest(
                    "the form was not confirmed; open the link and press a Confirm button"
                )
            outcome, reason = form.get("outcome", ""), form.get("reason", "")
            result = await asyncio.to_thread(links.use, token, outcome, reason)
        except (HitlError, redis.RedisError) as exc:
            return _refusal(exc)
        words = html.escape(result.message)
        return _page("Thank you", f"<p>{words}</p><p>You can close this page.</p>")

    app.router.add_get(LINKS_PATH, show, allow_head=False)
    app.router.add_post(LINKS_PATH, decide)
