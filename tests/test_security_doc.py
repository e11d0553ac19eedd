"""docs/security.md names a test for every claim: each named test file and test exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"
REF = re.compile(r"`((?:[\w/]+/)?test_\w+\.py)(?:::(test_\w+)(?:\[[^\]]*\])?)?`")


def test_every_test_the_trust_model_names_exists() -> None:
    """Every `path.py::test_name` in docs/security.md is a real test in tests/."""
    refs = REF.findall(DOC.read_text(encoding="utf-8"))
    assert len(refs) >= 30
    missing = []
    for path, name in refs:
        file = ROOT / "tests" / path
        if not file.exists():
            missing.append(path)
        elif name and not re.search(rf"def {name}\(", file.read_text(encoding="utf-8")):
            missing.append(f"{path}::{name}")
    assert [] == missing
