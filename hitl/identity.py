"""Identities, compared in one canonical spelling.

An agent id or a user id arrives typed by people and programs: ``"Ops-Bot"``, ``" ops-bot"``,
``"ｏｐｓ-ｂｏｔ"`` (fullwidth) and ``"ops\\u200b-bot"`` (a zero-width space) must all be the same
identity, or an agent could step around an ownership check by respelling its name::

    canonical_id("Ops-Bot\\u200b ") == canonical_id("ops-bot")    # True
"""

from __future__ import annotations

import unicodedata

__all__ = ["canonical_id"]


def canonical_id(text: str) -> str:
    """``text`` in the spelling identities are compared in (never shown to people).

    Unicode NFKC (fullwidth and compatibility forms fold to plain ones), format characters
    (category ``Cf``: zero-width spaces and joiners, BOM, word joiner, bidi marks) removed,
    surrounding whitespace stripped, then full Unicode casefolding (``"ß"`` matches ``"SS"``) and
    NFKC again (casefolding can leave a string unnormalized).
    """
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFKC", text.strip().casefold())
