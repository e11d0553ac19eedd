"""One spelling per person: the canonical form every identity comparison goes through.

A request's ``requested_by`` is written by the agent, the party hitl does not trust. If
``" bob"``, ``"bob\\u200b"`` (a zero-width space) or ``"ＢＯＢ"`` (fullwidth letters) compared
unequal to ``"bob"``, bob could approve his own request. So ids, emails and display names are
compared only after :func:`canonical_id`::

    canonical_id("  ＢＯＢ\\u200b ") == canonical_id("bob") == "bob"
    canonical_id("Bob   Brown") == "bob brown"
"""

from __future__ import annotations

import functools
import unicodedata

__all__ = ["canonical_id"]

_INVISIBLE = frozenset("\u200b\u200c\u200d\u2060\ufeff")
"""Zero-width space, non-joiner, joiner, word joiner and BOM: removed whatever category the
installed Unicode database gives them (all but U+FEFF are also category Cf)."""


def _once(text: str) -> str:
    normal = unicodedata.normalize("NFKC", text)
    visible = "".join(c for c in normal if c not in _INVISIBLE and unicodedata.category(c) != "Cf")
    return " ".join(visible.split()).casefold()


@functools.lru_cache(maxsize=4096)
def canonical_id(text: str) -> str:
    """NFKC, format characters removed, whitespace runs collapsed to one space, casefolded.

    Idempotent: ``canonical_id(canonical_id(x)) == canonical_id(x)``. One pass is not always:
    removing a zero-width character can bring a letter and its combining accent together, and
    casefolding can produce text that NFKC changes again, so the steps repeat until nothing moves.
    """
    out = _once(text)
    while (again := _once(out)) != out:
        out = again
    return out
