"""The reviewer directory: who people are on each platform, and which roles they hold.

One person has one directory ``id`` and may also be known by a Slack user id, a Teams AAD object
id, an email address and a display name. Every comparison of people in the policy ("already
voted", distinct approvers) goes through :meth:`Directory.identity`, and the self-approval check
through :meth:`Directory.may_be_same`, both on :func:`hitl.identity.canonical_id` spellings, so
that ``U0ALICE`` (a Slack click), ``alice@example.com`` (a Teams click) and `` Alice Adams``
are the same person::

    directory.identity("U0ALICE") == directory.identity("Alice@Example.com") == "alice"

Roles may include other roles (``compliance`` includes ``manager``): a person's roles are the
closure, so a compliance officer may approve whatever a manager may.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hitl.identity import canonical_id

__all__ = ["Directory", "DirectoryEntry", "expand_roles"]


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One reviewer. ``roles`` already includes the roles implied by ``includes``."""

    id: str
    display_name: str = ""
    slack_id: str | None = None
    teams_id: str | None = None
    email: str | None = None
    roles: frozenset[str] = frozenset()
    phone: str | None = None
    """E.164; where ``sms:`` targets text this reviewer (not an identity: never an alias)."""

    @property
    def name(self) -> str:
        """What to call them in a message: the display name, else the id."""
        return self.display_name or self.id

    @property
    def aliases(self) -> tuple[str, ...]:
        """Every id this person may act under."""
        return tuple(a for a in (self.id, self.slack_id, self.teams_id, self.email) if a)


def expand_roles(roles: Iterable[str], includes: Mapping[str, Iterable[str]]) -> frozenset[str]:
    """The roles plus every role they include, transitively."""
    out: set[str] = set()
    todo = list(roles)
    while todo:
        role = todo.pop()
        if role not in out:
            out.add(role)
            todo.extend(includes.get(role, ()))
    return frozenset(out)


class Directory:
    """Lookup of reviewers by any of their ids or their display name, compared canonically.

    Ids, Slack ids, Teams ids and emails name one person each (the loader refuses a policy where
    two people share one). A display name may be shared ("Sam Lee" twice): such a spelling is
    ambiguous, so it names nobody when deciding who may act (:meth:`get`), and everybody it could
    mean when deciding who made a request (:meth:`candidates`, :meth:`may_be_same`).
    """

    def __init__(self, entries: Iterable[DirectoryEntry]) -> None:
        self.entries: tuple[DirectoryEntry, ...] = tuple(entries)
        self._by_alias: dict[str, DirectoryEntry] = {}
        self._by_name: dict[str, list[DirectoryEntry]] = {}
        for entry in self.entries:
            for alias in entry.aliases:
                self._by_alias.setdefault(canonical_id(alias), entry)
            name = canonical_id(entry.display_name)
            if name:
                self._by_name.setdefault(name, []).append(entry)

    def get(self, user_id: str) -> DirectoryEntry | None:
        """The one person ``user_id`` names (an id, or a display name nobody else has), or None."""
        key = canonical_id(user_id)
        entry = self._by_alias.get(key)
        if entry is not None:
            return entry
        named = self._by_name.get(key, [])
        return named[0] if len(named) == 1 else None

    def candidates(self, user_id: str) -> tuple[DirectoryEntry, ...]:
        """Everyone ``user_id`` could name: the owner of that id and everyone of that name."""
        key = canonical_id(user_id)
        found = [self._by_alias[key]] if key in self._by_alias else []
        found += self._by_name.get(key, [])
        return tuple({e.id: e for e in found}.values())

    def keys_of(self, entry: DirectoryEntry) -> frozenset[str]:
        """The canonical spellings that name ``entry``: its ids, email and display name."""
        spellings = (*entry.aliases, entry.display_name)
        return frozenset(k for k in map(canonical_id, spellings) if k)

    def may_be_same(self, requested_by: str, reviewer_id: str) -> bool:
        """Whether the person acting as ``reviewer_id`` could be who ``requested_by`` names.

        True when ``requested_by`` canonicalizes to any id, email or display name of the
        reviewer, so an ambiguous or oddly spelled requester excludes every person it could
        mean. A reviewer who is not in the directory is compared canonically, spelling against
        spelling, and against everyone their own spelling could name.
        """
        wanted = canonical_id(requested_by)
        if wanted == canonical_id(reviewer_id):
            return True
        me = self.get(reviewer_id)
        people = (me,) if me is not None else self.candidates(reviewer_id)
        return any(wanted in self.keys_of(p) for p in people)

    def identity(self, user_id: str) -> str:
        """One key per person: the directory id, or the canonical spelling of anyone else."""
        entry = self.get(user_id)
        return entry.id if entry is not None else canonical_id(user_id)

    def roles_of(self, user_id: str) -> frozenset[str]:
        """The roles of the one person ``user_id`` names; none for a stranger or an ambiguity."""
        entry = self.get(user_id)
        return entry.roles if entry is not None else frozenset()

    def holders(self, role: str) -> list[DirectoryEntry]:
        """Everyone who holds ``role`` (directly or through an included role)."""
        return [e for e in self.entries if role in e.roles]

    def name(self, user_id: str) -> str:
        entry = self.get(user_id)
        return entry.name if entry is not None else user_id
