"""Canonical JSON, params hashes, derived keys and the decision signature."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from hitl.errors import SignatureError
from hitl.models import Decision, Outcome
from hitl.signing import canonical_json, derive_key, params_hash, sign_decision, verify_decision

KEY = derive_key(b"secret", "decision")


def _decision(**overrides: object) -> Decision:
    data: dict[str, object] = {
        "request_id": "r-1",
        "outcome": "approved",
        "params": {"order": "A-1", "amount": 50},
    }
    data.update(overrides)
    return Decision.model_validate(data)


def test_canonical_json_is_sorted_compact_and_keeps_utf8() -> None:
    """Keys sorted at every level, no spaces, non-ASCII kept as is."""
    assert '{"a":[1,{"c":2,"d":"é"}],"b":null}' == canonical_json(
        {"b": None, "a": [1, {"d": "é", "c": 2}]}
    )


def test_params_hash_ignores_key_order() -> None:
    """The same params in another order hash the same; other values do not."""
    assert params_hash({"a": 1, "b": 2}) == params_hash({"b": 2, "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})
    assert hashlib.sha256(b'{"a":1}').hexdigest() == params_hash({"a": 1})


def test_derived_keys_differ_by_purpose_and_secret() -> None:
    """One secret never signs two kinds of thing; two secrets never share a key."""
    assert derive_key(b"s", "decision") != derive_key(b"s", "audit")
    assert derive_key(b"s", "audit") != derive_key(b"t", "audit")
    assert derive_key(b"s", "audit") == derive_key(b"s", "audit")
    assert 32 == len(derive_key(b"s", "audit"))


def test_signature_matches_the_documented_formula() -> None:
    """HMAC-SHA256(key, "id\\nsha256(canonical params)\\noutcome"), hex."""
    decision = sign_decision(_decision(), KEY)
    message = f"r-1\n{params_hash({'order': 'A-1', 'amount': 50})}\napproved".encode()
    assert hmac.new(KEY, message, hashlib.sha256).hexdigest() == decision.signature


def test_signed_decision_verifies() -> None:
    """A decision verifies with the key it was signed with, also after a JSON round trip."""
    decision = sign_decision(_decision(), KEY)
    assert decision == verify_decision(
        Decision.model_validate_json(decision.model_dump_json()), KEY
    )


@pytest.mark.parametrize(
    "tamper",
    [
        {"params": {"order": "A-1", "amount": 5000}},
        {"params": {"order": "A-1", "amount": 50, "extra": True}},
        {"outcome": Outcome.AUTO_APPROVED},
        {"request_id": "r-2"},
        {"signature": ""},
        {"signature": "0" * 64},
    ],
)
def test_tampered_decision_fails(tamper: dict[str, object]) -> None:
    """Changing params, outcome or id (or the signature) fails with "do not execute it"."""
    decision = sign_decision(_decision(), KEY).model_copy(update=tamper)
    with pytest.raises(SignatureError, match="do not execute it"):
        verify_decision(decision, KEY)


def test_wrong_key_fails() -> None:
    """A decision signed with another secret does not verify."""
    decision = sign_decision(_decision(), derive_key(b"other", "decision"))
    with pytest.raises(SignatureError, match="r-1"):
        verify_decision(decision, KEY)


def test_fields_outside_the_signature_may_change() -> None:
    """Reason and reviewers are informative, not signed: changing them still verifies."""
    decision = sign_decision(_decision(), KEY).model_copy(update={"reason": "edited"})
    assert "edited" == verify_decision(decision, KEY).reason
