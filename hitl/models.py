"""The wire models every part of hitl shares (pydantic v2).

An agent sends an :class:`ApprovalRequest` (as JSON in the ``request`` field of an ``XADD`` to
``hitl:requests``, or through :class:`hitl.Client`). The policy turns it into a :class:`Verdict`.
The store keeps a :class:`RequestRecord` and, once terminal, delivers a :class:`Decision`::

    req = ApprovalRequest(action="refund", params={"order": "A-1", "amount": 120.0},
                          summary="Refund order A-1", requested_by="U_ALICE")
    req.model_dump_json()

Bounds are deliberate: an approval request is read by a human, so nothing in it needs to be
megabytes, and a bounded request cannot be used to exhaust the store.
"""

from __future__ import annotations

import enum
import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

__all__ = [
    "MAX_CONTEXT_BYTES",
    "MAX_DEPTH",
    "MAX_PARAMS_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_SAFE_INTEGER",
    "ApprovalRequest",
    "BreakGlass",
    "CardRef",
    "Control",
    "Decision",
    "Destination",
    "EscalationStep",
    "NotifyTarget",
    "FeedbackEntry",
    "Outcome",
    "PlanStep",
    "RequestRecord",
    "Reviewer",
    "Risk",
    "State",
    "Verdict",
    "VerdictKind",
    "Vote",
    "check_json_value",
    "json_depth",
]

MAX_PARAMS_BYTES = 64 * 1024
MAX_CONTEXT_BYTES = 64 * 1024
MAX_SCHEMA_BYTES = 64 * 1024
MAX_PAYLOAD_BYTES = 256 * 1024
"""A whole request on the wire; anything larger is dead-lettered before it is parsed."""
MAX_DEPTH = 32
"""How deeply a whole request document may nest (``{"params": {...}}`` is 2 levels), so params,
context and param_schema may nest 31 levels and a plan step's params 29. Deeper input is refused
before it is parsed: recursive parsers (``json.loads``, pydantic's) fail somewhere between 200
and 1000 levels, and a stored record (which wraps the request in two more levels) must always
read back."""
MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer every JSON parser reads exactly (I-JSON, RFC 7493). Decisions are signed
over canonical JSON (RFC 8785), which cannot represent larger ones: agents send them as strings."""

_DEPTH_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|["\[\]{}]', re.DOTALL)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
ACTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,127}$"
_ID_RE = re.compile(ID_PATTERN)

RequestId = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
ShortText = Annotated[str, StringConstraints(max_length=256)]
Ident = Annotated[str, StringConstraints(min_length=1, max_length=128)]


def is_valid_id(value: str) -> bool:
    """True when ``value`` can be a request id (letters, digits, ``._:-``, at most 128)."""
    return bool(_ID_RE.match(value))


class Risk(enum.StrEnum):
    """The four risk levels of the domain's risk table, ordered."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RISK_ORDER[self]

    @classmethod
    def max(cls, *levels: Risk | None) -> Risk:
        """The highest of the given levels (``LOW`` if none)."""
        present = [lv for lv in levels if lv is not None]
        return max(present, key=lambda r: r.rank) if present else cls.LOW


_RISK_ORDER = {Risk.LOW: 0, Risk.MEDIUM: 1, Risk.HIGH: 2, Risk.CRITICAL: 3}


class State(enum.StrEnum):
    """A request's lifecycle. Terminal states never change."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self is not State.PENDING


class Outcome(enum.StrEnum):
    """What a Decision says. ``auto_*`` outcomes come from the policy, not a human."""

    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    AUTO_APPROVED = "auto_approved"
    AUTO_REJECTED = "auto_rejected"

    @property
    def approved(self) -> bool:
        return self in (Outcome.APPROVED, Outcome.AUTO_APPROVED)

    @property
    def state(self) -> State:
        return {
            Outcome.APPROVED: State.APPROVED,
            Outcome.AUTO_APPROVED: State.APPROVED,
            Outcome.REJECTED: State.REJECTED,
            Outcome.AUTO_REJECTED: State.REJECTED,
            Outcome.EXPIRED: State.EXPIRED,
            Outcome.CANCELLED: State.CANCELLED,
        }[self]


def json_depth(text: str) -> int:
    """How deeply the JSON ``text`` nests (``{}`` is 1), without parsing it (so without recursion).

    A linear scan that skips string contents (honouring escapes) and counts ``[``/``{``; the text
    need not be valid JSON (an unterminated string ends the scan)::

        json_depth('{"a": [1, "]]"]}')     # 2
    """
    depth = deepest = 0
    for match in _DEPTH_TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
        elif token == '"':  # a string that never ends: the rest is its content
            break
    return deepest


def check_json_value(value: Any, where: str, max_depth: int) -> None:
    """Refuse what cannot travel as signed, canonical JSON; ``ValueError`` names where.

    ``value`` may nest at most ``max_depth`` containers (itself included); numbers must be finite
    and integers within ``±MAX_SAFE_INTEGER``. Iterative, so a Python value nested far deeper
    than the limit is refused cleanly::

        check_json_value({"n": 2**60}, "params", 31)   # ValueError: params.n: integer outside ...
    """
    stack: list[tuple[Any, int, str]] = [(value, 1, where)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise ValueError(
                    f"{where} nest deeper than allowed at {path[:200]}: the limit is {MAX_DEPTH} "
                    f"levels for the whole request ({max_depth} for {where})"
                )
            if isinstance(item, dict):
                stack.extend((v, depth + 1, f"{path}.{k}") for k, v in item.items())
            else:
                stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                raise ValueError(
                    f"{path[:200]}: integer outside ±(2**53-1) cannot be signed exactly "
                    "(I-JSON, RFC 7493): send large integers as strings"
                )
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(
                f"{path[:200]}: not a finite number (JSON has no NaN or Infinity; send a string "
                "or null)"
            )


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, str_strip_whitespace=False)


class PlanStep(_Strict):
    """One step of a plan-level request. A bare string is accepted as the description."""

    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    action: Annotated[str, StringConstraints(pattern=ACTION_PATTERN)] | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"description": value}
        return value

    @field_validator("params")
    @classmethod
    def _params_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        # request -> plan -> step -> params: three levels of the document before these.
        check_json_value(value, "params", MAX_DEPTH - 3)
        return value


class ApprovalRequest(_Strict):
    """What an agent asks permission for. Only ``action`` is required.

    ``id`` is the idempotency key: submitting the same id twice yields one request. Unknown
    fields are refused so that a typo (``"parms"``) is an error rather than a silent no-op.
    """

    id: RequestId | None = None
    action: Annotated[str, StringConstraints(pattern=ACTION_PATTERN)]
    params: dict[str, Any] = Field(default_factory=dict)
    param_schema: dict[str, Any] | None = None
    summary: Annotated[str, StringConstraints(max_length=300)] = ""
    reasoning: Annotated[str, StringConstraints(max_length=32_000)] = ""
    context: dict[str, Any] = Field(default_factory=dict)
    agent_id: Ident | None = None
    session_id: Ident | None = None
    requested_by: Ident | None = None
    risk: Risk | None = None
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    plan: Annotated[list[PlanStep], Field(max_length=100)] = Field(default_factory=list)
    dry_run: bool = False
    timeout_s: Annotated[int, Field(gt=0, le=30 * 24 * 3600)] | None = None
    callback_url: Annotated[str, StringConstraints(max_length=2048)] | None = None

    @field_validator("params")
    @classmethod
    def _params_bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value, "params", MAX_DEPTH - 1)
        size = _json_size(value)
        if size > MAX_PARAMS_BYTES:
            raise ValueError(
                f"params serialize to {size} bytes; the limit is {MAX_PARAMS_BYTES} "
                "(send a reference such as a URL or an id instead of the data itself)"
            )
        return value

    @field_validator("context")
    @classmethod
    def _context_bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_json_value(value, "context", MAX_DEPTH - 1)
        size = _json_size(value)
        if size > MAX_CONTEXT_BYTES:
            raise ValueError(
                f"context serializes to {size} bytes; the limit is {MAX_CONTEXT_BYTES}"
            )
        return value

    @field_validator("param_schema")
    @classmethod
    def _schema_is_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        check_json_value(value, "param_schema", MAX_DEPTH - 1)
        if _json_size(value) > MAX_SCHEMA_BYTES:
            raise ValueError(f"param_schema is larger than {MAX_SCHEMA_BYTES} bytes")
        import jsonschema  # local: only requests that carry a schema pay for the import

        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            raise ValueError(f"param_schema is not a valid JSON Schema: {exc.message}") from None
        return value

    @field_validator("callback_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("callback_url must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _params_match_schema(self) -> ApprovalRequest:
        if self.param_schema is not None:
            import jsonschema

            errors = sorted(
                jsonschema.Draft202012Validator(self.param_schema).iter_errors(self.params),
                key=lambda e: list(e.absolute_path),
            )
            if errors:
                first = errors[0]
                where = ".".join(str(p) for p in first.absolute_path) or "(root)"
                raise ValueError(f"params do not match param_schema at {where}: {first.message}")
        return self

    @property
    def title(self) -> str:
        """The line a human reads first: the summary, else the action."""
        return self.summary or self.action


class Reviewer(_Strict):
    """A person who took part in a decision, as recorded on it."""

    user_id: Ident
    display_name: ShortText = ""
    channel: ShortText = "cli"
    role: ShortText | None = None
    at: float = 0.0


class Vote(_Strict):
    """One reviewer's approval (or the approval that came with a modification)."""

    reviewer: Reviewer
    approve: bool = True
    reason: Annotated[str, StringConstraints(max_length=3000)] = ""


class CardRef(_Strict):
    """Where a copy of a request's card was posted, so every copy can be updated later."""

    channel: ShortText  # "slack", "teams", "web"
    conversation: ShortText  # Slack channel id / Teams conversation id
    message: ShortText  # Slack ts / Teams activity id
    thread: ShortText | None = None


class Destination(_Strict):
    """Where a review goes: a channel, an on-call schedule, or one user."""

    kind: Literal["channel", "oncall", "user"] = "channel"
    target: ShortText = ""


class NotifyTarget(_Strict):
    """Someone or something told outside chat (docs/notifications.md), beside the card.

    ``email`` and ``sms``: ``target`` is ``user:<reviewer id>`` or ``oncall:<schedule>`` (the
    address or phone comes from the directory); ``pagerduty``: a service name whose routing key
    is in the settings; ``jira``: a project key (an issue is opened there, or the one named in
    the request's context is used).
    """

    kind: Literal["email", "sms", "pagerduty", "jira"]
    target: ShortText

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"

    @property
    def people(self) -> Destination | None:
        """For ``email`` and ``sms``: the destination whose people are told."""
        if self.kind not in ("email", "sms"):
            return None
        kind, sep, who = self.target.partition(":")
        if not sep:
            return Destination(kind="user", target=self.target)
        return Destination(kind="oncall" if kind == "oncall" else "user", target=who)


class EscalationStep(_Strict):
    """After ``after_s`` seconds without a decision, notify ``target`` and ``notify`` (or time
    out)."""

    after_s: Annotated[int, Field(gt=0)]
    target: Destination | None = None
    notify: list[NotifyTarget] = Field(default_factory=list)
    timeout: bool = False


class VerdictKind(enum.StrEnum):
    AUTO_APPROVE = "auto_approve"
    AUTO_REJECT = "auto_reject"
    REVIEW = "review"


class Verdict(_Strict):
    """What the policy decided for one request. Produced by :mod:`hitl.policies`.

    ``roles`` lists the roles any approver must hold one of (empty: anyone but the requester);
    ``distinct_roles`` lists roles that must each be covered by a different approver.
    """

    kind: VerdictKind
    risk: Risk = Risk.LOW
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""
    rule: ShortText | None = None
    approvals: Annotated[int, Field(ge=1, le=10)] = 1
    roles: list[ShortText] = Field(default_factory=list)
    distinct_roles: list[ShortText] = Field(default_factory=list)
    destination: Destination | None = None
    notify: list[NotifyTarget] = Field(default_factory=list)
    """Told beside the card when the request is stored (email, SMS, PagerDuty, Jira)."""
    escalation: list[EscalationStep] = Field(default_factory=list)
    timeout_outcome: Literal["rejected", "approved"] = "rejected"
    digest: bool = False
    policy_version: ShortText = ""


class Decision(_Strict):
    """The one terminal answer to a request, signed so the tool runs exactly what was approved.

    ``request_digest`` binds it to the whole request as submitted (see :mod:`hitl.signing`);
    ``key_id`` names the service key that signed it.
    """

    request_id: RequestId
    request_digest: str = ""
    outcome: Outcome
    params: dict[str, Any] = Field(default_factory=dict)
    modified: bool = False
    original_params: dict[str, Any] | None = None
    reviewers: list[Reviewer] = Field(default_factory=list)
    reason: str = ""
    policy_version: str = ""
    requested_at: float = 0.0
    decided_at: float = 0.0
    dry_run: bool = False
    key_id: str = ""
    signature: str = ""

    @property
    def approved(self) -> bool:
        return self.outcome.approved

    @property
    def age_s(self) -> float:
        """Seconds between the request and its decision."""
        return max(0.0, self.decided_at - self.requested_at)


class FeedbackEntry(_Strict):
    """What a human decided about one of an agent's requests, kept for the agent to learn from.

    The store writes one per human decision (approved or rejected) in the same transaction as
    the decision, under ``<prefix>feedback:<agent and action>``; :meth:`hitl.Client.feedback`
    reads them back. ``original_params`` is set when a reviewer changed the params
    (``params`` is then what was approved instead); ``risk`` is the policy's, not the agent's.
    """

    request_id: RequestId
    agent_id: Ident
    action: Annotated[str, StringConstraints(pattern=ACTION_PATTERN)]
    outcome: Outcome
    risk: Risk
    reason: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    original_params: dict[str, Any] | None = None
    reviewers: list[str] = Field(default_factory=list)
    decided_at: float = 0.0

    @property
    def modified(self) -> bool:
        return self.original_params is not None

    @classmethod
    def of(cls, record: RequestRecord, decision: Decision) -> FeedbackEntry | None:
        """The entry for a human decision on an agent's request; None for anything else
        (automatic, expired or cancelled outcomes, or a request without an ``agent_id``)."""
        agent_id = record.request.agent_id
        if agent_id is None or decision.outcome not in (Outcome.APPROVED, Outcome.REJECTED):
            return None
        return cls(
            request_id=decision.request_id,
            agent_id=agent_id,
            action=record.request.action,
            outcome=decision.outcome,
            risk=record.verdict.risk,
            reason=decision.reason,
            params=decision.params,
            original_params=decision.original_params if decision.modified else None,
            reviewers=[r.display_name or r.user_id for r in decision.reviewers],
            decided_at=decision.decided_at,
        )


class Control(_Strict):
    """An override: a person paused or resumed an agent, or stopped a session.

    The service signs it like a decision (``key_id``, ``signature``), so that an agent, which
    holds only the public key, can tell it from a forgery: a forged ``resume`` would otherwise
    let a paused agent act. Exactly one of ``agent_id`` (pause, resume) and ``session_id``
    (stop) is set.
    """

    kind: Literal["pause", "resume", "stop"]
    agent_id: Ident | None = None
    session_id: Ident | None = None
    by: Reviewer
    reason: Annotated[str, StringConstraints(max_length=3000)] = ""
    at: float = 0.0
    key_id: str = ""
    signature: str = ""

    @property
    def halts(self) -> bool:
        """True for a pause or a stop: tools must not run."""
        return self.kind != "resume"


class BreakGlass(_Strict):
    """An emergency approval by one person, which a second person must acknowledge in time."""

    by: Reviewer
    reason: str
    ack_deadline: float
    acked_by: Reviewer | None = None
    overdue_reported: bool = False


class RequestRecord(BaseModel):
    """What the store keeps per request (``hitl:req:<id>``): the request, its state and votes."""

    model_config = ConfigDict(extra="ignore")

    request: ApprovalRequest
    state: State = State.PENDING
    verdict: Verdict
    created_at: float
    deadline: float | None = None
    escalation_level: int = 0
    votes: list[Vote] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    """The params under review now (the request's, or a reviewer's modification)."""
    modified_by: list[Reviewer] = Field(default_factory=list)
    decision: Decision | None = None
    cards: list[CardRef] = Field(default_factory=list)
    break_glass: BreakGlass | None = None

    @property
    def id(self) -> str:
        assert self.request.id is not None
        return self.request.id

    @property
    def approvals(self) -> list[Vote]:
        return [v for v in self.votes if v.approve]
