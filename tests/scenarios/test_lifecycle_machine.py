"""A hypothesis state machine over the request lifecycle, with an adversary taking turns.

Agents submit requests (through the real intake and the shipped policy); reviewers from the
directory approve, reject and modify; an adversary replays other requests' decisions, forges
decisions with its own key, respells the requester's name, races two reviewers and cancels with
another agent's id. After every step the invariants of DESIGN.md hold:

- at most one decision per request, and it never changes once made;
- no approval without the required number of distinct people, none of them the requester;
- every delivered decision verifies for its own request only (id and digest);
- the audit chain verifies against the newest signed checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from hitl.errors import HitlError, SignatureError
from hitl.handlers import Decider
from hitl.identity import canonical_id
from hitl.keys import KeyRing
from hitl.models import ApprovalRequest, Decision, Outcome, Reviewer, State
from hitl.policies import default_policy
from hitl.queue.audit import FileAnchor
from hitl.queue.checkpoints import Checkpointer, verify_store
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from hitl.signing import request_digest, sign_decision, verify_decision
from tests.conftest import KEYRING
from tests.redis_server import RedisServer

POLICY = default_policy()
PEOPLE = ["alice", "bob", "carol", "dave", "erin", "frank"]
SPELLINGS = {
    "bob": ["bob", " Bob", "BOB\u200b", "Bob Brown", "U0BOB", "bob@example.com", "ｂｏｂ"],
    "carol": ["carol", "Carol Chen ", "U0CAROL", "CAROL@example.com"],
    "dave": ["dave", "Dave\u2060 Davis", "u0dave"],
    "alice": ["alice", "ALICE", "Alice Adams"],
}
ACTIONS = [
    ("delete_volume", {"volume_id": "vol-1"}),
    ("refund", {"order_id": "A-1", "amount": 250.0}),
    ("refund", {"order_id": "A-2", "amount": 20.0}),
    ("stop_instance", {"instance_id": "i-1", "environment": "production"}),
    ("list_instances", {"region": "eu-west-1"}),
]


def _person(user: str) -> Reviewer:
    entry = POLICY.reviewer(user)
    return Reviewer(user_id=user, display_name=entry.display_name if entry else "")


class Lifecycle(RuleBasedStateMachine):
    requests = Bundle("requests")

    def __init__(self) -> None:
        super().__init__()
        self.server: RedisServer = SERVER["server"]
        self.tmp = SERVER["tmp"]
        self.r: redis.Redis = self.server.client()
        self.r.flushall()
        self.store = Store(self.r, signer=KEYRING)
        self.decider = Decider(self.store, POLICY)
        self.intake = IntakeConsumer(
            self.store, POLICY.evaluate, block_ms=0, on_cancel=self.decider.cancel_by_agent
        )
        self.intake.ensure_group()
        anchor_path = self.tmp / f"anchor-{id(self)}.jsonl"
        anchor_path.unlink(missing_ok=True)
        self.anchor = FileAnchor(anchor_path)
        self.checkpointer = Checkpointer(self.store, KEYRING, self.anchor)
        self.submitted: dict[str, ApprovalRequest] = {}
        self.first_decision: dict[str, Decision] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.intake.close()
        self.r.close()

    # -- agents --------------------------------------------------------------------------------

    @initialize(target=requests)
    def first_request(self) -> str:
        return self._submit(0, "bob", "agent-a")

    @rule(
        target=requests,
        which=st.integers(0, len(ACTIONS) - 1),
        requester=st.sampled_from(sorted(SPELLINGS)),
        agent=st.sampled_from(["agent-a", "agent-b"]),
    )
    def submit(self, which: int, requester: str, agent: str) -> str:
        return self._submit(which, requester, agent)

    def _submit(self, which: int, requester: str, agent: str) -> str:
        self.counter += 1
        action, params = ACTIONS[which]
        spelled = SPELLINGS[requester][self.counter % len(SPELLINGS[requester])]
        request = ApprovalRequest(
            id=f"r-{self.counter}",
            action=action,
            params=params,
            requested_by=spelled,
            agent_id=agent,
        )
        self.r.xadd("hitl:requests", {"request": request.model_dump_json()})
        self.intake.run_once(block_ms=0)
        self.submitted[str(request.id)] = request
        return str(request.id)

    @rule(rid=requests, agent=st.sampled_from(["agent-a", "agent-b", "AGENT-A\u200b"]))
    def cancel(self, rid: str, agent: str) -> None:
        cancel = {"id": rid, "reason": "re-planned", "agent_id": agent}
        self.r.xadd("hitl:requests", {"cancel": json.dumps(cancel)})
        self.intake.run_once(block_ms=0)
        record = self.store.get(rid)
        owner = canonical_id(self.submitted[rid].agent_id or "")
        if record.state is State.CANCELLED and rid not in self.first_decision:
            assert owner == canonical_id(agent), "another agent cancelled this request"

    # -- reviewers -----------------------------------------------------------------------------

    @rule(rid=requests, who=st.sampled_from(PEOPLE))
    def approve(self, rid: str, who: str) -> None:
        with contextlib.suppress(HitlError):
            self.decider.approve(rid, _person(who))

    @rule(rid=requests, who=st.sampled_from(PEOPLE))
    def reject(self, rid: str, who: str) -> None:
        with contextlib.suppress(HitlError):
            self.decider.reject(rid, _person(who), "not now")

    @rule(rid=requests, who=st.sampled_from(PEOPLE), amount=st.sampled_from([5.0, 90.0, 500.0]))
    def modify(self, rid: str, who: str, amount: float) -> None:
        if "amount" not in self.submitted[rid].params:
            return
        with contextlib.suppress(HitlError):
            self.decider.modify(rid, _person(who), {"amount": amount})

    @rule(rid=requests, a=st.sampled_from(PEOPLE), b=st.sampled_from(PEOPLE))
    def race(self, rid: str, a: str, b: str) -> None:
        """Two reviewers click at the same moment."""
        barrier = threading.Barrier(2)

        def click(who: str) -> None:
            barrier.wait()
            with contextlib.suppress(HitlError):
                Decider(Store(self.server.client(), signer=KEYRING), POLICY).approve(
                    rid, _person(who)
                )

        threads = [threading.Thread(target=click, args=(w,)) for w in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)

    # -- the adversary -------------------------------------------------------------------------

    @rule(victim=requests, source=requests)
    def replay(self, victim: str, source: str) -> None:
        """Push another request's genuine decision into the victim's list: refused."""
        if victim == source:
            return
        record = self.store.get(source)
        if record.decision is None:
            return
        with pytest.raises(SignatureError):
            verify_decision(
                record.decision,
                KEYRING.public(),
                request_id=victim,
                request_digest=request_digest(self.submitted[victim]),
            )

    @rule(rid=requests)
    def forge(self, rid: str) -> None:
        """A decision signed with a key the agent does not trust is refused."""
        forged = sign_decision(
            Decision(
                request_id=rid,
                outcome=Outcome.APPROVED,
                params=self.submitted[rid].params,
                request_digest=request_digest(self.submitted[rid]),
            ),
            ATTACKER,
        )
        with pytest.raises(SignatureError):
            verify_decision(forged, KEYRING.public(), request_id=rid)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def one_decision_per_request_and_it_never_changes(self) -> None:
        for rid in self.submitted:
            record = self.store.find(rid)
            if record is None:
                continue  # dead-lettered (e.g. a conflicting id): never decided
            assert self.r.llen(f"hitl:decision:{rid}") <= 1
            if record.decision is None:
                assert record.state is State.PENDING
                continue
            first = self.first_decision.setdefault(rid, record.decision)
            assert first == record.decision, f"{rid}: the decision changed"

    @invariant()
    def approvals_have_enough_distinct_people_none_the_requester(self) -> None:
        for rid, decision in self.first_decision.items():
            if decision.outcome is not Outcome.APPROVED:
                continue
            record = self.store.get(rid)
            people = {canonical_id(r.user_id) for r in decision.reviewers}
            assert len(people) >= record.verdict.approvals
            requester = self.submitted[rid].requested_by or ""
            for reviewer in decision.reviewers:
                entry = POLICY.reviewer(reviewer.user_id)
                assert entry is not None
                names = [entry.id, entry.slack_id, entry.email, entry.display_name]
                assert canonical_id(requester) not in {canonical_id(n) for n in names if n}

    @invariant()
    def every_decision_verifies_for_its_own_request_only(self) -> None:
        for rid, decision in self.first_decision.items():
            digest = request_digest(self.submitted[rid])
            verify_decision(decision, KEYRING.public(), request_id=rid, request_digest=digest)

    @invariant()
    def audit_chain_verifies_against_the_newest_checkpoint(self) -> None:
        self.checkpointer.checkpoint()
        report = verify_store(self.store, self.anchor.read(), KEYRING.public())
        assert report.ok, str(report)
        assert 0 == report.unanchored


ATTACKER = KeyRing.generate()
SERVER: dict[str, Any] = {}


@pytest.fixture
def machine_env(redis_server: RedisServer, tmp_path: Any) -> None:
    SERVER["server"] = redis_server
    SERVER["tmp"] = tmp_path


def test_request_lifecycle_under_attack(machine_env: None) -> None:
    """Random interleavings of agents, reviewers and an adversary keep every invariant."""
    run = settings(
        max_examples=25,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )(Lifecycle).TestCase
    run().runTest()
