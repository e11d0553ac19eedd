"""Who a Teams user is in hitl, and who a reviewer is in Teams: the directory's ``teams_id``.

Teams authenticates the clicking user; the activity carries their Entra ID object id
(``from.aadObjectId``). It names a reviewer only through that reviewer's ``teams_id`` (not
through an id, an email or a display name that happens to be spelled the same), so the same
person clicking in Slack (``slack_id``) and in Teams counts once, as their directory id::

    people = TeamsPeople(policy)
    people.reviewer("9a6b...0b0b", "Bob B.")   # Reviewer(user_id="bob", channel="teams")
    people.reviewer("0000-stranger", "Eve")    # Reviewer(user_id="teams:0000-stranger")
    people.teams_id("bob")                     # "9a6b...0b0b" (to find bob's personal chat)
"""

from __future__ import annotations

from hitl.bot.directory import reviewers_of
from hitl.identity import canonical_id
from hitl.models import Reviewer
from hitl.policies import DirectoryEntry

__all__ = ["STRANGER_PREFIX", "TeamsPeople"]

STRANGER_PREFIX = "teams:"
"""The user id of a Teams user the directory does not know: ``teams:<aadObjectId>``, so that it
can never be mistaken for a directory id, a Slack id or an email."""


class TeamsPeople:
    """Teams users <-> directory reviewers (see the module docstring). Without a directory (no
    policy reviewers) every Teams user is a stranger, known by their object id."""

    def __init__(self, authority: object) -> None:
        self._directory = reviewers_of(authority)

    def entry(self, aad_object_id: str) -> DirectoryEntry | None:
        """The reviewer whose ``teams_id`` is ``aad_object_id`` (compared canonically)."""
        if self._directory is None or not aad_object_id.strip():
            return None
        entry = self._directory.reviewer(aad_object_id)
        if entry is None or not entry.teams_id:
            return None
        return entry if canonical_id(entry.teams_id) == canonical_id(aad_object_id) else None

    def reviewer(self, aad_object_id: str, name: str = "") -> Reviewer:
        """The :class:`Reviewer` a click of ``aad_object_id`` is recorded as."""
        entry = self.entry(aad_object_id)
        if entry is not None:
            return Reviewer(user_id=entry.id, display_name=entry.name[:256], channel="teams")
        return Reviewer(
            user_id=(STRANGER_PREFIX + aad_object_id)[:256],
            display_name=name[:256],
            channel="teams",
        )

    def teams_id(self, reviewer_id: str) -> str | None:
        """The Teams object id of a directory reviewer (None: not in Teams); a stranger's id
        (``teams:<id>``) gives the object id back."""
        if reviewer_id.startswith(STRANGER_PREFIX):
            return reviewer_id[len(STRANGER_PREFIX) :] or None
        if self._directory is None:
            return None
        entry = self._directory.reviewer(reviewer_id)
        return entry.teams_id if entry is not None and entry.teams_id else None

    def name(self, reviewer_id: str) -> str:
        """What to call a reviewer in a message."""
        entry = self._directory.reviewer(reviewer_id) if self._directory is not None else None
        return entry.name if entry is not None else reviewer_id
