"""Who may vote: no self-approval, one vote per person, roles, distinct roles, quorum."""

from __future__ import annotations

import itertools

import pytest

from hitl.models import Verdict, VerdictKind
from tests.policies.util import policy_from, req, vote

POLICY = policy_from(
    """
tools: {delete: critical, refund: high, note: medium, wire: critical}
risk_levels:
  low: {policy: autonomous}
  medium: {policy: mandatory}
  high: {policy: mandatory, roles: [manager]}
  critical: {policy: mandatory, roles: [manager], approvals: 2, distinct_roles: [compliance]}
rules:
  - name: delete
    action: delete
    roles: [security, lead_engineer]
    approvals: 2
    distinct_roles: [security, lead_engineer]
break_glass: {roles: [manager], ack_within: 10m, ack_roles: [compliance]}
"""
)
DELETE = POLICY.evaluate(req("delete"))
REFUND = POLICY.evaluate(req("refund"))
NOTE = POLICY.evaluate(req("note"))
WIRE = POLICY.evaluate(req("wire"))


def test_requester_cannot_approve_own_request() -> None:
    """Self-approval is refused, and the reason says someone else must decide."""
    check = POLICY.check_vote(REFUND, [], "bob", "bob")
    assert not check.ok
    assert "made this request" in check.reason and "another reviewer" in check.reason


@pytest.mark.parametrize("alias", ["U0BOB", "bob@example.com", "BOB@EXAMPLE.COM", "Bob"])
def test_self_approval_is_caught_through_directory_aliases(alias: str) -> None:
    """The same person under a Slack id or an email is still the requester."""
    assert not POLICY.check_vote(REFUND, [], alias, "bob").ok
    assert not POLICY.check_vote(REFUND, [], "bob", alias).ok


def test_teams_id_is_an_alias() -> None:
    """A Teams AAD object id identifies the same person."""
    assert POLICY.same_person("aad-alice", "U0ALICE")
    assert "alice" == POLICY.reviewer("AAD-ALICE").id  # type: ignore[union-attr]


def test_second_vote_by_the_same_person_is_refused() -> None:
    """One vote per person, across aliases."""
    check = POLICY.check_vote(WIRE, [vote("frank")], "U0FRANK", None)
    assert not check.ok
    assert "already voted" in check.reason


def test_reviewer_without_a_required_role_is_refused() -> None:
    """roles: the reviewer must hold one of them; the reason names who could."""
    check = POLICY.check_vote(REFUND, [], "alice", None)
    assert not check.ok
    assert "'manager'" in check.reason and "Ask bob, frank." in check.reason
    assert POLICY.check_vote(REFUND, [], "U0BOB", None).ok


def test_unknown_reviewer_holds_no_role() -> None:
    """Someone not in the directory cannot approve a request that needs a role."""
    check = POLICY.check_vote(REFUND, [], "mallory", None)
    assert not check.ok
    assert "not in the policy's reviewer directory" in check.reason
    assert frozenset() == POLICY.roles_of("mallory")
    assert POLICY.reviewer("mallory") is None


def test_no_roles_means_any_listed_reviewer_but_the_requester() -> None:
    """A review without roles may be approved by anyone in the directory but the requester;
    a stranger (someone who merely sees the card) never decides."""
    assert POLICY.check_vote(NOTE, [], "bob", "alice").ok
    assert not POLICY.check_vote(NOTE, [], "mallory", "alice").ok
    assert not POLICY.check_vote(NOTE, [], "alice@example.com", "U0ALICE").ok


def test_vote_reports_the_role_it_counts_for() -> None:
    """VoteCheck.role is the role this vote stands for."""
    assert "security" == POLICY.check_vote(DELETE, [], "carol", None).role
    assert "lead_engineer" == POLICY.check_vote(DELETE, [vote("carol")], "dave", None).role
    assert "manager" == POLICY.check_vote(REFUND, [], "bob", None).role
    assert POLICY.check_vote(NOTE, [], "bob", None).role is None


def test_distinct_roles_refuse_a_second_person_of_the_same_role() -> None:
    """security + lead_engineer: after a security approval, a security-only person is refused."""
    check = POLICY.check_vote(DELETE, [vote("carol")], "erin", None)
    assert check.ok  # erin also holds lead_engineer
    refused = POLICY.check_vote(DELETE, [vote("dave")], "U0DAVE", None)
    assert not refused.ok
    only_security = policy_from(
        """
tools: {delete: critical}
rules: [{name: d, action: delete, roles: [security, lead_engineer], approvals: 2,
         distinct_roles: [security, lead_engineer]}]
reviewers:
  - {id: carol, roles: [security]}
  - {id: sam, roles: [security]}
  - {id: dave, roles: [lead_engineer]}
""",
        directory=False,
    )
    verdict = only_security.evaluate(req("delete"))
    check = only_security.check_vote(verdict, [vote("carol")], "sam", None)
    assert not check.ok
    assert "'lead_engineer'" in check.reason and "Ask dave." in check.reason


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["carol", "dave", "erin"], 2)), ids=str
)
def test_distinct_roles_quorum_in_any_order(order: tuple[str, str]) -> None:
    """Any two of carol (security), dave (lead), erin (both) complete the quorum, in any order."""
    votes = []
    for who in order:
        check = POLICY.check_vote(DELETE, votes, who, None)
        assert check.ok, check.reason
        votes.append(vote(who))
    assert POLICY.quorum_met(DELETE, votes)


def test_quorum_needs_distinct_people() -> None:
    """The same person twice (under two aliases) is one approval."""
    assert not POLICY.quorum_met(WIRE, [vote("frank"), vote("U0FRANK")])
    assert POLICY.quorum_met(WIRE, [vote("frank"), vote("bob")])


def test_quorum_needs_every_distinct_role_covered() -> None:
    """Two managers without compliance do not meet a compliance two-person rule."""
    two_managers = policy_from(
        """
tools: {wire: critical}
reviewers:
  - {id: bob, roles: [manager]}
  - {id: ben, roles: [manager]}
  - {id: frank, roles: [manager, compliance]}
""",
        directory=False,
    )
    verdict = two_managers.evaluate(req("wire"))
    verdict = verdict.model_copy(update={"roles": ["manager"], "distinct_roles": ["compliance"]})
    assert not two_managers.quorum_met(verdict, [vote("bob"), vote("ben")])
    assert two_managers.quorum_met(verdict, [vote("bob"), vote("frank")])


def test_rejections_and_unqualified_votes_do_not_count() -> None:
    """Only approvals from people holding a required role count toward the quorum."""
    assert not POLICY.quorum_met(REFUND, [vote("bob", approve=False)])
    assert not POLICY.quorum_met(REFUND, [vote("alice")])
    assert POLICY.quorum_met(REFUND, [vote("alice"), vote("bob")])


def test_auto_verdicts_take_no_votes() -> None:
    """A request the policy decided itself has no vote to cast."""
    auto = Verdict(kind=VerdictKind.AUTO_APPROVE)
    assert not POLICY.check_vote(auto, [], "bob", None).ok
    assert not POLICY.quorum_met(auto, [vote("bob")])
    assert not POLICY.can_decide(auto, "bob", None)


def test_can_decide_filters_pending() -> None:
    """can_decide: what /hitl pending shows to a reviewer."""
    assert POLICY.can_decide(DELETE, "carol", "alice")
    assert not POLICY.can_decide(DELETE, "carol", "U0CAROL")
    assert not POLICY.can_decide(DELETE, "alice", None)


def test_break_glass() -> None:
    """A manager may break glass; a different compliance person must acknowledge."""
    assert 600 == POLICY.ack_window_s
    allowed = POLICY.break_glass_allowed("U0BOB")
    assert (True, "manager") == (allowed.ok, allowed.role)
    assert not POLICY.break_glass_allowed("carol").ok
    assert not POLICY.break_glass_allowed("mallory").ok
    assert POLICY.break_glass_ack_allowed("bob", "frank").ok
    assert not POLICY.break_glass_ack_allowed("bob", "alice").ok
    assert not POLICY.break_glass_ack_allowed("frank", "U0FRANK").ok


def test_break_glass_disabled_without_a_section() -> None:
    """No break_glass section: nobody may break glass, and the reason says how to enable it."""
    plain = policy_from("tools: {x: low}\n")
    assert plain.ack_window_s is None
    check = plain.break_glass_allowed("bob")
    assert not check.ok and "break_glass section" in check.reason
