"""A local HTTP server that answers like Slack's Web API, records every call, and misbehaves
when told to (429 with ``Retry-After`` for a while, 500s, a channel that refuses cards).

Every message and modal it receives is checked against Block Kit's limits and parsed with
``slack_sdk.models``; problems are collected in ``violations`` (the fixture asserts none)::

    server = await MockSlack().start()
    client = AsyncWebClient(token="xoxb-test", base_url=server.api_url)
    server.rate_limit(5.0, retry_after=1)          # every call answers 429 for 5 s
    server.rate_limit_once(3, methods={"chat.postMessage"})   # one 429; early calls are violations
    await server.wait_for(lambda: server.calls_to("chat.postMessage"))
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from tests.redis_server import free_port

__all__ = ["Call", "MockSlack", "blockkit_violations"]

T = TypeVar("T")

LIMITS = {
    "message_blocks": 50,
    "view_blocks": 100,
    "section_text": 3000,
    "field_text": 2000,
    "fields": 10,
    "header_text": 150,
    "button_text": 75,
    "button_value": 2000,
    "id": 255,
    "context_elements": 10,
    "actions_elements": 25,
    "option_text": 75,
    "option_value": 150,
    "options": 100,
    "label": 2000,
    "placeholder": 150,
    "modal_title": 24,
    "private_metadata": 3000,
    "confirm_title": 100,
    "confirm_text": 300,
    "confirm_button": 30,
    "input_length": 3000,
    "message_text": 4000,
}


@dataclass
class Call:
    """One request the server received: the API method (or ``response_url``) and its args."""

    method: str
    args: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    status: int = 200


def _text_of(obj: Any) -> str:
    if isinstance(obj, dict):
        return str(obj.get("text", ""))
    return str(obj or "")


def _check_element(el: dict[str, Any], where: str, out: list[str]) -> None:
    kind = el.get("type")
    if "action_id" in el and len(str(el["action_id"])) > LIMITS["id"]:
        out.append(f"{where}: action_id too long")
    if kind == "button":
        if len(_text_of(el.get("text"))) > LIMITS["button_text"]:
            out.append(f"{where}: button text {len(_text_of(el.get('text')))} > 75")
        if len(str(el.get("value", ""))) > LIMITS["button_value"]:
            out.append(f"{where}: button value too long")
    if "placeholder" in el and len(_text_of(el["placeholder"])) > LIMITS["placeholder"]:
        out.append(f"{where}: placeholder too long")
    for key in ("options", "initial_options"):
        options = el.get(key) or []
        if len(options) > LIMITS["options"]:
            out.append(f"{where}: {len(options)} options > 100")
        for opt in options:
            if len(_text_of(opt.get("text"))) > LIMITS["option_text"]:
                out.append(f"{where}: option text too long")
            if len(str(opt.get("value", ""))) > LIMITS["option_value"]:
                out.append(f"{where}: option value too long")
    if kind == "plain_text_input":
        limit = int(el.get("max_length") or LIMITS["input_length"])
        if limit > LIMITS["input_length"]:
            out.append(f"{where}: max_length {limit} > 3000")
        if len(str(el.get("initial_value") or "")) > limit:
            out.append(f"{where}: initial_value longer than max_length")
    confirm = el.get("confirm")
    if confirm:
        if len(_text_of(confirm.get("title"))) > LIMITS["confirm_title"]:
            out.append(f"{where}: confirm title too long")
        if len(_text_of(confirm.get("text"))) > LIMITS["confirm_text"]:
            out.append(f"{where}: confirm text too long")
        for key in ("confirm", "deny"):
            if len(_text_of(confirm.get(key))) > LIMITS["confirm_button"]:
                out.append(f"{where}: confirm {key} too long")


def _check_blocks(blocks: Any, where: str, limit: int, out: list[str]) -> None:
    if not isinstance(blocks, list):
        out.append(f"{where}: blocks is not a list")
        return
    if len(blocks) > limit:
        out.append(f"{where}: {len(blocks)} blocks > {limit}")
    for n, block in enumerate(blocks):
        here = f"{where}[{n}]"
        try:
            parsed = Block.parse(block)
            if parsed is None or type(parsed) is Block:
                out.append(f"{here}: unknown block type {block.get('type')!r}")
            else:
                parsed.validate_json()
        except Exception as exc:
            out.append(f"{here}: slack_sdk.models refuses it: {exc}")
            continue
        kind = block.get("type")
        if len(str(block.get("block_id", ""))) > LIMITS["id"]:
            out.append(f"{here}: block_id too long")
        if kind == "header" and len(_text_of(block.get("text"))) > LIMITS["header_text"]:
            out.append(f"{here}: header text too long")
        if kind == "section":
            if len(_text_of(block.get("text"))) > LIMITS["section_text"]:
                out.append(f"{here}: section text {len(_text_of(block.get('text')))} > 3000")
            fields = block.get("fields") or []
            if len(fields) > LIMITS["fields"]:
                out.append(f"{here}: {len(fields)} fields > 10")
            for f in fields:
                if len(_text_of(f)) > LIMITS["field_text"]:
                    out.append(f"{here}: field text too long")
            if block.get("accessory"):
                _check_element(block["accessory"], here + ".accessory", out)
        if kind == "context":
            elements = block.get("elements") or []
            if len(elements) > LIMITS["context_elements"]:
                out.append(f"{here}: {len(elements)} context elements > 10")
            for el in elements:
                if len(_text_of(el)) > LIMITS["section_text"]:
                    out.append(f"{here}: context text too long")
        if kind == "actions":
            elements = block.get("elements") or []
            if len(elements) > LIMITS["actions_elements"]:
                out.append(f"{here}: {len(elements)} action elements > 25")
            for i, el in enumerate(elements):
                _check_element(el, f"{here}.elements[{i}]", out)
        if kind == "input":
            if len(_text_of(block.get("label"))) > LIMITS["label"]:
                out.append(f"{here}: label too long")
            if len(_text_of(block.get("hint"))) > LIMITS["label"]:
                out.append(f"{here}: hint too long")
            _check_element(block.get("element") or {}, here + ".element", out)


def blockkit_violations(args: dict[str, Any], method: str) -> list[str]:
    """Every way a message (``blocks``/``text``) or a modal (``view``) breaks Block Kit."""
    out: list[str] = []
    blocks = args.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if blocks is not None:
        _check_blocks(blocks, f"{method}.blocks", LIMITS["message_blocks"], out)
    if len(str(args.get("text") or "")) > LIMITS["message_text"]:
        out.append(f"{method}: text longer than {LIMITS['message_text']}")
    view = args.get("view")
    if isinstance(view, str):
        view = json.loads(view)
    if view is not None:
        try:
            View(**view).validate_json()
        except Exception as exc:
            out.append(f"{method}.view: slack_sdk.models refuses it: {exc}")
        for key in ("title", "submit", "close"):
            if key in view and len(_text_of(view[key])) > LIMITS["modal_title"]:
                out.append(f"{method}.view.{key}: longer than 24")
        if len(str(view.get("private_metadata") or "")) > LIMITS["private_metadata"]:
            out.append(f"{method}.view: private_metadata too long")
        _check_blocks(view.get("blocks"), f"{method}.view.blocks", LIMITS["view_blocks"], out)
    return out


class MockSlack:
    """Slack's Web API on a free local port (see the module docstring)."""

    def __init__(self, port: int | None = None, *, check: bool = True) -> None:
        self.calls: list[Call] = []
        self.violations: list[str] = []
        self.check = check
        """Check every message and modal against Block Kit (off for benchmarks)."""
        self.port = port or free_port()
        self._runner: web.AppRunner | None = None
        self._ts = itertools.count(1)
        self._limited_until = 0.0
        self._retry_after = 1
        self._limited_methods: set[str] | None = None
        self._failing_until = 0.0
        self._failures_left = 0
        self._fail_status = 500
        self._failing_methods: set[str] | None = None
        self._refused: dict[str, str] = {}
        self._once: tuple[int, set[str] | None] | None = None
        self.throttled: dict[str, tuple[float, float]] = {}
        """Per method: when a one-off 429 was answered, and until when its Retry-After runs."""
        self._delay = 0.0
        self.rejected: list[Call] = []
        """Calls answered with 429 or an error (not in ``calls``)."""
        self.sockets: list[web.WebSocketResponse] = []
        self.socket_replies: list[dict[str, Any]] = []
        """What the app sent back over Socket Mode (acknowledgements with their payload)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, token: str = "r") -> str:
        return f"{self.url}/response/{token}"

    async def start(self) -> MockSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/response/{token}", self._response)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def close(self) -> None:
        await self.close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- misbehaviour --------------------------------------------------------------------------

    def rate_limit(
        self, seconds: float, retry_after: int = 1, methods: set[str] | None = None
    ) -> None:
        """Answer 429 with ``Retry-After`` for the next ``seconds``."""
        self._limited_until = time.monotonic() + seconds
        self._retry_after = retry_after
        self._limited_methods = methods

    def rate_limit_once(self, retry_after: int, methods: set[str] | None = None) -> None:
        """Answer the next call (to one of ``methods``) with one 429 and ``Retry-After``, as
        Slack does; a call to that method arriving before the wait has passed is answered 429
        again and recorded in ``violations``."""
        self._once = (retry_after, methods)

    def fail(
        self,
        *,
        seconds: float = 0.0,
        times: int = 0,
        status: int = 500,
        methods: set[str] | None = None,
    ) -> None:
        """Answer ``status`` (an HTML error page) for ``seconds`` or the next ``times`` calls."""
        self._failing_until = time.monotonic() + seconds if seconds else 0.0
        self._failures_left = times
        self._fail_status = status
        self._failing_methods = methods

    def refuse(self, channel: str, error: str = "channel_not_found") -> None:
        """Posting to ``channel`` answers ``{"ok": false, "error": error}``."""
        self._refused[channel] = error

    def slow(self, seconds: float) -> None:
        self._delay = seconds

    # -- reading what happened -----------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def posts(self, channel: str | None = None) -> list[Call]:
        """Top-level chat.postMessage calls (not thread replies), optionally to one channel."""
        return [
            c
            for c in self.calls_to("chat.postMessage")
            if not c.args.get("thread_ts") and (channel is None or c.args.get("channel") == channel)
        ]

    def cards_for(self, request_id: str) -> list[Call]:
        """Posted cards of one request (their action buttons carry its id)."""
        return [c for c in self.posts() if request_id in json.dumps(c.args.get("blocks", []))]

    def responses(self) -> list[Call]:
        return self.calls_to("response_url")

    async def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,  # noqa: ASYNC109 - a polling helper, like helpers.wait_until
        what: str = "condition",
    ) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await asyncio.sleep(0.01)

    # -- answering -----------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> dict[str, Any]:
        raw = await request.text()
        if request.content_type == "application/json":
            return dict(json.loads(raw or "{}"))
        return {k: v[-1] for k, v in urllib.parse.parse_qs(raw).items()}

    def _misbehave(self, method: str, arrived: float) -> web.Response | None:
        now = time.monotonic()
        answered, until = self.throttled.get(method, (0.0, 0.0))
        if answered <= arrived < until:
            self.violations.append(
                f"{method} called {arrived - answered:.2f}s after a 429 whose Retry-After "
                f"was {until - answered:.0f}s"
            )
            return self._429(round(until - now + 0.5))
        if self._once is not None and (self._once[1] is None or method in self._once[1]):
            retry_after, self._once = self._once[0], None
            self.throttled[method] = (now, now + retry_after)
            return self._429(retry_after)
        limited = self._limited_methods is None or method in self._limited_methods
        if now < self._limited_until and limited:
            return self._429(self._retry_after)
        failing = self._failing_methods is None or method in self._failing_methods
        if failing and (now < self._failing_until or self._failures_left > 0):
            self._failures_left = max(0, self._failures_left - 1)
            return web.Response(
                status=self._fail_status,
                text="<html>upstream error</html>",
                content_type="text/html",
            )
        return None

    def _429(self, retry_after: int) -> web.Response:
        return web.json_response(
            {"ok": False, "error": "ratelimited"},
            status=429,
            headers={"Retry-After": str(max(1, retry_after))},
        )

    async def _api(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()  # Call.at: when the call reached Slack, before any delay
        method = request.match_info["method"]
        args = await self._args(request)
        if self._delay:
            await asyncio.sleep(self._delay)
        bad = self._misbehave(method, arrived)
        if bad is not None:
            self.rejected.append(Call(method, args, at=arrived, status=bad.status))
            return bad
        channel = str(args.get("channel", ""))
        if method in ("chat.postMessage", "chat.update") and channel in self._refused:
            self.rejected.append(Call(method, args, at=arrived, status=200))
            return web.json_response({"ok": False, "error": self._refused[channel]})
        if self.check:
            self.violations += blockkit_violations(args, method)
        self.calls.append(Call(method, args, at=arrived))
        return web.json_response(self._answer(method, args))

    def _channel_id(self, channel: str) -> str:
        if channel.startswith("#"):
            return "C" + channel[1:].upper().replace("-", "")[:20]
        if channel.startswith(("U", "W")):
            return "D" + channel
        return channel

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(str(args.get("channel", "")))
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://hitl-test.slack.com/",
                "team": "hitl-test",
                "user": "hitl",
                "team_id": "T0TEAM",
                "user_id": "U0HITLBOT",
                "bot_id": "B0HITL",
            }
        if method == "chat.postMessage":
            ts = f"{1700000000 + next(self._ts)}.000100"
            return {"ok": True, "channel": channel, "ts": ts, "message": {"ts": ts}}
        if method == "chat.update":
            return {"ok": True, "channel": channel, "ts": args.get("ts"), "text": args.get("text")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{1700000000 + next(self._ts)}.000200"}
        if method == "conversations.open":
            users = str(args.get("users", ""))
            return {"ok": True, "channel": {"id": "D" + users.split(",")[0]}}
        if method in ("views.open", "views.update", "views.push"):
            view = args.get("view")
            view = json.loads(view) if isinstance(view, str) else view
            return {"ok": True, "view": {"id": f"V{next(self._ts)}", **(view or {})}}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}
        if method == "users.info":
            user = str(args.get("user", ""))
            return {"ok": True, "user": {"id": user, "name": user.lower(), "real_name": user}}
        return {"ok": False, "error": "unknown_method"}

    async def send_envelope(self, envelope: dict[str, Any]) -> None:
        """Send a Socket Mode envelope to the connected app."""
        await self.wait_for(lambda: self.sockets, what="a Socket Mode connection")
        await self.sockets[-1].send_str(json.dumps(envelope))

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1}))
        async for message in ws:
            if message.type == web.WSMsgType.TEXT:
                self.socket_replies.append(json.loads(message.data))
        return ws

    async def close_sockets(self) -> None:
        for ws in self.sockets:
            await ws.close()

    async def _response(self, request: web.Request) -> web.Response:
        args = await self._args(request)
        self.violations += blockkit_violations(args, "response_url")
        self.calls.append(Call("response_url", {**args, "_token": request.match_info["token"]}))
        return web.Response(text="ok")
