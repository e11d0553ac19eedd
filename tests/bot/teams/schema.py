"""The official Adaptive Card 1.5 schema, read from beside the repository (never copied in)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

_REPO = Path(__file__).resolve().parents[3]
SCHEMA = next(
    (
        path
        for path in (d / "shared" / "schemas" / "adaptive-card-1.5.json" for d in _REPO.parents)
        if path.is_file()
    ),
    _REPO.parent / "shared" / "schemas" / "adaptive-card-1.5.json",
)
"""The official schema, kept beside the repository (or beside a worktree's parent folder)."""


@cache
def _validator() -> jsonschema.protocols.Validator | None:
    if not SCHEMA.is_file():
        return None
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)  # draft-06: picked from its $schema
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(card: dict[str, Any]) -> list[str]:
    """Every way ``card`` breaks the official schema (skips the test when it is absent)."""
    validator = _validator()
    if validator is None:
        pytest.skip(f"Adaptive Card schema not found at {SCHEMA.resolve()}: schema check skipped")
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in
            validator.iter_errors(card)]  # fmt: skip
