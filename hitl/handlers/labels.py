"""Labels: was a decision right? What makes a false-positive rate measurable.

Someone who later knows better (the customer was owed the refund after all; the volume really
was garbage) labels the decided request ``correct`` or ``incorrect``. A rejected request labelled
``incorrect`` is a false positive: an action that should have run was stopped::

    label(store, "r-42", "incorrect", Reviewer(user_id="bob"), note="customer was right")
    labels(store, ["r-42", "r-43"])        # {"r-42": Label(...)}

Only terminal requests can be labelled; a new label replaces the old one; every label is audited
(``labeled``). Labels never change a decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hitl.errors import InvalidRequest
from hitl.models import Reviewer
from hitl.queue.audit import AuditEvent
from hitl.queue.store import Store

__all__ = ["LABELS", "Label", "label", "labels"]

LABELS = ("correct", "incorrect")
LabelValue = Literal["correct", "incorrect"]


class Label(BaseModel):
    """What someone said about a decision, afterwards."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    label: LabelValue
    by: str
    at: float
    note: str = Field(default="", max_length=1000)
    outcome: str = ""
    """The decision's outcome when it was labelled (``approved``, ``rejected`` ...)."""


def label(store: Store, request_id: str, value: str, by: Reviewer, note: str = "") -> Label:
    """Label the decided request ``request_id`` (:class:`InvalidRequest` if it is still open)."""
    if value not in LABELS:
        raise InvalidRequest(
            f"a label is correct or incorrect, not {value!r}", [("label", "invalid")]
        )
    if len(note) > 1000:
        raise InvalidRequest("keep the note under 1000 characters", [("note", "too long")])
    record = store.get(request_id)
    if record.decision is None or not record.state.terminal:
        raise InvalidRequest(
            f"{request_id} is still {record.state.value}: label it once it is decided",
            [("id", "not decided")],
        )
    made = Label(
        label=value,
        by=by.user_id,
        at=store.clock(),
        note=note,
        outcome=record.decision.outcome.value,
    )
    key = store.keys.label(request_id)
    event = AuditEvent(
        "labeled",
        request_id,
        by.user_id,
        {"label": value, "note": note, "outcome": made.outcome, "channel": by.channel},
        record.verdict.policy_version,
    )
    store.append_events([event], also=lambda pipe: pipe.set(key, made.model_dump_json()))
    return made


def labels(store: Store, request_ids: Sequence[str]) -> dict[str, Label]:
    """The labels of those requests that have one."""
    out: dict[str, Label] = {}
    for start in range(0, len(request_ids), 500):
        chunk = list(request_ids[start : start + 500])
        raws = store.redis.mget([store.keys.label(i) for i in chunk]) if chunk else []
        out.update({i: Label.model_validate_json(r) for i, r in zip(chunk, raws, strict=True) if r})
    return out
