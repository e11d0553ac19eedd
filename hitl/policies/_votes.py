"""Who may vote on a request, and when enough people have.

The rules, in the order they are checked (the first that fails refuses the vote):

1. only a request under review takes votes;
2. the requester never approves their own request: nobody whose id, email or display name the
   ``requested_by`` spelling canonicalizes to (:func:`hitl.identity.canonical_id`), so an
   ambiguous display name excludes everyone who has it;
3. one vote per person (people are compared through the directory, so a Slack id and an email
   of the same person are one person, and strangers are compared by canonical spelling);
4. when the verdict names ``roles``, the reviewer holds one of them;
5. when the verdict names ``distinct_roles`` (one ``security`` AND one ``lead_engineer``), the
   vote must leave the quorum reachable: each of those roles covered by a different approver.

The quorum is met when ``approvals`` different people approved and every distinct role is
covered by a different one of them. Covering is a matching between people and roles, so a
person who holds both roles can stand for either, whichever completes the quorum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hitl.models import Verdict, VerdictKind, Vote
from hitl.policies._directory import Directory

__all__ = [
    "VoteCheck",
    "can_decide",
    "check_vote",
    "match_roles",
    "quorum_met",
    "quorum_possible",
]


@dataclass(frozen=True, slots=True)
class VoteCheck:
    """The answer to "may this person vote?": ``reason`` says why not and what to do."""

    ok: bool
    reason: str = ""
    role: str | None = None
    """The role this vote counts for (None when no role is required)."""


def match_roles(people: Sequence[frozenset[str]], roles: Sequence[str]) -> dict[int, int]:
    """A maximum matching of roles to people who hold them: ``{role index: person index}``."""
    owner: dict[int, int] = {}

    def place(person: int, seen: set[int]) -> bool:
        for r, role in enumerate(roles):
            if role in people[person] and r not in seen:
                seen.add(r)
                if r not in owner or place(owner[r], seen):
                    owner[r] = person
                    return True
        return False

    for person in range(len(people)):
        place(person, set())
    return owner


def _approvers(directory: Directory, verdict: Verdict, votes: Sequence[Vote]) -> list[str]:
    """Distinct people (directory identities) whose approvals count, in voting order."""
    required = set(verdict.roles)
    seen: list[str] = []
    for vote in votes:
        if not vote.approve:
            continue
        who = directory.identity(vote.reviewer.user_id)
        if who in seen:
            continue
        if required and not required & directory.roles_of(vote.reviewer.user_id):
            continue
        seen.append(who)
    return seen


def _requesters(directory: Directory, requested_by: str | None) -> set[str]:
    """The directory ids of everyone ``requested_by`` could name (none when it names nobody)."""
    return {e.id for e in directory.candidates(requested_by)} if requested_by else set()


def _or_list(items: Sequence[str]) -> str:
    quoted = [f"'{i}'" for i in items] or ["(none)"]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _ask(directory: Directory, roles: Sequence[str], exclude: set[str]) -> str:
    names = sorted(
        {e.name for role in roles for e in directory.holders(role) if e.id not in exclude}
    )
    if not names:
        return ""
    return f" Ask {', '.join(names[:5])}{' or others' if len(names) > 5 else ''}."


def check_vote(
    directory: Directory,
    verdict: Verdict,
    votes: Sequence[Vote],
    reviewer_id: str,
    requested_by: str | None,
) -> VoteCheck:
    """May ``reviewer_id`` approve now, given the earlier ``votes``? See the module docstring."""
    if verdict.kind is not VerdictKind.REVIEW:
        return VoteCheck(
            False,
            f"the policy already decided this request ({verdict.kind.value}); no vote is taken",
        )
    me = directory.identity(reviewer_id)
    name = directory.name(reviewer_id)
    exclude = {me} | _requesters(directory, requested_by)
    if requested_by is not None and directory.may_be_same(requested_by, reviewer_id):
        return VoteCheck(
            False,
            f"{name} made this request and cannot approve it (no self-approval); "
            f"another reviewer must decide.{_ask(directory, verdict.roles, exclude)}",
        )
    if directory.entries and directory.get(reviewer_id) is None:
        # A policy with a directory is a closed list: a stranger who can see a card (a public
        # channel, a forwarded link) never decides, even where a rule names no role.
        return VoteCheck(
            False,
            f"{reviewer_id} is not in the policy's reviewer directory, so cannot decide; "
            "add them under `reviewers:` with their roles."
            f"{_ask(directory, verdict.roles, exclude)}",
        )
    if any(directory.identity(v.reviewer.user_id) == me for v in votes):
        return VoteCheck(
            False,
            f"{name} has already voted on this request; the next approval must come from a "
            f"different person.{_ask(directory, verdict.distinct_roles or verdict.roles, exclude)}",
        )
    if quorum_met(directory, verdict, votes):
        return VoteCheck(
            False,
            f"this request already has the {verdict.approvals} approval"
            f"{'s' if verdict.approvals > 1 else ''} it needs; no further vote is taken",
        )
    held = directory.roles_of(reviewer_id)
    if verdict.roles and not held & set(verdict.roles):
        has = (
            f"holds {_or_list(sorted(held)).replace(' or ', ', ')}"
            if held
            else (
                "holds no role in the reviewer directory"
                if directory.get(reviewer_id) is None
                else "holds no role"
            )
        )
        return VoteCheck(
            False,
            f"{name} cannot approve this request: it needs a reviewer with role "
            f"{_or_list(verdict.roles)}, and {name} {has}."
            f"{_ask(directory, verdict.roles, exclude)}",
        )
    role: str | None = None
    if verdict.distinct_roles:
        approvers = _approvers(directory, verdict, votes)
        people = [_roles_by_identity(directory, votes, who) for who in approvers]
        before = match_roles(people, verdict.distinct_roles)
        after = match_roles([*people, held], verdict.distinct_roles)
        uncovered_before = [r for i, r in enumerate(verdict.distinct_roles) if i not in before]
        uncovered_after = len(verdict.distinct_roles) - len(after)
        remaining = verdict.approvals - len(approvers) - 1
        if uncovered_after > remaining:
            return VoteCheck(
                False,
                f"{name} cannot approve this request: it still needs a different approver for "
                f"each of {_or_list(uncovered_before).replace(' or ', ' and ')}, and {name} holds "
                f"none of them.{_ask(directory, uncovered_before, exclude)}",
            )
        mine = [verdict.distinct_roles[r] for r, p in after.items() if p == len(people)]
        if mine:
            role = mine[0]
    if role is None and verdict.roles:
        role = next(r for r in verdict.roles if r in held)
    return VoteCheck(True, f"{name} may approve", role)


def _roles_by_identity(directory: Directory, votes: Sequence[Vote], who: str) -> frozenset[str]:
    for vote in votes:
        if directory.identity(vote.reviewer.user_id) == who:
            return directory.roles_of(vote.reviewer.user_id)
    return frozenset()


def quorum_met(directory: Directory, verdict: Verdict, votes: Sequence[Vote]) -> bool:
    """Enough distinct approvers, and every distinct role covered by a different one."""
    if verdict.kind is not VerdictKind.REVIEW:
        return False
    approvers = _approvers(directory, verdict, votes)
    if len(approvers) < verdict.approvals:
        return False
    if not verdict.distinct_roles:
        return True
    people = [_roles_by_identity(directory, votes, who) for who in approvers]
    return len(match_roles(people, verdict.distinct_roles)) == len(verdict.distinct_roles)


def can_decide(
    directory: Directory, verdict: Verdict, reviewer_id: str, requested_by: str | None
) -> bool:
    """Whether ``reviewer_id`` could cast a counting vote on a fresh request with this verdict."""
    return check_vote(directory, verdict, [], reviewer_id, requested_by).ok


def quorum_possible(directory: Directory, verdict: Verdict, requested_by: str | None) -> bool:
    """Whether the people in the directory, without the requester, could complete the quorum."""
    if not directory.entries or not (verdict.roles or verdict.distinct_roles):
        return True
    excluded = _requesters(directory, requested_by)
    required = set(verdict.roles)
    people = [
        e
        for e in directory.entries
        if e.id not in excluded and (not required or required & e.roles)
    ]
    if required and len(people) < verdict.approvals:
        return False
    matched = match_roles([e.roles for e in people], verdict.distinct_roles)
    return len(matched) == len(verdict.distinct_roles)
