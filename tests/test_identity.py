"""canonical_id: one spelling per person, whatever the agent typed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitl.identity import canonical_id

SPELLINGS = [
    ("bob", "bob"),
    (" bob", "bob"),
    ("bob ", "bob"),
    ("\tbob\n", "bob"),
    ("bob\u200b", "bob"),
    ("b\u200co\u200db\u2060\ufeff", "bob"),
    ("\u00adbob", "bob"),  # soft hyphen: category Cf
    ("ＢＯＢ", "bob"),
    ("BOB", "bob"),
    ("Bob   Brown", "bob brown"),
    ("Bob\u00a0Brown", "bob brown"),  # NFKC turns a no-break space into a space
    ("Bob \u200b Brown", "bob brown"),
    ("Stra\u00dfe", "strasse"),
    ("e\u0301", "\u00e9"),
    ("e\u200b\u0301", "\u00e9"),  # removing the zero-width space lets the accent compose
    ("U0BOB", "u0bob"),
    ("", ""),
    ("\u200b \u200b", ""),
]


@pytest.mark.parametrize(("text", "expected"), SPELLINGS)
def test_spellings_of_one_id_agree(text: str, expected: str) -> None:
    """Spaces, zero-width and format characters, width and case do not make a new identity."""
    assert expected == canonical_id(text)


def test_different_people_stay_different() -> None:
    """Canonicalization does not merge distinct names."""
    assert canonical_id("bob") != canonical_id("bobby")
    assert canonical_id("sam lee") != canonical_id("samlee")


@given(st.text())
def test_canonical_id_is_idempotent(text: str) -> None:
    """A canonical id is its own canonical id."""
    once = canonical_id(text)
    assert once == canonical_id(once)


@given(st.text())
def test_canonical_id_has_no_outer_or_repeated_whitespace(text: str) -> None:
    """The result is stripped and holds no whitespace but single spaces."""
    out = canonical_id(text)
    assert out == " ".join(out.split())


# -- agent ids (the cancel ownership check compares these) ---------------------------------------


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
def test_agent_id_spelling_variants_are_one_identity(variant: str) -> None:
    """Case, surrounding space, width and invisible format characters do not make a new id."""
    assert "ops-bot" == canonical_id(variant)


def test_casefold_is_full_unicode() -> None:
    """Casefolding goes beyond lower(): German sharp s and its capital are one identity."""
    assert canonical_id("STRASSE") == canonical_id("straße")


def test_different_agent_names_stay_different() -> None:
    """Canonicalizing never merges genuinely different names (a space inside is kept)."""
    assert {"ops-bot", "ops bot", "ops-bot2"} == {
        canonical_id(t) for t in ("ops-bot", "ops bot", "ops-bot2")
    }
