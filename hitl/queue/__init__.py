"""Everything Redis: intake, the request store, delivery, the audit chain, the embedded server."""

from __future__ import annotations

from .audit import AuditEvent, ChainHead, VerifyReport, build_entry, verify_entries
from .intake import Classifier, IntakeConsumer
from .keys import Keys
from .store import Change, IntakeItem, Store

__all__ = [
    "AuditEvent",
    "ChainHead",
    "Change",
    "Classifier",
    "IntakeConsumer",
    "IntakeItem",
    "Keys",
    "Store",
    "VerifyReport",
    "build_entry",
    "verify_entries",
]
