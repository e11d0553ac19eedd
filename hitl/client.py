"""The agent SDK: ask a human before acting, block (or come back later) until they answer.

Blocking, in one call::

    import hitl
    client = hitl.Client()                       # HITL_REDIS_URL, else the embedded server
    decision = client.request_approval(
        "refund", {"order_id": "A-1", "amount": 120.0},
        summary="Refund $120 for order A-1", reasoning="Item arrived broken (photo in ticket)",
        requested_by="U0ALICE", timeout=600,
    )
    if decision.approved:
        refund(**decision.params)                # the params a human approved (maybe modified)

Surviving a restart of the agent: keep the id, wait again later::

    rid = client.submit("delete_volume", {"volume_id": "vol-1"})
    ...                                          # the agent process restarts
    decision = client.wait(rid, timeout=3600)

As a decorator, which runs the tool with the final params or raises :class:`ApprovalRejected`::

    @hitl.require_approval(summary="Refund ${amount} for order {order_id}", risk="high")
    def refund(order_id: str, amount: float) -> str: ...

Agents need only Redis and the service's public key (``HITL_PUBLIC_KEY``), which verifies
decisions and cannot sign one: submissions and cancellations travel on the ``hitl:requests``
stream like a raw ``XADD`` from any language, and decisions come back on ``hitl:decision:<id>``.
``wait`` accepts a decision only if it verifies, names the request waited for, and carries the
digest of the request this client submitted (after a restart, pass ``digest=`` saved from
:meth:`Client.digest` to keep that last check).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from hitl.config import Settings
from hitl.errors import (
    AgentHalted,
    ApprovalRejected,
    ApprovalTimeout,
    InvalidRequest,
    NotFound,
    StaleApproval,
    StoreUnavailable,
)
from hitl.keys import PublicKeys
from hitl.models import (
    MAX_PAYLOAD_BYTES,
    ApprovalRequest,
    Control,
    Decision,
    FeedbackEntry,
    RequestRecord,
)
from hitl.queue.keys import Keys
from hitl.signing import request_digest, verify_control, verify_decision

__all__ = ["AsyncClient", "Client", "halt_if_paused", "require_approval"]

P = ParamSpec("P")
R = TypeVar("R")
EXPIRY_GRACE_S = 5.0
"""How much longer ``request_approval(timeout=...)`` waits than the ``timeout_s`` it sets: the
worker applies deny-by-default within about a second of the deadline (RQ polls each second)."""
_POLL_S = 1.0
"""Longest single BLPOP: a waiter re-checks the record this often, so two waiters on one id
(or a decision popped by an earlier run of the agent) are still answered."""


def build_request(action: str, params: dict[str, Any] | None, **fields: Any) -> ApprovalRequest:
    """An ApprovalRequest with an id (generated if absent), or :class:`InvalidRequest`."""
    data = {k: v for k, v in fields.items() if v is not None}
    data["action"] = action
    data["params"] = params or {}
    data.setdefault("id", uuid.uuid4().hex)
    try:
        request = ApprovalRequest.model_validate(data)
    except ValidationError as exc:
        from hitl.queue.intake import validation_errors

        errors = validation_errors(exc)
        text = "; ".join(f"{f}: {m}" for f, m in errors)
        raise InvalidRequest(f"invalid approval request: {text}", errors) from None
    return check_wire_size(request)


def check_wire_size(request: ApprovalRequest) -> ApprovalRequest:
    """Refuse here what the intake would dead-letter for size (so ``wait`` is never orphaned)."""
    size = len(request.model_dump_json().encode())
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidRequest(
            f"the request is {size} bytes as JSON; the limit is {MAX_PAYLOAD_BYTES} "
            "(shorten reasoning/context/plan, or pass references instead of data)",
            [("request", "too large")],
        )
    return request


def _settings(url: str | None, settings: Settings | None) -> Settings:
    if settings is None:
        settings = Settings.from_env()
    if url is not None:
        settings = settings.model_copy(update={"redis_url": url})
    return settings


def _decision_from(raw: str | bytes | None) -> Decision | None:
    if raw is None:
        return None
    return Decision.model_validate_json(raw)


def _terminal_decision(raw: str | bytes | None) -> Decision | None:
    if raw is None:
        return None
    record = RequestRecord.model_validate_json(raw)
    return record.decision if record.state.terminal else None


def _timeout(request_id: str, timeout: float | None, stored: int) -> ApprovalTimeout:
    err = ApprovalTimeout(request_id, timeout or 0.0)
    if not stored:
        err.args = (
            f"no decision for {request_id} within {timeout or 0:g}s, and no such request is "
            "stored: it was never submitted, was dead-lettered (`hitl dead`), or no intake "
            "(`hitl serve`) is running to store it",
        )
    return err


def _fresh(decision: Decision, max_age: float | None) -> Decision:
    if max_age is not None and decision.approved:
        age = time.time() - decision.requested_at
        if age > max_age:
            raise StaleApproval(decision, age, max_age)
    return decision


class _Verifier:
    """What both clients share: the trusted public keys (read once) and the digests of the
    requests this process submitted (bounded: the oldest are forgotten first)."""

    MAX_REMEMBERED = 100_000

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._keys: PublicKeys | None = None
        self.digests: dict[str, str] = {}

    def remember(self, request: ApprovalRequest) -> None:
        assert request.id is not None
        if len(self.digests) >= self.MAX_REMEMBERED:
            self.digests.pop(next(iter(self.digests)))
        self.digests[request.id] = request_digest(request)

    def keys(self) -> PublicKeys:
        """The trusted public keys (read once), or :class:`ConfigError` saying what to set."""
        if self._keys is None:
            self._keys = self.settings.verify_keys()
        return self._keys

    def verify(self, decision: Decision, request_id: str | None, digest: str | None) -> Decision:
        keys = self.keys()
        if request_id is not None and digest is None:
            digest = self.digests.get(request_id)
        return verify_decision(decision, keys, request_id=request_id, request_digest=digest)


def _feedback_key(keys: Keys, action: str, agent_id: str | None) -> str:
    if not agent_id:
        raise InvalidRequest(
            "feedback is kept per agent: pass agent_id= (or create the client with one)",
            [("agent_id", "required")],
        )
    return keys.feedback(agent_id, action)


def _feedback_entries(raw: list[str | bytes]) -> list[FeedbackEntry]:
    return [FeedbackEntry.model_validate_json(item) for item in raw]


def _control_keys(keys: Keys, agent_id: str | None, session_id: str | None) -> list[str]:
    found = [keys.agent_control(agent_id)] if agent_id else []
    return found + ([keys.session_control(session_id)] if session_id else [])


def _halting(
    raws: list[bytes | str | None], verifier: _Verifier | None, verify: bool
) -> list[Control]:
    """The controls that halt, verified; a control that does not verify raises SignatureError
    (fail closed: a forged ``resume`` must not let a paused agent act)."""
    out = []
    for raw in raws:
        if raw is None:
            continue
        control = Control.model_validate_json(raw)
        if verify and verifier is not None:
            verify_control(control, verifier.keys())
        if control.halts:
            out.append(control)
    return out


def _cancel_fields(request_id: str, reason: str, agent_id: str | None) -> dict[Any, Any]:
    payload = {"id": request_id, "reason": reason, "agent_id": agent_id}
    return {"cancel": json.dumps(payload)}


class Client:
    """Synchronous SDK. Thread-safe; one per process is plenty."""

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        agent_id: str | None = None,
        verify: bool = True,
    ) -> None:
        self.settings = _settings(url, settings)
        self.keys = Keys(self.settings.prefix)
        self.agent_id = agent_id
        self.verify_signatures = verify
        self._verifier = _Verifier(self.settings)
        if verify:  # fail now, not after a request is queued and decided
            self._verifier.keys()
        from hitl.queue.connection import connect, redis_url

        self.redis = connect(redis_url(self.settings), socket_connect_timeout=5)

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- asking --------------------------------------------------------------------------------

    def submit(self, action: str, params: dict[str, Any] | None = None, **fields: Any) -> str:
        """Queue a request and return its id at once. Same id twice is one request."""
        fields.setdefault("agent_id", self.agent_id)
        request = build_request(action, params, **fields)
        return self.submit_request(request)

    def submit_request(self, request: ApprovalRequest) -> str:
        if request.id is None:
            request = request.model_copy(update={"id": uuid.uuid4().hex})
        assert request.id is not None
        check_wire_size(request)
        self._verifier.remember(request)
        try:
            self.redis.xadd(self.keys.requests, {"request": request.model_dump_json()})
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"could not queue the request: {exc}") from exc
        return request.id

    def digest(self, request_id: str) -> str | None:
        """The digest of a request this client submitted: keep it with the id to pass to
        ``wait(id, digest=...)`` after a restart."""
        return self._verifier.digests.get(request_id)

    def wait(
        self,
        request_id: str,
        timeout: float | None = None,
        *,
        max_age: float | None = None,
        digest: str | None = None,
    ) -> Decision:
        """Block until ``request_id`` is decided. Raises :class:`ApprovalTimeout` (still pending).

        Returns the decision whatever its outcome; check ``decision.approved``. With
        ``max_age``, an approval of a request made more than ``max_age`` seconds ago raises
        :class:`StaleApproval` so the agent re-validates before acting. A decision that does
        not verify, or answers another request, raises :class:`SignatureError`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = 0.05
        while True:
            try:
                decision = _terminal_decision(self.redis.get(self.keys.req(request_id)))
                if decision is not None:  # taken from the record: its list is not needed
                    self.redis.lpop(self.keys.decision(request_id))
                else:
                    remaining = _POLL_S if deadline is None else deadline - time.monotonic()
                    if remaining <= 0:
                        raise _timeout(
                            request_id, timeout, self.redis.exists(self.keys.req(request_id))
                        )
                    popped = self.redis.blpop(
                        [self.keys.decision(request_id)], timeout=min(_POLL_S, remaining)
                    )
                    decision = _decision_from(popped[1]) if popped else None
                backoff = 0.05
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if deadline is not None and time.monotonic() + backoff > deadline:
                    raise StoreUnavailable(f"Redis unreachable while waiting: {exc}") from exc
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if decision is not None:
                if self.verify_signatures:
                    decision = self.verify(decision, request_id=request_id, digest=digest)
                return _fresh(decision, max_age)

    def request_approval(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        **fields: Any,
    ) -> Decision:
        """Submit and wait: the decision (approved or not), or :class:`ApprovalTimeout`.

        ``timeout`` also becomes the request's ``timeout_s``, so the server denies it by default
        when it passes; the client waits :data:`EXPIRY_GRACE_S` longer to receive that
        ``expired`` decision rather than give up a moment before it.
        """
        if timeout is not None:
            fields.setdefault("timeout_s", max(1, math.ceil(timeout)))
        request_id = self.submit(action, params, **fields)
        return self.wait(request_id, None if timeout is None else timeout + EXPIRY_GRACE_S)

    def cancel(self, request_id: str, reason: str = "", timeout: float = 10.0) -> Decision:
        """Withdraw a pending request. Returns the terminal decision (which may be an earlier
        approval or rejection, if a human was faster)."""
        try:
            self.redis.xadd(self.keys.requests, _cancel_fields(request_id, reason, self.agent_id))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"could not queue the cancellation: {exc}") from exc
        try:
            return self.wait(request_id, timeout)
        except ApprovalTimeout:
            if self.status(request_id) is None:
                raise NotFound(f"no request {request_id!r} to cancel") from None
            raise

    def feedback(
        self, *, action: str, agent_id: str | None = None, limit: int = 50
    ) -> list[FeedbackEntry]:
        """What humans decided about this agent's ``action`` requests, newest first: approvals,
        rejections with their reasons, and modifications (``original_params`` -> ``params``),
        so that the agent can avoid proposing what was refused. ``agent_id`` defaults to the
        client's. Feedback is advice to the agent: it never approves anything by itself."""
        key = _feedback_key(self.keys, action, agent_id or self.agent_id)
        try:
            raw = self.redis.lrange(key, 0, max(0, limit - 1))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"could not read feedback: {exc}") from exc
        return _feedback_entries(raw)

    def controls(self, session_id: str | None = None) -> list[Control]:
        """The overrides in force: this agent paused (``/hitl pause``), the session stopped
        (``/hitl stop``). Empty when the agent may act. Each is verified with the public key;
        one that does not verify raises :class:`SignatureError` (treat the agent as halted)."""
        keys = _control_keys(self.keys, self.agent_id, session_id)
        if not keys:
            return []
        try:
            raws = self.redis.mget(keys)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"could not read the overrides: {exc}") from exc
        return _halting(raws, self._verifier, self.verify_signatures)

    def check_controls(self, session_id: str | None = None) -> None:
        """Raise :class:`AgentHalted` if this agent is paused or the session is stopped."""
        halting = self.controls(session_id)
        if halting:
            raise AgentHalted(halting[0])

    def status(self, request_id: str) -> RequestRecord | None:
        raw = self.redis.get(self.keys.req(request_id))
        return RequestRecord.model_validate_json(raw) if raw else None

    def verify(
        self, decision: Decision, *, request_id: str | None = None, digest: str | None = None
    ) -> Decision:
        """Check the signature with the public keys, and (when given, or remembered from this
        client's own submission) that it answers ``request_id`` / the request with ``digest``.
        Raises :class:`SignatureError`."""
        return self._verifier.verify(decision, request_id, digest)


class AsyncClient:
    """The asyncio twin of :class:`Client` (same methods, awaitable)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        agent_id: str | None = None,
        verify: bool = True,
    ) -> None:
        self.settings = _settings(url, settings)
        self.keys = Keys(self.settings.prefix)
        self.agent_id = agent_id
        self.verify_signatures = verify
        self._verifier = _Verifier(self.settings)
        if verify:  # fail now, not after a request is queued and decided
            self._verifier.keys()
        from hitl.queue.connection import connect_async, redis_url

        self.redis = connect_async(redis_url(self.settings), socket_connect_timeout=5)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def submit(self, action: str, params: dict[str, Any] | None = None, **fields: Any) -> str:
        fields.setdefault("agent_id", self.agent_id)
        return await self.submit_request(build_request(action, params, **fields))

    async def submit_request(self, request: ApprovalRequest) -> str:
        if request.id is None:
            request = request.model_copy(update={"id": uuid.uuid4().hex})
        assert request.id is not None
        check_wire_size(request)
        self._verifier.remember(request)
        try:
            await self.redis.xadd(self.keys.requests, {"request": request.model_dump_json()})
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"could not queue the request: {exc}") from exc
        return request.id

    def digest(self, request_id: str) -> str | None:
        """See :meth:`Client.digest`."""
        return self._verifier.digests.get(request_id)

    async def wait(
        self,
        request_id: str,
        timeout: float | None = None,  # noqa: ASYNC109 - same as Client.wait; also bounds outages
        *,
        max_age: float | None = None,
        digest: str | None = None,
    ) -> Decision:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        backoff = 0.05
        while True:
            try:
                decision = _terminal_decision(await self.redis.get(self.keys.req(request_id)))
                if decision is not None:  # taken from the record: its list is not needed
                    await self.redis.lpop(self.keys.decision(request_id))
                else:
                    remaining = _POLL_S if deadline is None else deadline - loop.time()
                    if remaining <= 0:
                        stored = await self.redis.exists(self.keys.req(request_id))
                        raise _timeout(request_id, timeout, stored)
                    popped = await self.redis.blpop(
                        [self.keys.decision(request_id)], timeout=min(_POLL_S, remaining)
                    )
                    decision = _decision_from(popped[1]) if popped else None
                backoff = 0.05
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if deadline is not None and loop.time() + backoff > deadline:
                    raise StoreUnavailable(f"Redis unreachable while waiting: {exc}") from exc
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if decision is not None:
                if self.verify_signatures:
                    decision = self.verify(decision, request_id=request_id, digest=digest)
                return _fresh(decision, max_age)

    async def request_approval(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - mirrors Client; also sets timeout_s
        **fields: Any,
    ) -> Decision:
        if timeout is not None:
            fields.setdefault("timeout_s", max(1, math.ceil(timeout)))
        request_id = await self.submit(action, params, **fields)
        return await self.wait(request_id, None if timeout is None else timeout + EXPIRY_GRACE_S)

    async def cancel(
        self,
        request_id: str,
        reason: str = "",
        timeout: float = 10.0,  # noqa: ASYNC109 - mirrors Client.cancel
    ) -> Decision:
        try:
            await self.redis.xadd(
                self.keys.requests, _cancel_fields(request_id, reason, self.agent_id)
            )
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"could not queue the cancellation: {exc}") from exc
        try:
            return await self.wait(request_id, timeout)
        except ApprovalTimeout:
            if await self.status(request_id) is None:
                raise NotFound(f"no request {request_id!r} to cancel") from None
            raise

    async def feedback(
        self, *, action: str, agent_id: str | None = None, limit: int = 50
    ) -> list[FeedbackEntry]:
        """See :meth:`Client.feedback`."""
        key = _feedback_key(self.keys, action, agent_id or self.agent_id)
        try:
            raw = await self.redis.lrange(key, 0, max(0, limit - 1))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"could not read feedback: {exc}") from exc
        return _feedback_entries(raw)

    async def controls(self, session_id: str | None = None) -> list[Control]:
        """See :meth:`Client.controls`."""
        keys = _control_keys(self.keys, self.agent_id, session_id)
        if not keys:
            return []
        try:
            raws = await self.redis.mget(keys)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise StoreUnavailable(f"could not read the overrides: {exc}") from exc
        return _halting(raws, self._verifier, self.verify_signatures)

    async def check_controls(self, session_id: str | None = None) -> None:
        """See :meth:`Client.check_controls`."""
        halting = await self.controls(session_id)
        if halting:
            raise AgentHalted(halting[0])

    async def status(self, request_id: str) -> RequestRecord | None:
        raw = await self.redis.get(self.keys.req(request_id))
        return RequestRecord.model_validate_json(raw) if raw else None

    def verify(
        self, decision: Decision, *, request_id: str | None = None, digest: str | None = None
    ) -> Decision:
        """See :meth:`Client.verify`."""
        return self._verifier.verify(decision, request_id, digest)


def require_approval(
    client: Client | AsyncClient | None = None,
    *,
    action: str | None = None,
    summary: str | None = None,
    timeout: float | None = None,
    **request_fields: Any,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a tool so it runs only once approved, with the approved (maybe modified) params.

    The tool's arguments become ``params`` (they must be JSON-serializable); ``summary`` may use
    them as ``str.format`` fields. Anything but an approval raises :class:`ApprovalRejected`
    carrying the reason and the reviewer. Works on ``async def`` tools too (with an
    :class:`AsyncClient`, or one made from the environment).
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        sig = inspect.signature(fn)
        name = action or fn.__name__

        def params_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            return dict(bound.arguments)

        def fields_for(params: dict[str, Any]) -> dict[str, Any]:
            fields = dict(request_fields)
            if summary is not None:
                fields["summary"] = summary.format(**params)
            return fields

        if inspect.iscoroutinefunction(fn):
            state: dict[str, AsyncClient] = {}

            async def run_async(*args: Any, **kwargs: Any) -> Any:
                params = params_of(args, kwargs)
                if isinstance(client, AsyncClient):
                    ac = client
                else:
                    if "client" not in state:
                        # A sync Client passed to an async tool lends its settings.
                        state["client"] = (
                            AsyncClient(settings=client.settings, agent_id=client.agent_id)
                            if isinstance(client, Client)
                            else AsyncClient()
                        )
                    ac = state["client"]
                decision = await ac.request_approval(
                    name, params, timeout=timeout, **fields_for(params)
                )
                if not decision.approved:
                    raise ApprovalRejected(decision)
                return await cast(Callable[..., Awaitable[Any]], fn)(**decision.params)

            return cast(Callable[P, R], functools.wraps(fn)(run_async))

        holder: dict[str, Client] = {}

        def run(*args: Any, **kwargs: Any) -> Any:
            params = params_of(args, kwargs)
            if isinstance(client, Client):
                c = client
            else:
                if "client" not in holder:
                    holder["client"] = Client()
                c = holder["client"]
            decision = c.request_approval(name, params, timeout=timeout, **fields_for(params))
            if not decision.approved:
                raise ApprovalRejected(decision)
            return cast(Callable[..., Any], fn)(**decision.params)

        return cast(Callable[P, R], functools.wraps(fn)(run))

    return decorate


def halt_if_paused(
    client: Client | AsyncClient, *, session_id: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a tool so that it refuses to run (:class:`AgentHalted`) while a person has
    paused the client's agent or stopped ``session_id``; it reads the override on every call.

    ::

        @halt_if_paused(client, session_id="chat-42")
        def send_reply(text: str) -> None: ...
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            if not isinstance(client, AsyncClient):
                raise TypeError("an async tool needs an AsyncClient")
            aclient = client

            async def run_async(*args: Any, **kwargs: Any) -> Any:
                await aclient.check_controls(session_id)
                return await cast(Callable[..., Awaitable[Any]], fn)(*args, **kwargs)

            return cast(Callable[P, R], functools.wraps(fn)(run_async))
        if not isinstance(client, Client):
            raise TypeError("a sync tool needs a Client")
        sclient = client

        def run(*args: Any, **kwargs: Any) -> Any:
            sclient.check_controls(session_id)
            return cast(Callable[..., Any], fn)(*args, **kwargs)

        return cast(Callable[P, R], functools.wraps(fn)(run))

    return decorate
