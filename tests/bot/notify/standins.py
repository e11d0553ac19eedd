"""Local stand-ins for Twilio's Messages endpoint, PagerDuty's Events API v2 and Jira Cloud's
REST API v3 (one aiohttp server), and an SMTP server (aiosmtpd). Each checks requests the way
the provider documents them, answers like it, and records what it accepted::

    with Providers() as p:
        settings = p.settings(public_url="http://127.0.0.1:8000")
        ...
        p.sms[0]["Body"], p.events[-1]["event_action"], p.comments["OPS-1"]
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
from email import message_from_bytes
from email.message import Message as EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller

from hitl.bot.notify import NotifySettings
from tests.redis_server import free_port

SID = "AC00000000000000000000000000000001"
TOKEN = "twilio-auth-token"
ROUTING_KEY = "R0UTING0KEY0000000000000000000001"
JIRA_USER, JIRA_TOKEN = "bot@example.com", "jira-api-token"
FROM = "+15550009999"
PD_API_TOKEN = "pd-rest-api-key"


def _basic(request: web.Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Basic":
        return "", ""
    user, _, password = base64.b64decode(value).decode().partition(":")
    return user, password


def _adf_ok(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("type") == "doc"
        and doc.get("version") == 1
        and isinstance(doc.get("content"), list)
    )


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        msg = message_from_bytes(envelope.content)
        msg["X-Envelope-To"] = ",".join(envelope.rcpt_tos)
        self.messages.append(msg)
        return "250 OK"


class Providers:
    """The stand-ins, started in a background thread; ``fail_*`` make the next calls fail."""

    def __init__(self) -> None:
        self.port = free_port()
        self.sms: list[dict[str, str]] = []
        self.events: list[dict[str, Any]] = []
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        self.transitions: dict[str, list[str]] = {}
        self.refused: list[str] = []
        self.on_call: dict[str, list[dict[str, Any]]] = {}
        """PagerDuty schedule id -> the users on call (``{"email", "summary", "level"}``)."""
        self.fail_sms = 0
        self.fail_events = 0
        self.fail_transitions = 0
        self.holding = False
        """While true, the Messages endpoint does not answer (a provider that hangs)."""
        self.held = 0
        self._sids = itertools.count(1)
        self._issues = itertools.count(1)
        self.mailbox = _Mailbox()
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=free_port())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, public_url: str, **overrides: Any) -> NotifySettings:
        values: dict[str, Any] = {
            "public_url": public_url,
            "smtp_host": "127.0.0.1",
            "smtp_port": self.smtp.port,
            "smtp_tls": "none",
            "smtp_from": "hitl@example.com",
            "twilio_sid": SID,
            "twilio_token": TOKEN,
            "twilio_from": FROM,
            "twilio_api_url": self.url,
            "pagerduty_routing_keys": {"ops": ROUTING_KEY},
            "pagerduty_events_url": self.url + "/v2/enqueue",
            "pagerduty_api_url": self.url,
            "jira_url": self.url,
            "jira_user": JIRA_USER,
            "jira_token": JIRA_TOKEN,
            "jira_transitions": {"approved": "Approved", "rejected": "Rejected"},
            "backoff_s": 0.0,
            "max_attempts": 3,
        }
        values.update(overrides)
        return NotifySettings.model_validate(values)

    # -- Twilio --------------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.Response:
        if request.match_info["sid"] != SID or _basic(request) != (SID, TOKEN):
            self.refused.append("twilio auth")
            return web.json_response({"code": 20003, "message": "Authenticate"}, status=401)
        if request.content_type != "application/x-www-form-urlencoded":
            self.refused.append("twilio content type")
            return web.json_response({"code": 21609, "message": "form needed"}, status=400)
        form = {k: str(v) for k, v in (await request.post()).items()}
        if self.holding:
            self.held += 1
            while self.holding:  # noqa: ASYNC110 - released from the test's thread (no loop there)
                await asyncio.sleep(0.01)
        if not form.get("To", "").startswith("+") or form.get("From") != FROM:
            self.refused.append("twilio To/From")
            return web.json_response({"code": 21211, "message": "Invalid 'To'"}, status=400)
        if not form.get("Body") or len(form["Body"]) > 1600:
            self.refused.append("twilio Body")
            return web.json_response({"code": 21617, "message": "Body too long"}, status=400)
        if self.fail_sms:
            self.fail_sms -= 1
            return web.json_response({"code": 20500, "message": "Internal error"}, status=500)
        self.sms.append(form)
        sid = f"SM{next(self._sids):032d}"
        return web.json_response({"sid": sid, "status": "queued", "to": form["To"]}, status=201)

    # -- PagerDuty -----------------------------------------------------------------------------

    async def _enqueue(self, request: web.Request) -> web.Response:
        body = await request.json()
        ok = (
            body.get("routing_key") == ROUTING_KEY
            and body.get("event_action") in ("trigger", "acknowledge", "resolve")
            and body.get("dedup_key")
        )
        if ok and body["event_action"] == "trigger":
            payload = body.get("payload") or {}
            ok = bool(payload.get("summary") and payload.get("source")) and payload.get(
                "severity"
            ) in ("critical", "error", "warning", "info")
        if not ok:
            self.refused.append("pagerduty event")
            return web.json_response({"status": "invalid event", "errors": ["bad"]}, status=400)
        if self.fail_events:
            self.fail_events -= 1
            return web.json_response({"status": "error"}, status=500)
        self.events.append(body)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": body["dedup_key"]},
            status=202,
        )

    async def _oncalls(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Token token={PD_API_TOKEN}" or (
            request.headers.get("Accept") != "application/vnd.pagerduty+json;version=2"
        ):
            self.refused.append("pagerduty rest auth")
            return web.json_response({"error": {"message": "Unauthorized", "code": 2006}}, 401)
        with_users = "users" in request.query.getall("include[]", [])
        oncalls = []
        for schedule in request.query.getall("schedule_ids[]", []):
            for n, user in enumerate(self.on_call.get(schedule, [])):
                ref: dict[str, Any] = {"id": f"PU{n}", "type": "user_reference",
                                       "summary": user["summary"]}  # fmt: skip
                if with_users:
                    ref = {**ref, "type": "user", "email": user["email"]}
                oncalls.append(
                    {
                        "escalation_level": user.get("level", 1),
                        "schedule": {"id": schedule, "type": "schedule_reference"},
                        "user": ref,
                    }
                )
        return web.json_response({"oncalls": oncalls, "limit": 25, "offset": 0, "more": False})

    # -- Jira ----------------------------------------------------------------------------------

    def _jira_auth(self, request: web.Request) -> bool:
        if _basic(request) != (JIRA_USER, JIRA_TOKEN):
            self.refused.append("jira auth")
            return False
        return True

    async def _create_issue(self, request: web.Request) -> web.Response:
        if not self._jira_auth(request):
            return web.json_response({"errorMessages": ["unauthorized"]}, status=401)
        fields = (await request.json()).get("fields", {})
        if not fields.get("summary") or not _adf_ok(fields.get("description")):
            self.refused.append("jira issue")
            return web.json_response({"errors": {"summary": "required"}}, status=400)
        key = f"{fields['project']['key']}-{next(self._issues)}"
        self.issues[key] = fields
        return web.json_response({"id": "10001", "key": key, "self": f"{self.url}/x"}, status=201)

    async def _comment(self, request: web.Request) -> web.Response:
        if not self._jira_auth(request):
            return web.json_response({"errorMessages": ["unauthorized"]}, status=401)
        body = (await request.json()).get("body")
        if not _adf_ok(body):
            self.refused.append("jira comment")
            return web.json_response({"errorMessages": ["body must be ADF"]}, status=400)
        self.comments.setdefault(request.match_info["key"], []).append(body)
        return web.json_response({"id": "1"}, status=201)

    async def _transitions(self, request: web.Request) -> web.Response:
        if not self._jira_auth(request):
            return web.json_response({"errorMessages": ["unauthorized"]}, status=401)
        key = request.match_info["key"]
        if request.method == "GET":
            return web.json_response(
                {
                    "transitions": [
                        {"id": "31", "name": "Approved"},
                        {"id": "41", "name": "Rejected"},
                    ]
                }
            )
        wanted = (await request.json()).get("transition", {}).get("id")
        if self.fail_transitions:
            self.fail_transitions -= 1
            return web.json_response({"errorMessages": ["try again"]}, status=503)
        if wanted not in ("31", "41"):
            return web.json_response({"errorMessages": ["no such transition"]}, status=400)
        self.transitions.setdefault(key, []).append(wanted)
        return web.Response(status=204)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Providers:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._messages)
        app.router.add_post("/v2/enqueue", self._enqueue)
        app.router.add_get("/oncalls", self._oncalls)
        app.router.add_post("/rest/api/3/issue", self._create_issue)
        app.router.add_post("/rest/api/3/issue/{key}/comment", self._comment)
        app.router.add_route("*", "/rest/api/3/issue/{key}/transitions", self._transitions)
        ready = threading.Event()
        runner = web.AppRunner(app, access_log=None)
        loop = self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="providers", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the provider stand-ins did not start")
        self.smtp.start()
        return self

    def stop(self) -> None:
        self.smtp.stop()
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> Providers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
