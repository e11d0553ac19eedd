"""The reviewer directory as the channel adapters see it: a typed lookup, not ``getattr``.

The service's authority is the policy (or, without one, an ``OpenAuthority`` with no directory);
a channel that maps its platform's users to reviewers asks :func:`reviewers_of` for the
directory, and mypy sees the lookup and the entry it returns::

    directory = reviewers_of(service.authority)
    entry = directory.reviewer("U0BOB") if directory is not None else None
    entry.slack_id, entry.teams_id, entry.name
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from hitl.policies import DirectoryEntry

__all__ = ["Reviewers", "reviewers_of"]


@runtime_checkable
class Reviewers(Protocol):
    """The policy's reviewer directory (:class:`hitl.policies.Policy` is one)."""

    def reviewer(self, user_id: str) -> DirectoryEntry | None: ...


def reviewers_of(authority: object) -> Reviewers | None:
    """The directory behind ``authority``, or None when it has none."""
    return authority if isinstance(authority, Reviewers) else None
