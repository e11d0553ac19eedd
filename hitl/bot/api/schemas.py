"""The API's bodies and answers as pydantic models: validation in, JSON Schema out (OpenAPI).

Bodies forbid unknown fields, so a typo (``reasn``) is a 400 rather than an empty reason.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from hitl.models import Decision

__all__ = [
    "AckResult",
    "ActionResult",
    "AuditHead",
    "BatchItem",
    "BatchResult",
    "BreakGlassBody",
    "CancelBody",
    "CheckpointResult",
    "ControlResult",
    "EmptyBody",
    "ErrorBody",
    "ErrorDetail",
    "ModifyBody",
    "OverrideBody",
    "RECORD_MARK",
    "PendingPage",
    "ReasonBody",
    "RejectBody",
    "WhoAmI",
]

Reason = str
"""Bounded (3000 characters) and required where it must be by the handlers, whose messages say
what to do."""
RECORD_MARK = "x-hitl-record"
Record = Annotated[dict[str, Any], WithJsonSchema({RECORD_MARK: True})]
"""A request record as ``hitl show --json`` prints it (the stored record plus its ``id``); the
OpenAPI document replaces the mark with a reference to its ``Record`` schema."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmptyBody(_Body):
    """No fields (an empty body or ``{}``)."""


class ReasonBody(_Body):
    reason: Reason = ""


class RejectBody(_Body):
    reason: Reason


class ModifyBody(_Body):
    params: dict[str, Any]
    reason: Reason = ""


class BreakGlassBody(_Body):
    reason: Reason


class CancelBody(_Body):
    reason: Reason = ""


class OverrideBody(_Body):
    outcome: Literal["approved", "rejected"]
    reason: Reason


class LabelBody(_Body):
    label: Literal["correct", "incorrect"]
    note: str = ""


class LabelResult(BaseModel):
    """A label put on a decided request (``incorrect`` on a rejection: a false positive)."""

    id: str
    label: str
    by: str
    at: float
    note: str = ""
    outcome: str
    message: str


class ErrorDetail(BaseModel):
    code: str
    message: str
    errors: list[tuple[str, str]] = Field(default_factory=list)


class ErrorBody(BaseModel):
    error: ErrorDetail


class ActionResult(BaseModel):
    """What a decision call did: the record after it, and the decision once terminal."""

    id: str
    state: str
    message: str
    decision: Decision | None = None
    record: Record


class AckResult(BaseModel):
    id: str
    message: str
    record: Record


class PendingPage(BaseModel):
    total: int
    offset: int
    next_offset: int | None = None
    requests: list[Record]


class WhoAmI(BaseModel):
    tid: str
    sub: str
    role: Literal["reviewer", "operator"]
    display_name: str = ""


class ChainHeadOut(BaseModel):
    chain: int
    seq: int
    hash: str


class AuditHead(BaseModel):
    seq: int
    hash: str
    """The root over every chain's head (what `hitl audit verify --head SEQ:HASH` takes)."""
    chains: list[ChainHeadOut] = []
    checkpoint: dict[str, Any] | None = None
    """The newest signed checkpoint (a copy kept in Redis; the anchor outside Redis counts)."""


class CheckpointResult(BaseModel):
    checkpoints: list[dict[str, Any]] = []
    """One per chain that moved since its last checkpoint."""
    anchor: str
    message: str


class ControlResult(BaseModel):
    """A pause, resume or stop: the signed control agents read, and what a stop cancelled."""

    message: str
    control: dict[str, Any]
    cancelled: list[str] = Field(default_factory=list)


class BatchItem(BaseModel):
    request_id: str
    ok: bool
    decided: bool
    message: str


class BatchResult(BaseModel):
    message: str
    items: list[BatchItem]
