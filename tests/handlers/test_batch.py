"""Batch decisions: N individual decisions, each authorized, quorum-checked and audited."""

from __future__ import annotations

import pytest

from hitl.errors import InvalidRequest, NotFound
from hitl.handlers import Decider, OpenAuthority
from hitl.handlers.batch import decide_digest, decide_many
from hitl.models import (
    ApprovalRequest,
    Destination,
    Outcome,
    RequestRecord,
    Reviewer,
    Risk,
    State,
    Verdict,
    VerdictKind,
)
from hitl.policies import Policy, default_policy
from hitl.queue.audit import AuditEvent
from hitl.queue.digest import Digest, DigestItem
from hitl.queue.store import Change, Store
from tests.scenarios.helpers import audit_entries, audit_kinds

ALICE = Reviewer(user_id="alice", display_name="Alice Adams", channel="slack")
MALLORY = Reviewer(user_id="mallory", channel="slack")


def _put(store: Store, rid: str, *, approvals: int = 1, requested_by: str = "dave") -> None:
    req = ApprovalRequest(id=rid, action="issue_credit", summary=rid, requested_by=requested_by)
    verdict = Verdict(
        kind=VerdictKind.REVIEW,
        risk=Risk.MEDIUM,
        roles=["standard"],
        approvals=approvals,
        destination=Destination(kind="channel", target="#support"),
        policy_version="pv",
    )
    record = RequestRecord(request=req, verdict=verdict, created_at=1.0, params=req.params)
    store.update(rid, lambda _c: Change(record=record, events=[AuditEvent("submitted", rid, "a")]))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return default_policy()


@pytest.fixture
def decider(store: Store, policy: Policy) -> Decider:
    """Decisions checked against the default policy's reviewer directory and roles."""
    return Decider(store, policy)


class Kept:
    """Posted digests, as the digest store keeps them."""

    def __init__(self, *digests: Digest) -> None:
        self.digests = {d.id: d for d in digests}

    def get(self, digest_id: str) -> Digest:
        if digest_id not in self.digests:
            raise NotFound(f"no digest {digest_id!r}")
        return self.digests[digest_id]


def _digest(*ids: str) -> Digest:
    items = [
        DigestItem(request_id=i, title=i, action="issue_credit", risk=Risk.MEDIUM) for i in ids
    ]
    return Digest(id="dg-1", dest="channel:#support", items=items)


def test_approve_many_is_n_decisions(store: Store, decider: Decider) -> None:
    """Each request gets its own approval, audit entries and delivery."""
    for i in range(5):
        _put(store, f"c{i}")
    batch = decide_many(decider, [f"c{i}" for i in range(5)], ALICE, approve=True)
    assert 5 == len(batch.decided) and [] == batch.refused
    assert "5 approved" == batch.message
    for i in range(5):
        assert State.APPROVED == store.get(f"c{i}").state
        assert ["submitted", "approved"] == audit_kinds(store.redis, f"c{i}")
        assert 1 == store.redis.llen(store.keys.decision(f"c{i}"))


def test_unauthorized_reviewer_decides_nothing(store: Store, decider: Decider) -> None:
    """Someone without the role gets one audited refusal per request, and nothing changes."""
    for i in range(3):
        _put(store, f"c{i}")
    batch = decide_many(decider, ["c0", "c1", "c2"], MALLORY, approve=True)
    assert [] == batch.decided and 3 == len(batch.refused)
    assert batch.message.startswith("0 approved; 3 refused: mallory is not in the policy")
    assert all(store.get(f"c{i}").state is State.PENDING for i in range(3))
    refused = [e for e in audit_entries(store.redis) if e["kind"] == "refused"]
    assert ["c0", "c1", "c2"] == [e["request_id"] for e in refused]


def test_requester_cannot_approve_their_own_in_a_batch(store: Store, decider: Decider) -> None:
    """The self-approval rule holds inside a batch: only the others are decided."""
    _put(store, "mine", requested_by="alice")
    _put(store, "theirs")
    batch = decide_many(decider, ["mine", "theirs"], ALICE, approve=True)
    assert ["theirs"] == [i.request_id for i in batch.decided]
    assert ["mine"] == [i.request_id for i in batch.refused]


def test_quorum_is_checked_per_request(store: Store) -> None:
    """A two-person request gets a vote from a batch approval, not a decision."""
    _put(store, "two", approvals=2)
    _put(store, "one")
    batch = decide_many(Decider(store, OpenAuthority()), ["two", "one"], ALICE, approve=True)
    assert ["one"] == [i.request_id for i in batch.decided]
    assert "1 approved; 1 waiting for more approvals" == batch.message
    assert (State.PENDING, 1) == (store.get("two").state, len(store.get("two").votes))


def test_reject_all_needs_a_reason_up_front(store: Store, decider: Decider) -> None:
    """Without a reason nothing is rejected; with one, every request is."""
    _put(store, "c0")
    _put(store, "c1")
    with pytest.raises(InvalidRequest, match="needs a reason"):
        decide_many(decider, ["c0", "c1"], ALICE, approve=False)
    assert State.PENDING == store.get("c0").state
    batch = decide_many(decider, ["c0", "c1"], ALICE, approve=False, reason="duplicate credits")
    assert [Outcome.REJECTED, Outcome.REJECTED] == [
        i.result.decision.outcome for i in batch.items if i.result and i.result.decision
    ]


def test_already_decided_and_unknown_are_per_request(store: Store, decider: Decider) -> None:
    """A request decided meanwhile, or gone, is refused; the others are decided."""
    _put(store, "c0")
    _put(store, "c1")
    decider.approve("c0", ALICE)
    batch = decide_many(decider, ["c0", "c1", "ghost", "c1"], ALICE, approve=True)
    assert ["c0", "c1", "ghost"] == [i.request_id for i in batch.items]
    assert ["c1"] == [i.request_id for i in batch.decided]
    assert "already approved by Alice Adams" in batch.items[0].message


def test_empty_and_oversized_batches_are_refused(decider: Decider) -> None:
    """No ids, or more than the limit, is bad input."""
    with pytest.raises(InvalidRequest, match="no requests"):
        decide_many(decider, [], ALICE, approve=True)
    with pytest.raises(InvalidRequest, match="limit"):
        decide_many(decider, [f"r{i}" for i in range(501)], ALICE, approve=True)


def test_digest_approve_all_and_selected(store: Store, decider: Decider) -> None:
    """Approve all = the digest's ids; approve selected = a subset of them."""
    for i in range(4):
        _put(store, f"c{i}")
    kept = Kept(_digest("c0", "c1", "c2"))
    some = decide_digest(decider, kept, "dg-1", ALICE, approve=True, selected=["c2", "c0"])
    assert ["c0", "c2"] == [i.request_id for i in some.decided]
    rest = decide_digest(decider, kept, "dg-1", ALICE, approve=True)
    assert ["c1"] == [i.request_id for i in rest.decided]
    assert State.PENDING == store.get("c3").state, "not in the digest: untouched"


def test_digest_selection_outside_the_digest_is_refused(store: Store, decider: Decider) -> None:
    """A forged selection naming another request decides nothing at all."""
    _put(store, "c0")
    _put(store, "other")
    with pytest.raises(InvalidRequest, match="other is not in digest dg-1"):
        decide_digest(Decider(store), Kept(_digest("c0")), "dg-1", ALICE, approve=True,
                      selected=["c0", "other"])  # fmt: skip
    assert State.PENDING == store.get("c0").state
    with pytest.raises(NotFound):
        decide_digest(decider, Kept(), "dg-9", ALICE, approve=True)
