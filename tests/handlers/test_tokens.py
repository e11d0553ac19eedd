"""Personal API tokens: the format, issuing, authenticating and revoking (real Redis)."""

from __future__ import annotations

import pytest
import redis

from hitl.errors import InvalidRequest, NotFound, Unauthenticated
from hitl.handlers.tokens import Claims, authenticate, decode, encode, issue, revoke
from hitl.keys import KeyRing
from hitl.policies import Policy, default_policy
from hitl.queue.store import Store
from hitl.queue.tokens import TokenRecords
from tests.conftest import KEYRING
from tests.scenarios.helpers import audit_entries


@pytest.fixture(scope="module")
def policy() -> Policy:
    return default_policy()


@pytest.fixture
def records(store: Store) -> TokenRecords:
    return TokenRecords(store)


def test_round_trip_and_canonical_subject(records: TokenRecords, policy: Policy) -> None:
    """A token issued for an alias carries the directory id and authenticates as that person."""
    token, record = issue(records, KEYRING, policy, "U0BOB", actor="ops", label="laptop")
    caller = authenticate(records, KEYRING.public(), policy, token)
    assert ("bob", "Bob Brown", "reviewer", record.tid) == (
        caller.sub,
        caller.display_name,
        caller.role,
        caller.tid,
    )
    assert "api" == caller.reviewer().channel


def test_the_signature_is_domain_separated() -> None:
    """The token's signature covers b"hitl-token/1\\n" + payload, so it verifies as nothing else."""
    claims = Claims(tid="t-1", sub="bob", role="reviewer", iat=1.0, exp=2.0, kid=KEYRING.active)
    token = encode(claims, KEYRING)
    assert claims == decode(token, KEYRING.public())
    with pytest.raises(Unauthenticated, match="bad_signature"):
        decode(token, KeyRing.generate().public())


def test_a_changed_record_does_not_change_the_role(
    records: TokenRecords, policy: Policy, store: Store, r: redis.Redis
) -> None:
    """Someone with Redis write access turns a reviewer record into an operator's: refused."""
    token, record = issue(records, KEYRING, policy, "bob", actor="ops")
    forged = record.model_copy(update={"role": "operator"})
    r.set(store.keys.token(record.tid), forged.model_dump_json())
    with pytest.raises(Unauthenticated, match="does not match its record"):
        authenticate(records, KEYRING.public(), policy, token)
    assert ["mismatch"] == [
        e["details"]["reason"] for e in audit_entries(r) if e["kind"] == "token_refused"
    ]


def test_a_reviewer_removed_from_the_directory_is_refused(
    records: TokenRecords, policy: Policy
) -> None:
    """Directory membership is checked on every use, not only when the token was issued."""
    token, _ = issue(records, KEYRING, policy, "bob", actor="ops")

    class Empty:
        def reviewer(self, user_id: str) -> None:
            return None

    with pytest.raises(Unauthenticated, match="no longer in the policy's reviewer directory"):
        authenticate(records, KEYRING.public(), Empty(), token)


def test_issue_checks_its_input(records: TokenRecords, policy: Policy, r: redis.Redis) -> None:
    """Strangers, blank names and silly expiries are refused before anything is stored."""
    for name, days in (("mallory", 1.0), (" ", 1.0), ("bob", 0.0), ("bob", 10_000.0)):
        with pytest.raises(InvalidRequest):
            issue(records, KEYRING, policy, name, actor="ops", expires_days=days)
    assert [] == records.all()
    assert [] == audit_entries(r)


def test_revoke_is_audited_once(records: TokenRecords, policy: Policy, r: redis.Redis) -> None:
    """Revoking marks the record (listed as revoked); revoking again changes nothing."""
    _token, record = issue(records, KEYRING, policy, "carol", actor="ops")
    revoked = revoke(records, record.tid, actor="ops")
    assert revoked == revoke(records, record.tid, actor="someone-else")
    assert [revoked] == records.all()
    assert ["token_created", "token_revoked"] == [e["kind"] for e in audit_entries(r)]
    with pytest.raises(NotFound):
        revoke(records, "t-nope", actor="ops")
