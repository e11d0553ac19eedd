"""Approve, reject, modify and cancel: the rules every channel's buttons go through."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import redis

from hitl.errors import AlreadyDecided, InvalidRequest, NotAuthorized, NotFound
from hitl.handlers import Decider, OpenAuthority, describe_decision, validate_params
from hitl.models import (
    ApprovalRequest,
    Decision,
    Outcome,
    Reviewer,
    Risk,
    State,
    Verdict,
    VerdictKind,
)
from hitl.queue.audit import verify_entries
from hitl.queue.store import Store
from hitl.signing import verify_decision
from tests.handlers.conftest import MakeRequest
from tests.scenarios.helpers import audit_entries, audit_kinds

BOB = Reviewer(user_id="bob", display_name="Bob", channel="slack")
CAROL = Reviewer(user_id="carol", display_name="Carol", channel="teams")
DAVE = Reviewer(user_id="dave", channel="web")
ALICE = Reviewer(user_id="alice", channel="slack")
SCHEMA = {
    "type": "object",
    "properties": {"order": {"type": "string"}, "amount": {"type": "number", "maximum": 100}},
    "required": ["order", "amount"],
}


def two_person(**fields: Any) -> Verdict:
    """A review verdict that needs two distinct approvers."""
    return Verdict(kind=VerdictKind.REVIEW, approvals=2, rule="two-person", **fields)


def _chain_ok(store: Store, r: redis.Redis) -> bool:
    return verify_entries(audit_entries(r), expect_head=store.head()).ok


def _refusals(r: redis.Redis, rid: str | None) -> list[dict[str, Any]]:
    return [e for e in audit_entries(r) if e["kind"] == "refused" and e["request_id"] == rid]


# -- approve -----------------------------------------------------------------------------------


def test_approve_decides_signs_and_delivers(
    make_request: MakeRequest, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """One approval (default quorum) decides: signed, on the list and stream, audited."""
    rid = make_request()
    before = time.time()
    result = decider.approve(rid, BOB, "looks right")
    decision = result.decision
    assert decision is not None
    assert (Outcome.APPROVED, ["bob"], "looks right", False) == (
        decision.outcome,
        [rv.user_id for rv in decision.reviewers],
        decision.reason,
        decision.modified,
    )
    assert before <= decision.reviewers[0].at <= time.time()
    assert "slack" == decision.reviewers[0].channel
    verify_decision(decision, store.signer.public())
    assert re.fullmatch(
        r"approved by Bob \(bob\) at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", result.message
    )
    assert [decision] == [
        Decision.model_validate_json(x) for x in r.lrange(f"hitl:decision:{rid}", 0, -1)
    ]
    assert ["submitted", "approved"] == audit_kinds(r, rid)
    assert (State.APPROVED, []) == (store.get(rid).state, store.pending_ids())


def test_unknown_request_is_not_found_and_audited(decider: Decider, r: redis.Redis) -> None:
    """Approving an id that does not exist is NotFound, and the attempt is audited."""
    with pytest.raises(NotFound, match="no request 'ghost'"):
        decider.approve("ghost", BOB)
    [entry] = audit_entries(r)
    assert ("refused", None, "bob", "ghost") == (
        entry["kind"],
        entry["request_id"],
        entry["actor"],
        entry["details"]["request"],
    )


def test_reason_over_the_limit_is_refused(make_request: MakeRequest, decider: Decider) -> None:
    """A reason over 3000 characters is bad input naming ``reason``."""
    rid = make_request()
    with pytest.raises(InvalidRequest, match="keep it under 3000") as info:
        decider.approve(rid, BOB, "r" * 3001)
    assert [("reason", "too long")] == info.value.errors


# -- two-person rule ---------------------------------------------------------------------------


def test_two_person_rule_needs_two_distinct_people(
    make_request: MakeRequest, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """The first approval waits; the same person again is refused; a second person decides."""
    rid = make_request(verdict=two_person())
    first = decider.approve(rid, BOB)
    assert (None, "1 of 2 approvals (Bob)") == (first.decision, first.message)
    assert State.PENDING == store.get(rid).state

    for same in (BOB, Reviewer(user_id="BOB", channel="teams")):
        with pytest.raises(NotAuthorized, match="has already approved; another person must"):
            decider.approve(rid, same)
    assert 1 == len(store.get(rid).votes)

    result = decider.approve(rid, CAROL)
    assert result.decision is not None
    assert ["bob", "carol"] == [rv.user_id for rv in result.decision.reviewers]
    assert ["submitted", "vote", "refused", "refused", "approved"] == audit_kinds(r, rid)
    approved = audit_entries(r)[-1]
    assert ("carol", ["bob", "carol"], 2, ["list", "stream"]) == (
        approved["actor"],
        approved["details"]["reviewers"],
        approved["details"]["vote"]["count"],
        approved["details"]["delivered_to"],
    )
    assert _chain_ok(store, r)


def test_requester_cannot_approve_own_request(
    make_request: MakeRequest, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """Self-approval is refused (whatever the case of the id) and audited; it stays pending."""
    rid = make_request(requested_by="alice")
    for me in (ALICE, Reviewer(user_id="Alice")):
        with pytest.raises(NotAuthorized, match="made this request and cannot approve it"):
            decider.approve(rid, me)
    assert (State.PENDING, []) == (store.get(rid).state, store.get(rid).votes)
    assert ["approve", "approve"] == [e["details"]["attempt"] for e in _refusals(r, rid)]


# The agent writes requested_by; these spellings are all alice (the reproduced defect).
ALICE_SPELLINGS = [" alice", "alice ", "alice\u200b", "ＡＬＩＣＥ", "\ufeffAl\u00adice", "ALICE"]


@pytest.mark.parametrize("requested_by", ALICE_SPELLINGS)
def test_requester_spelled_oddly_cannot_approve(
    make_request: MakeRequest, decider: Decider, store: Store, requested_by: str
) -> None:
    """Spaces, zero-width characters or fullwidth letters in requested_by do not hide alice."""
    rid = make_request(requested_by=requested_by)
    with pytest.raises(NotAuthorized, match="made this request and cannot approve it"):
        decider.approve(rid, ALICE)
    assert (State.PENDING, []) == (store.get(rid).state, store.get(rid).votes)


def test_two_person_rule_counts_spellings_of_one_person_once(
    make_request: MakeRequest, decider: Decider, store: Store
) -> None:
    """alice, then " Alice\u200b", is one approver: refused the second time, quorum still open."""
    rid = make_request(verdict=two_person())
    decider.approve(rid, ALICE)
    with pytest.raises(NotAuthorized, match="has already approved"):
        decider.approve(rid, Reviewer(user_id=" Alice\u200b", channel="teams"))
    assert (State.PENDING, 1) == (store.get(rid).state, len(store.get(rid).votes))


def test_requester_spelled_oddly_may_still_withdraw(
    make_request: MakeRequest, decider: Decider
) -> None:
    """The withdraw-by-rejecting right follows the canonical id too."""
    rid = make_request(requested_by="ＡＬＩＣＥ\u200b")
    result = decider.reject(rid, ALICE, "changed my mind")
    assert result.decision is not None and Outcome.REJECTED == result.decision.outcome


def test_requester_cannot_modify_own_request(make_request: MakeRequest, decider: Decider) -> None:
    """A modification is an approval too: the requester cannot make one."""
    rid = make_request(requested_by="alice")
    with pytest.raises(NotAuthorized, match="alice made this request"):
        decider.modify(rid, ALICE, {"amount": 1})


# -- reject ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   "])
def test_reject_needs_a_reason(
    make_request: MakeRequest, decider: Decider, store: Store, r: redis.Redis, reason: str
) -> None:
    """A rejection without a reason is bad input naming ``reason``; nothing changes."""
    rid = make_request()
    kinds = audit_kinds(r)
    with pytest.raises(InvalidRequest, match="needs a reason") as info:
        decider.reject(rid, BOB, reason)
    assert [("reason", "required")] == info.value.errors
    assert (State.PENDING, kinds) == (store.get(rid).state, audit_kinds(r))


def test_reject_ends_a_two_person_request(
    make_request: MakeRequest, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """One "no" ends the request even after a first "yes"; the agent gets the reason."""
    rid = make_request(verdict=two_person())
    decider.approve(rid, BOB)
    result = decider.reject(rid, CAROL, "not during the freeze")
    decision = result.decision
    assert decision is not None
    assert (Outcome.REJECTED, ["carol"], "not during the freeze") == (
        decision.outcome,
        [rv.user_id for rv in decision.reviewers],
        decision.reason,
    )
    assert State.REJECTED == store.get(rid).state
    assert 1 == r.llen(f"hitl:decision:{rid}")
    with pytest.raises(AlreadyDecided, match=r"already rejected by Carol \(carol\) at "):
        decider.approve(rid, DAVE)


def test_requester_may_withdraw_by_rejecting(make_request: MakeRequest, decider: Decider) -> None:
    """The requester can reject their own request (withdrawing is always safe)."""
    rid = make_request(requested_by="alice")
    result = decider.reject(rid, ALICE, "changed my mind")
    assert result.decision is not None and Outcome.REJECTED == result.decision.outcome


# -- already decided ---------------------------------------------------------------------------


def test_late_attempts_say_who_decided_and_when(
    make_request: MakeRequest, decider: Decider, r: redis.Redis
) -> None:
    """Every action on a decided request is AlreadyDecided with who and when, and audited."""
    rid = make_request()
    decision = decider.approve(rid, BOB).decision
    assert decision is not None
    attempts = [
        lambda: decider.approve(rid, CAROL),
        lambda: decider.reject(rid, CAROL, "too late"),
        lambda: decider.modify(rid, CAROL, {"amount": 1}),
        lambda: decider.cancel(rid, "agent-1"),
    ]
    for attempt in attempts:
        with pytest.raises(AlreadyDecided) as info:
            attempt()
        assert f"request {rid} is already {describe_decision(decision)}" == str(info.value)
        assert decision == info.value.decision
    late = _refusals(r, rid)
    assert (["approve", "reject", "modify", "cancel"], [True] * 4) == (
        [e["details"]["attempt"] for e in late],
        [e["details"]["late"] for e in late],
    )
    assert 1 == r.llen(f"hitl:decision:{rid}")


# -- modify ------------------------------------------------------------------------------------


def test_modify_approves_with_merged_params(
    make_request: MakeRequest, decider: Decider, store: Store, r: redis.Redis
) -> None:
    """A modification approves the changed params; the decision keeps the originals."""
    rid = make_request(param_schema=SCHEMA, params={"order": "A-1", "amount": 100})
    result = decider.modify(rid, BOB, {"amount": 50}, "half is enough")
    d = result.decision
    assert d is not None
    assert (
        Outcome.APPROVED,
        {"order": "A-1", "amount": 50},
        True,
        {"order": "A-1", "amount": 100},
    ) == (
        d.outcome,
        d.params,
        d.modified,
        d.original_params,
    )
    verify_decision(d, store.signer.public())
    modified = [e for e in audit_entries(r) if e["kind"] == "modified"][0]
    assert ({"order": "A-1", "amount": 100}, {"order": "A-1", "amount": 50}, "half is enough") == (
        modified["details"]["before"],
        modified["details"]["after"],
        modified["details"]["reason"],
    )
    assert ["bob"] == [rv.user_id for rv in store.get(rid).modified_by]


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"amount": "fifty"}, "amount", "'fifty' is not of type 'number'"),
        ({"amount": 500}, "amount", "500 is greater than the maximum of 100"),
        ({"order": 7}, "order", "7 is not of type 'string'"),
    ],
)
def test_modify_is_validated_against_param_schema(
    make_request: MakeRequest,
    decider: Decider,
    store: Store,
    r: redis.Redis,
    params: dict[str, Any],
    field: str,
    words: str,
) -> None:
    """A modification breaking param_schema is InvalidRequest naming the field; nothing changes."""
    rid = make_request(param_schema=SCHEMA, params={"order": "A-1", "amount": 100})
    kinds = audit_kinds(r)
    with pytest.raises(InvalidRequest, match="modified params do not match the schema") as info:
        decider.modify(rid, BOB, params)
    assert [(field, words)] == info.value.errors
    assert f"{field}: {words}" in str(info.value)
    record = store.get(rid)
    assert ({"order": "A-1", "amount": 100}, State.PENDING, kinds) == (
        record.params,
        record.state,
        audit_kinds(r),
    )


def test_modify_rejects_non_objects_and_oversized_params(
    make_request: MakeRequest, decider: Decider
) -> None:
    """Params must be an object within the size limit."""
    rid = make_request()
    with pytest.raises(InvalidRequest, match="params must be an object"):
        decider.modify(rid, BOB, [1, 2])  # type: ignore[arg-type]  # what a bad caller sends
    with pytest.raises(InvalidRequest, match="the limit is 65536") as info:
        decider.modify(rid, BOB, {"order": "x" * 70_000})
    assert [("params", "too large")] == info.value.errors


def test_modify_voids_earlier_votes(
    make_request: MakeRequest, store: Store, r: redis.Redis
) -> None:
    """Approvals given to the old params no longer count after a modification."""
    decider = Decider(store, OpenAuthority(lambda _req: two_person()))
    rid = make_request(verdict=two_person())
    decider.approve(rid, BOB)
    mod = decider.modify(rid, CAROL, {"amount": 40})
    assert mod.decision is None
    record = store.get(rid)
    assert (["carol"], {"order": "A-1", "amount": 40}) == (
        [v.reviewer.user_id for v in record.votes],
        record.params,
    )
    result = decider.approve(rid, BOB)
    assert result.decision is not None
    assert (["carol", "bob"], {"order": "A-1", "amount": 40}, True) == (
        [rv.user_id for rv in result.decision.reviewers],
        result.decision.params,
        result.decision.modified,
    )
    assert _chain_ok(store, r)


def test_earlier_approver_may_modify_but_not_approve_twice(
    make_request: MakeRequest, store: Store
) -> None:
    """A modification replaces the modifier's own earlier vote; it does not add a second one."""
    decider = Decider(store, OpenAuthority(lambda _req: two_person()))
    rid = make_request(verdict=two_person())
    decider.approve(rid, BOB)
    decider.modify(rid, BOB, {"amount": 10})
    assert ["bob"] == [v.reviewer.user_id for v in store.get(rid).votes]
    with pytest.raises(NotAuthorized):
        decider.approve(rid, BOB)


def _by_amount(request: ApprovalRequest) -> Verdict:
    amount = request.params.get("amount", 0)
    if amount > 1000:
        return Verdict(kind=VerdictKind.AUTO_REJECT, rule="limit", reason="over the hard limit")
    if amount > 100:
        return Verdict(kind=VerdictKind.REVIEW, risk=Risk.HIGH, rule="big", approvals=2)
    return Verdict(kind=VerdictKind.REVIEW, risk=Risk.MEDIUM, rule="small")


def test_modify_that_raises_the_risk_goes_back_to_review(
    make_request: MakeRequest, store: Store, r: redis.Redis
) -> None:
    """Raising the amount past a rule's threshold restarts review under the stricter verdict."""
    decider = Decider(store, OpenAuthority(_by_amount))
    rid = make_request(verdict=_by_amount(ApprovalRequest(action="refund", params={"amount": 100})))
    result = decider.modify(rid, BOB, {"amount": 500})
    assert result.decision is None
    record = store.get(rid)
    assert (Risk.HIGH, "big", 2, []) == (
        record.verdict.risk,
        record.verdict.rule,
        record.verdict.approvals,
        record.votes,
    )
    assert ["modified", "review_restarted"] == audit_kinds(r, rid)[-2:]
    assert decider.approve(rid, CAROL).decision is None
    final = decider.approve(rid, DAVE).decision
    assert final is not None and {"order": "A-1", "amount": 500} == final.params


def test_modify_refused_by_policy_rejects(make_request: MakeRequest, store: Store) -> None:
    """Params the policy refuses outright end the request as rejected, with the policy's reason."""
    decider = Decider(store, OpenAuthority(_by_amount))
    rid = make_request(verdict=_by_amount(ApprovalRequest(action="refund", params={"amount": 100})))
    decision = decider.modify(rid, BOB, {"amount": 5000}).decision
    assert decision is not None
    assert (Outcome.REJECTED, "the modified params are refused by policy: over the hard limit") == (
        decision.outcome,
        decision.reason,
    )


def test_modify_to_auto_approvable_params_is_approved(store: Store, r: redis.Redis) -> None:
    """A manager lowering a $120 refund to $50 (auto-approvable) approves it at once."""
    from hitl.policies import default_policy
    from hitl.queue.intake import IntakeConsumer
    from tests.scenarios.helpers import drain, xadd_raw

    policy = default_policy()
    consumer = IntakeConsumer(store, policy.evaluate, block_ms=0)
    consumer.ensure_group()
    xadd_raw(
        r, '{"id": "r-1", "action": "refund", "params": {"amount": 120}, "requested_by": "alice"}'
    )
    drain(consumer)
    consumer.close()
    result = Decider(store, policy).modify("r-1", Reviewer(user_id="bob"), {"amount": 50})
    assert result.decision is not None
    assert (Outcome.APPROVED, {"amount": 50}, {"amount": 120}, ["bob"]) == (
        result.decision.outcome,
        result.decision.params,
        result.decision.original_params,
        [rv.user_id for rv in result.decision.reviewers],
    )


def test_policy_roles_are_enforced(store: Store, r: redis.Redis) -> None:
    """With the shipped policy, a standard reviewer cannot approve a high-risk refund."""
    from hitl.policies import default_policy
    from hitl.queue.intake import IntakeConsumer
    from tests.scenarios.helpers import drain, xadd_raw

    policy = default_policy()
    consumer = IntakeConsumer(store, policy.evaluate, block_ms=0)
    consumer.ensure_group()
    xadd_raw(
        r, '{"id": "r-1", "action": "refund", "params": {"amount": 500}, "requested_by": "carol"}'
    )
    drain(consumer)
    consumer.close()
    decider = Decider(store, policy)
    with pytest.raises(NotAuthorized, match="needs a reviewer with role 'manager'"):
        decider.approve("r-1", Reviewer(user_id="alice"))
    decision = decider.approve("r-1", Reviewer(user_id="bob")).decision
    assert decision is not None and "manager" == decision.reviewers[0].role


# -- cancel ------------------------------------------------------------------------------------


def test_cancel_withdraws_a_pending_request(
    make_request: MakeRequest, decider: Decider, store: Store
) -> None:
    """The agent's cancel is a terminal decision with the agent as actor."""
    rid = make_request(verdict=two_person())
    decider.approve(rid, BOB)
    decision = decider.cancel(rid, "agent-7", "re-planned").decision
    assert decision is not None
    assert (Outcome.CANCELLED, "agent-7", "agent", "re-planned", State.CANCELLED) == (
        decision.outcome,
        decision.reviewers[0].user_id,
        decision.reviewers[0].channel,
        decision.reason,
        store.get(rid).state,
    )


def test_cancel_after_approval_keeps_the_approval(
    make_request: MakeRequest, decider: Decider, store: Store
) -> None:
    """A cancel that loses the race is AlreadyDecided carrying the approval."""
    rid = make_request()
    approved = decider.approve(rid, BOB).decision
    with pytest.raises(AlreadyDecided) as info:
        decider.cancel(rid, "agent-7")
    assert approved == info.value.decision
    assert State.APPROVED == store.get(rid).state


# -- helpers -----------------------------------------------------------------------------------


def test_describe_decision() -> None:
    """Names (with ids) and the UTC time; "by policy" when nobody clicked."""
    d = Decision(
        request_id="r-1",
        outcome="approved",
        decided_at=0.0,
        reviewers=[Reviewer(user_id="bob", display_name="Bob"), Reviewer(user_id="carol")],
    )
    assert "approved by Bob (bob), carol at 1970-01-01 00:00:00Z" == describe_decision(d)
    auto = d.model_copy(update={"reviewers": [], "outcome": Outcome.AUTO_REJECTED})
    assert "auto_rejected by policy at 1970-01-01 00:00:00Z" == describe_decision(auto)


def test_validate_params_merges_over_the_current_params(
    make_request: MakeRequest, store: Store
) -> None:
    """Only the given keys change; the rest are kept."""
    rid = make_request(params={"order": "A-1", "amount": 100, "note": ""})
    assert {"order": "A-1", "amount": 1, "note": "x"} == validate_params(
        store.get(rid), {"amount": 1, "note": "x"}
    )


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"amont": 50}, "has no parameter 'amont'"),
        ({"amount": "lots"}, "must stay a number"),
        ({"amount": "150"}, "must stay a number"),
        ({"amount": None}, "must stay a number"),
        ({"amount": float("inf")}, "finite"),
        ({"amount": float("nan")}, "finite"),
        ({"amount": 2**60}, "send large integers as strings"),
        ({"order": 7}, "must stay a string"),
    ],
)
def test_modify_keeps_the_shape_of_the_call(
    make_request: MakeRequest, store: Store, decider: Decider, change: dict[str, Any], says: str
) -> None:
    """A typo'd name, a changed type or a non-finite number is refused and nothing changes."""
    rid = make_request(params={"order": "A-1", "amount": 100})
    with pytest.raises(InvalidRequest, match=says):
        decider.modify(rid, BOB, change)
    assert {"order": "A-1", "amount": 100} == store.get(rid).params
    assert State.PENDING == store.get(rid).state


def test_concurrent_modifications_do_not_revert_each_other(
    make_request: MakeRequest, store: Store, r: redis.Redis
) -> None:
    """Carol's order fix is applied on top of Bob's new amount, not on the params she read."""
    authority = OpenAuthority(lambda _req: two_person())
    rid = make_request(verdict=two_person())
    bob_decider = Decider(store, authority)
    fired: list[bool] = []

    def clock_that_lets_bob_in_first() -> float:
        if not fired:  # inside Carol's transaction, after she read the record: Bob commits
            fired.append(True)
            bob_decider.modify(rid, BOB, {"amount": 50})
        return time.time()

    carol_store = Store(
        r,
        signer=store.signer,
        clock=clock_that_lets_bob_in_first,
    )
    Decider(carol_store, authority).modify(rid, CAROL, {"order": "A-2"})
    assert {"order": "A-2", "amount": 50} == store.get(rid).params


def test_modify_of_unknown_request_is_audited(decider: Decider, r: redis.Redis) -> None:
    """Like approve, a modification of an id that does not exist is an audited refusal."""
    with pytest.raises(NotFound):
        decider.modify("ghost", BOB, {"amount": 1})
    assert ["refused"] == audit_kinds(r)
