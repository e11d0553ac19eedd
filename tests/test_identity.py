"""canonical_id: the one spelling identities are compared in."""

from __future__ import annotations

import pytest

from hitl.identity import canonical_id


@pytest.mark.parametrize(
    "variant",
    [
        "ops-bot",
        "OPS-BOT",
        "  ops-bot\t",
        "ops\u200b-bot",  # zero-width space
        "\ufeffops-bot",  # byte-order mark
        "ops-\u2060bot",  # word joiner
        "ｏｐｓ-ｂｏｔ",  # fullwidth letters (NFKC)
        "Ops-Bot\u200d",  # zero-width joiner
    ],
)
def test_spelling_variants_are_one_identity(variant: str) -> None:
    """Case, surrounding space, width and invisible format characters do not make a new id."""
    assert "ops-bot" == canonical_id(variant)


def test_casefold_is_full_unicode() -> None:
    """Casefolding goes beyond lower(): German sharp s and its capital are one identity."""
    assert canonical_id("STRASSE") == canonical_id("straße")


def test_different_names_stay_different() -> None:
    """Canonicalizing never merges genuinely different names (a space inside is kept)."""
    assert {"ops-bot", "ops bot", "ops-bot2"} == {
        canonical_id(t) for t in ("ops-bot", "ops bot", "ops-bot2")
    }
