"""The routes of the JSON API: authenticate, parse, call a handler, answer JSON.

Each route is a row of :data:`ROUTES` (method, path, body model, answer model, errors), so the
OpenAPI document and the router are built from the same table. Blocking handler calls (Redis,
signing) run in a thread; refusals are audited by the handlers, never here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import redis
from aiohttp import web
from pydantic import BaseModel, ValidationError

from hitl.errors import (
    AlreadyDecided,
    AuditError,
    ConfigError,
    HitlError,
    InvalidRequest,
    NotFound,
    RefusedAttempt,
    StoreUnavailable,
    Unauthenticated,
)
from hitl.handlers import Authority, Decider, pending
from hitl.handlers.audit import chain_status
from hitl.handlers.batch import DigestSource, decide_digest
from hitl.handlers.breakglass import acknowledge, break_glass
from hitl.handlers.controls import Overrides
from hitl.handlers.labels import label
from hitl.handlers.queries import destination_names
from hitl.handlers.tokens import Caller, Directory, authenticate, require_operator
from hitl.keys import KeyRing
from hitl.models import Outcome, RequestRecord, Risk
from hitl.queue.audit import Checkpoint
from hitl.queue.store import Store
from hitl.queue.tokens import TokenRecords

from . import schemas as s

__all__ = [
    "API_PREFIX",
    "MAX_BODY",
    "ROUTES",
    "Api",
    "ApiService",
    "Route",
    "error_status",
    "parse_body",
    "record_json",
]

log = logging.getLogger("hitl.api")

API_PREFIX = "/api/v1"
MAX_BODY = 64 * 1024
"""Request bodies larger than this are refused (413) before they are parsed."""
T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)


class _Checkpointer(Protocol):
    @property
    def anchor(self) -> Any: ...
    def checkpoint(self) -> list[Checkpoint]: ...


class ApiService(Protocol):
    """What the API needs from ``hitl serve`` (:class:`hitl.service.Service` is one)."""

    @property
    def app(self) -> web.Application: ...
    @property
    def store(self) -> Store: ...
    @property
    def decider(self) -> Decider: ...
    @property
    def authority(self) -> Authority: ...
    @property
    def keyring(self) -> KeyRing: ...
    @property
    def checkpointer(self) -> _Checkpointer: ...
    @property
    def digests(self) -> DigestSource: ...


class TooLarge(HitlError):
    """A request body over :data:`MAX_BODY`."""


def record_json(record: RequestRecord) -> dict[str, Any]:
    """The record as ``hitl show --json`` prints it."""
    data = record.model_dump(mode="json")
    data["id"] = record.id
    return data


Handler = Callable[["Api", web.Request, Caller, Any], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Route:
    """One endpoint: how to call it and what it answers (for the router and for OpenAPI)."""

    method: str
    path: str
    handler: Handler
    summary: str
    answer: type[BaseModel]
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    query: tuple[tuple[str, dict[str, Any], str], ...] = ()
    operator: bool = False
    status: int = 200
    public: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Api:
    """The handlers of the routes, bound to a service."""

    def __init__(self, service: ApiService) -> None:
        self.service = service
        self.tokens = TokenRecords(service.store)
        self.public = service.keyring.public()
        authority = service.authority
        self.directory: Directory | None = authority if isinstance(authority, Directory) else None
        self.overrides = Overrides(service.store, authority, service.decider)

    # -- plumbing ------------------------------------------------------------------------------

    def handler(self, route: Route) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                caller = await self._caller(request)
                body = await _read_body(request, route.body) if route.body is not None else None
                if route.operator:
                    await asyncio.to_thread(
                        require_operator,
                        self.tokens,
                        caller,
                        route.handler.__name__.replace("_", "-"),
                        request.match_info.get("id"),
                    )
                answer = await route.handler(self, request, caller, body)
            except Exception as exc:  # every failure becomes a JSON error
                return _error(exc)
            return web.json_response(answer.model_dump(mode="json"), status=route.status)

        return handle

    async def _caller(self, request: web.Request) -> Caller:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "no token: send `Authorization: Bearer hitl_...` (an operator creates one with "
                "`hitl tokens create NAME`)"
            )
        return await asyncio.to_thread(
            authenticate, self.tokens, self.public, self.directory, token.strip()
        )

    # -- requests ------------------------------------------------------------------------------

    async def list_requests(self, request: web.Request, caller: Caller, _: Any) -> BaseModel:
        q = request.query
        offset, limit = _int(q, "offset", 0, 0, 10**9), _int(q, "limit", 20, 1, 200)
        risk = q.get("risk") or None
        if risk is not None and risk not in {r.value for r in Risk}:
            raise InvalidRequest(
                f"risk must be one of {', '.join(r.value for r in Risk)}", [("risk", "invalid")]
            )
        mine = q.get("mine", "0")
        if mine not in ("0", "1", "true", "false"):
            raise InvalidRequest("mine must be 1 or 0", [("mine", "invalid")])
        action, agent = q.get("action") or None, q.get("agent_id") or None
        destination = q.get("destination") or None
        min_age = _int(q, "min_age_s", 0, 0, 10**9)
        born_before = self.service.store.clock() - min_age

        def where(r: RequestRecord) -> bool:
            return (
                (risk is None or r.verdict.risk.value == risk)
                and (action is None or r.request.action == action)
                and (agent is None or r.request.agent_id == agent)
                and (destination is None or destination in destination_names(r.verdict))
                and (not min_age or r.created_at <= born_before)
            )

        filtered = any(v is not None for v in (risk, action, agent, destination)) or min_age > 0
        page = await asyncio.to_thread(
            pending,
            self.service.store,
            reviewer_id=caller.sub if mine in ("1", "true") else None,
            authority=self.service.authority,
            offset=offset,
            limit=limit,
            where=where if filtered else None,
        )
        return s.PendingPage(
            total=page.total,
            offset=page.offset,
            next_offset=page.next_offset,
            requests=[record_json(r) for r in page.records],
        )

    async def get_request(self, request: web.Request, caller: Caller, _: Any) -> BaseModel:
        record = await asyncio.to_thread(self.service.store.get, request.match_info["id"])
        return _Record.model_validate(record_json(record))

    async def approve(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        rid = request.match_info["id"]
        return await self._act(self.service.decider.approve, rid, caller.reviewer(), body.reason)

    async def reject(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        rid = request.match_info["id"]
        return await self._act(self.service.decider.reject, rid, caller.reviewer(), body.reason)

    async def modify(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        rid = request.match_info["id"]
        decider = self.service.decider
        return await self._act(decider.modify, rid, caller.reviewer(), body.params, body.reason)

    async def break_glass(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        rid = request.match_info["id"]
        decider = self.service.decider
        return await self._act(break_glass, decider, rid, caller.reviewer(), body.reason)

    async def ack(self, request: web.Request, caller: Caller, _: Any) -> BaseModel:
        rid = request.match_info["id"]
        record = await asyncio.to_thread(acknowledge, self.service.decider, rid, caller.reviewer())
        return s.AckResult(
            id=rid,
            message=f"break-glass approval acknowledged by {caller.display_name or caller.sub}",
            record=record_json(record),
        )

    async def cancel(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        rid = request.match_info["id"]
        decider = self.service.decider
        return await self._act(decider.cancel, rid, caller.sub, body.reason, channel="operator")

    async def override(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        rid = request.match_info["id"]
        outcome = Outcome(body.outcome)
        decider = self.service.decider
        return await self._act(decider.override, rid, caller.reviewer(), outcome, body.reason)

    async def _act(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> BaseModel:
        result = await asyncio.to_thread(fn, *args, **kwargs)
        record = result.record
        return s.ActionResult(
            id=record.id,
            state=record.state.value,
            message=result.message,
            decision=result.decision,
            record=record_json(record),
        )

    async def label(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        rid = request.match_info["id"]
        made = await asyncio.to_thread(
            label, self.service.store, rid, body.label, caller.reviewer(), body.note
        )
        return s.LabelResult(
            id=rid,
            message=f"{rid} ({made.outcome}) labelled {made.label} by {made.by}",
            **made.model_dump(),
        )

    # -- override: pause, resume, stop ---------------------------------------------------------

    async def pause(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        agent = request.match_info["agent_id"]
        control = await asyncio.to_thread(
            self.overrides.pause, agent, caller.reviewer(), body.reason, operator=caller.operator
        )
        return s.ControlResult(
            message=f"paused agent {agent}", control=control.model_dump(mode="json")
        )

    async def resume(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        agent = request.match_info["agent_id"]
        control = await asyncio.to_thread(
            self.overrides.resume, agent, caller.reviewer(), body.reason, operator=caller.operator
        )
        return s.ControlResult(
            message=f"resumed agent {agent}", control=control.model_dump(mode="json")
        )

    async def stop(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        session = request.match_info["session_id"]
        stopped = await asyncio.to_thread(
            self.overrides.stop, session, caller.reviewer(), body.reason, operator=caller.operator
        )
        return s.ControlResult(
            message=f"stopped session {session}; cancelled {len(stopped.cancelled)} pending",
            control=stopped.control.model_dump(mode="json"),
            cancelled=stopped.cancelled,
        )

    # -- digests, audit, identity --------------------------------------------------------------

    async def approve_all(self, request: web.Request, caller: Caller, body: Any) -> BaseModel:
        batch = await asyncio.to_thread(
            decide_digest,
            self.service.decider,
            self.service.digests,
            request.match_info["digest_id"],
            caller.reviewer(),
            approve=True,
            reason=body.reason,
        )
        items = [
            s.BatchItem(request_id=i.request_id, ok=i.ok, decided=i.decided, message=i.message)
            for i in batch.items
        ]
        return s.BatchResult(message=batch.message, items=items)

    async def audit_head(self, request: web.Request, caller: Caller, _: Any) -> BaseModel:
        status = await asyncio.to_thread(chain_status, self.service.store)
        chains = [
            s.ChainHeadOut(chain=n, seq=h.seq, hash=h.hash)
            for n, h in sorted(status.chains.items())
        ]
        return s.AuditHead(
            seq=status.seq, hash=status.hash, chains=chains, checkpoint=status.checkpoint
        )

    async def checkpoint(self, request: web.Request, caller: Caller, _: Any) -> BaseModel:
        checkpointer = self.service.checkpointer
        made = await asyncio.to_thread(checkpointer.checkpoint)
        where = str(getattr(checkpointer.anchor, "where", ""))
        if not made:
            return s.CheckpointResult(
                anchor=where, message="the chain has not moved since the last checkpoint"
            )
        return s.CheckpointResult(
            checkpoints=[c.to_json() for c in made],
            anchor=where,
            message=f"{len(made)} chains checkpointed, signed by {made[-1].key_id}",
        )

    async def whoami(self, request: web.Request, caller: Caller, _: Any) -> BaseModel:
        return s.WhoAmI(
            tid=caller.tid, sub=caller.sub, role=caller.role, display_name=caller.display_name
        )


class _Record(BaseModel):
    """The answer of GET /requests/{id}: the record as JSON (schema: ``Record``)."""

    model_config = {"extra": "allow"}

    id: str


# -- helpers -----------------------------------------------------------------------------------


def _int(query: Any, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":  # an empty form field means "not given"
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number", [(name, "not a number")]) from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be {low} to {high}", [(name, "out of range")])
    return value


async def _read_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    """The JSON body validated by ``model``: 413 over :data:`MAX_BODY`, 400 if not valid."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise TooLarge(f"the body is {request.content_length} bytes; the limit is {MAX_BODY}")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise TooLarge(f"the body is over {MAX_BODY} bytes")
    if not raw.strip():
        raw = b"{}"
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}", [("body", "not JSON")]) from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", [("body", "not an object")])
    return parse_body(model, data)


def parse_body(model: type[B], data: dict[str, Any]) -> B:
    """``data`` validated by ``model``, else :class:`InvalidRequest` listing each field's problem
    (the JSON API's bodies and the web inbox's forms are checked by the same models)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            (
                ".".join(str(p) for p in e["loc"]) or "body",
                "unknown field" if e["type"] == "extra_forbidden" else e["msg"],
            )
            for e in exc.errors()
        ]
        text = "; ".join(f"{f}: {m}" for f, m in errors)
        raise InvalidRequest(f"invalid body: {text}", errors) from None


_STATUS: list[tuple[type[BaseException], int, str]] = [
    (Unauthenticated, 401, "unauthenticated"),
    (AlreadyDecided, 409, "already_decided"),
    (RefusedAttempt, 403, "not_authorized"),
    (NotFound, 404, "not_found"),
    (InvalidRequest, 400, "invalid_request"),
    (TooLarge, 413, "too_large"),
    (StoreUnavailable, 503, "unavailable"),
    (redis.ConnectionError, 503, "unavailable"),
    (redis.TimeoutError, 503, "unavailable"),
    (AuditError, 500, "audit_error"),
    (ConfigError, 500, "configuration"),
]


def error_status(exc: BaseException) -> tuple[int, str] | None:
    """The HTTP status and error code of a failure the API answers (None: a bug, 500)."""
    return next(((st, c) for kind, st, c in _STATUS if isinstance(exc, kind)), None)


def _error(exc: Exception) -> web.Response:
    found = error_status(exc)
    if found is None:
        log.exception("API handler failed", exc_info=exc)
    status, code = found or (500, "internal")
    message = str(exc) if status != 500 or code != "internal" else "internal error (see the log)"
    if isinstance(exc, redis.RedisError):
        message = f"Redis is unreachable ({exc}); retry later"
    detail: dict[str, Any] = {"code": code, "message": message}
    if isinstance(exc, InvalidRequest) and exc.errors:
        detail["errors"] = [list(e) for e in exc.errors]
    headers = {"WWW-Authenticate": 'Bearer realm="hitl"'} if status == 401 else None
    return web.json_response({"error": detail}, status=status, headers=headers)


_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_REFUSALS = (400, 401, 403, 404, 409, 503)

ROUTES: list[Route] = [
    Route(
        "GET",
        "/requests",
        Api.list_requests,
        "Pending requests, soonest deadline first",
        s.PendingPage,
        errors=(400, 401, 503),
        query=(
            (
                "mine",
                {"type": "string", "enum": ["0", "1", "true", "false"]},
                "1: only what the caller may decide (role, not the requester, not voted yet)",
            ),
            ("risk", {"type": "string", "enum": [r.value for r in Risk]}, "only this risk"),
            ("action", {"type": "string"}, "only this action (tool name)"),
            ("agent_id", {"type": "string"}, "only this agent's requests"),
            (
                "destination",
                {"type": "string"},
                "only requests routed there (`channel:#ops`, `#ops`, `oncall:infra`, `user:bob`)",
            ),
            (
                "min_age_s",
                {"type": "integer", "minimum": 0},
                "only requests waiting at least this many seconds",
            ),
            ("offset", {"type": "integer", "minimum": 0}, "skip this many (default 0)"),
            ("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "page size (default 20)"),
        ),  # fmt: skip
    ),
    Route(
        "GET",
        "/requests/{id}",
        Api.get_request,
        "One request as `hitl show --json` prints it",
        _Record,
        errors=(401, 404, 503),
    ),
    Route(
        "POST",
        "/requests/{id}/approve",
        Api.approve,
        "Approve (one vote; decides once the policy's quorum is met)",
        s.ActionResult,
        s.ReasonBody,
        _REFUSALS + (413,),
    ),
    Route(
        "POST",
        "/requests/{id}/reject",
        Api.reject,
        "Reject with a reason (one rejection decides)",
        s.ActionResult,
        s.RejectBody,
        _REFUSALS + (413,),
    ),
    Route(
        "POST",
        "/requests/{id}/modify",
        Api.modify,
        "Approve with changed params (validated against param_schema, re-evaluated by policy)",
        s.ActionResult,
        s.ModifyBody,
        _REFUSALS + (413,),
    ),
    Route(
        "POST",
        "/requests/{id}/break-glass",
        Api.break_glass,
        "Emergency approval alone, for reviewers the policy's break_glass section allows",
        s.ActionResult,
        s.BreakGlassBody,
        _REFUSALS + (413,),
    ),
    Route(
        "POST",
        "/requests/{id}/ack",
        Api.ack,
        "Acknowledge someone else's break-glass approval",
        s.AckResult,
        s.EmptyBody,
        _REFUSALS + (413,),
    ),
    Route(
        "POST",
        "/requests/{id}/cancel",
        Api.cancel,
        "Withdraw a pending request (operator token)",
        s.ActionResult,
        s.CancelBody,
        _REFUSALS + (413,),
        operator=True,
    ),
    Route(
        "POST",
        "/requests/{id}/override",
        Api.override,
        "Operator override: decide now regardless of roles and quorum (audited as such)",
        s.ActionResult,
        s.OverrideBody,
        _REFUSALS + (413,),
        operator=True,
    ),
    Route(
        "POST",
        "/requests/{id}/label",
        Api.label,
        "Say afterwards whether a decision was right (for the false-positive rate)",
        s.LabelResult,
        s.LabelBody,
        (400, 401, 404, 413, 503),
    ),
    Route(
        "POST",
        "/agents/{agent_id}/pause",
        Api.pause,
        "Pause an agent: its tools refuse to run until resumed (any reviewer; audited)",
        s.ControlResult,
        s.RejectBody,
        (400, 401, 403, 413, 503),
    ),
    Route(
        "POST",
        "/agents/{agent_id}/resume",
        Api.resume,
        "Let a paused agent act again (role manager, or an operator token; audited)",
        s.ControlResult,
        s.ReasonBody,
        (400, 401, 403, 413, 503),
    ),
    Route(
        "POST",
        "/sessions/{session_id}/stop",
        Api.stop,
        "Stop a session: its pending requests are cancelled, its tools refuse to run (audited)",
        s.ControlResult,
        s.RejectBody,
        (400, 401, 403, 413, 503),
    ),
    Route(
        "POST",
        "/digests/{digest_id}/approve-all",
        Api.approve_all,
        "Approve every request a digest listed (one vote each, each authorized on its own)",
        s.BatchResult,
        s.ReasonBody,
        (400, 401, 404, 413, 503),
    ),
    Route(
        "GET",
        "/audit/head",
        Api.audit_head,
        "The audit chain's head and its newest signed checkpoint",
        s.AuditHead,
        errors=(401, 503),
    ),
    Route(
        "POST",
        "/audit/checkpoint",
        Api.checkpoint,
        "Sign and anchor the chain's head now (operator token)",
        s.CheckpointResult,
        s.EmptyBody,
        (400, 401, 403, 413, 500, 503),
        operator=True,
    ),
    Route("GET", "/whoami", Api.whoami, "Who the token says you are", s.WhoAmI, errors=(401, 503)),
]
