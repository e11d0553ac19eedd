"""Override: a person pauses or resumes an agent, or stops a session, out of band.

The article's "Override Workflows": *the human interrupts a running agent and modifies its
state or plan*. Every channel (Slack ``/hitl pause``, Teams, the CLI, the API) calls
:class:`Overrides`; it checks who asks, signs a :class:`~hitl.models.Control`, and in one
transaction stores it where agents read it (``<prefix>control:agent:<id>``,
``<prefix>control:session:<id>``), appends it to the ``<prefix>controls`` stream, and audits it.
A stop also cancels the session's pending requests (each through the Decider, as an operator's
cancel). Agents see controls through :meth:`hitl.Client.controls` and
:func:`hitl.client.halt_if_paused`; they verify the signature with the public key.

Who may (by role, from the policy's directory; an operator token may do all three):

- pause and stop -- any reviewer the directory knows: pulling the brake is everyone's right;
- resume -- a reviewer holding one of ``resume_roles`` (default :data:`RESUME_ROLES`).

With no directory (the open authority of the demo and some tests) anyone authenticated may.
Refusals raise :class:`~hitl.errors.NotAuthorized` and are audited like refused votes.

Chat adapters hand the text after ``/hitl`` to :func:`control_command`::

    text = control_command(overrides, "pause support-bot sending duplicate refunds", reviewer)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from hitl.errors import AlreadyDecided, InvalidRequest, NotAuthorized
from hitl.handlers.decisions import Decider
from hitl.models import Control, Reviewer
from hitl.queue.audit import AuditEvent
from hitl.queue.store import DECISIONS_MAXLEN, Store
from hitl.signing import sign_control

__all__ = ["CONTROL_USAGE", "RESUME_ROLES", "Overrides", "Stopped", "control_command"]

RESUME_ROLES: tuple[str, ...] = ("manager",)
"""Roles that may let a paused agent act again (roles include the roles they include)."""
CONTROL_USAGE = {
    "pause": "`/hitl pause AGENT reason` - the agent's tools refuse to run until resumed",
    "resume": "`/hitl resume AGENT [reason]` - let a paused agent act again",
    "stop": "`/hitl stop SESSION reason` - end a session; its pending requests are cancelled",
}
Kind = Literal["pause", "resume", "stop"]


@runtime_checkable
class RoleDirectory(Protocol):
    """The policy's directory as far as overrides need it (:class:`hitl.policies.Policy`)."""

    def roles_of(self, user_id: str) -> frozenset[str]: ...


@dataclass(frozen=True)
class Stopped:
    """A stop: the signed control and the pending requests it cancelled."""

    control: Control
    cancelled: list[str]


class Overrides:
    """Pause, resume and stop, authorized and audited; see the module docstring."""

    def __init__(
        self,
        store: Store,
        authority: object,
        decider: Decider,
        *,
        resume_roles: Sequence[str] = RESUME_ROLES,
    ) -> None:
        self.store = store
        self.directory = authority if isinstance(authority, RoleDirectory) else None
        self.version = str(getattr(authority, "version", ""))
        self.decider = decider
        self.resume_roles = frozenset(resume_roles)

    def pause(self, agent_id: str, by: Reviewer, reason: str, *, operator: bool = False) -> Control:
        return self._apply("pause", by, reason, operator, agent_id=agent_id)

    def resume(
        self, agent_id: str, by: Reviewer, reason: str = "", *, operator: bool = False
    ) -> Control:
        return self._apply("resume", by, reason, operator, agent_id=agent_id)

    def stop(
        self, session_id: str, by: Reviewer, reason: str, *, operator: bool = False
    ) -> Stopped:
        control = self._apply("stop", by, reason, operator, session_id=session_id)
        cancelled = []
        for record in self.store.pending(0, 0):
            if record.request.session_id != session_id:
                continue
            try:
                self.decider.cancel(
                    record.id, by.user_id, f"session stopped: {reason}", channel="operator"
                )
            except AlreadyDecided:
                continue  # decided meanwhile: nothing to cancel
            cancelled.append(record.id)
        return Stopped(control, cancelled)

    # -- internals -----------------------------------------------------------------------------

    def _refusal(self, kind: Kind, by: Reviewer, operator: bool) -> str | None:
        if operator or self.directory is None:
            return None
        roles = self.directory.roles_of(by.user_id)
        if kind == "resume":
            if roles & self.resume_roles:
                return None
            wanted = " or ".join(sorted(self.resume_roles))
            return f"resuming an agent needs the role {wanted} (or an operator token)"
        if roles:
            return None
        return f"{by.user_id} is not a reviewer in the policy's directory"

    def _apply(
        self, kind: Kind, by: Reviewer, reason: str, operator: bool, **target: str
    ) -> Control:
        ((field, value),) = target.items()
        if not value or len(value) > 128:
            raise InvalidRequest(
                f"{kind} needs a {field} of 1 to 128 characters", [(field, "invalid")]
            )
        if kind != "resume" and not reason.strip():
            raise InvalidRequest(f"{kind} needs a reason: it is audited", [("reason", "required")])
        refusal = self._refusal(kind, by, operator)
        if refusal is not None:
            details: dict[str, Any] = {"attempt": kind, field: value, "reason": refusal}
            self.store.append_events(
                [AuditEvent("refused", None, by.user_id, details, self.version)]
            )
            raise NotAuthorized(refusal)
        who = by.model_copy(update={"at": self.store.clock()})
        control = sign_control(
            Control.model_validate(
                {"kind": kind, field: value, "by": who, "reason": reason[:3000], "at": who.at}
            ),
            self.store.require_signer(),
        )
        keys = self.store.keys
        key = keys.agent_control(value) if field == "agent_id" else keys.session_control(value)
        payload = control.model_dump_json()

        def publish(pipe: Any) -> None:
            pipe.set(key, payload)
            pipe.xadd(
                keys.controls, {"control": payload}, maxlen=DECISIONS_MAXLEN, approximate=True
            )

        event = AuditEvent(
            f"control_{kind}",
            None,
            by.user_id,
            {field: value, "reason": control.reason, "channel": by.channel, "operator": operator},
            self.version,
        )
        self.store.append_events([event], also=publish)
        return control


def control_command(
    overrides: Overrides, text: str, by: Reviewer, *, operator: bool = False
) -> str:
    """Carry out ``pause AGENT reason`` / ``resume AGENT [reason]`` / ``stop SESSION reason``
    (the words after ``/hitl``) and say what happened; :class:`InvalidRequest` with the usage
    when the words do not parse. For Slack's slash command and Teams' text commands."""
    words = text.strip().split(None, 2)
    name = words[0].lower() if words else ""
    if name not in CONTROL_USAGE:
        raise InvalidRequest("Usage: " + "; ".join(CONTROL_USAGE.values()))
    if len(words) < 2:
        what = "session" if name == "stop" else "agent"
        raise InvalidRequest(f"Missing the {what} id. Usage: {CONTROL_USAGE[name]}")
    target, reason = words[1], words[2] if len(words) > 2 else ""
    if name == "pause":
        overrides.pause(target, by, reason, operator=operator)
        return f"Paused agent {target}: its tools refuse to run until someone resumes it."
    if name == "resume":
        overrides.resume(target, by, reason, operator=operator)
        return f"Resumed agent {target}."
    stopped = overrides.stop(target, by, reason, operator=operator)
    return f"Stopped session {target}; cancelled {len(stopped.cancelled)} pending request(s)."
