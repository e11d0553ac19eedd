"""The reviewer directory: who people are on each platform, and which roles they hold.

One person has one directory ``id`` and may also be known by a Slack user id, a Teams AAD object
id and an email address. Every comparison of people in the policy (self-approval, "already
voted", distinct approvers) goes through :meth:`Directory.identity`, so that ``U0ALICE`` (a
Slack click) and ``alice@example.com`` (a Teams click) are the same person::

    directory.identity("U0ALICE") == directory.identity("Alice@Example.com") == "alice"

Roles may include other roles (``compliance`` includes ``manager``): a person's roles are the
closure, so a compliance officer may approve whatever a manager may.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

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
    """Case-insensitive lookup of reviewers by any of their ids."""

    def __init__(self, entries: Iterable[DirectoryEntry]) -> None:
        self.entries: tuple[DirectoryEntry, ...] = tuple(entries)
        self._by_alias: dict[str, DirectoryEntry] = {}
        for entry in self.entries:
            for alias in entry.aliases:
                self._by_alias.setdefault(alias.casefold(), entry)

    def get(self, user_id: str) -> DirectoryEntry | None:
        """The person known by ``user_id`` (any alias, any case), or None."""
        return self._by_alias.get(user_id.casefold())

    def identity(self, user_id: str) -> str:
        """One key per person: the directory id, or the casefolded id of a stranger."""
        entry = self._by_alias.get(user_id.casefold())
        return entry.id if entry is not None else user_id.casefold()

    def roles_of(self, user_id: str) -> frozenset[str]:
        entry = self._by_alias.get(user_id.casefold())
        return entry.roles if entry is not None else frozenset()

    def holders(self, role: str) -> list[DirectoryEntry]:
        """Everyone who holds ``role`` (directly or through an included role)."""
        return [e for e in self.entries if role in e.roles]

    def name(self, user_id: str) -> str:
        entry = self.get(user_id)
        return entry.name if entry is not None else user_id
