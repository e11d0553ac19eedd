"""Canonical JSON, request digests and the Ed25519 decision signature."""

from __future__ import annotations

import base64
import hashlib

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from hitl.errors import SignatureError
from hitl.keys import KeyRing, PublicKeys
from hitl.models import ApprovalRequest, Decision, PlanStep, Reviewer
from hitl.signing import (
    canonical_bytes,
    canonical_json,
    decision_message,
    params_hash,
    request_digest,
    sign_decision,
    verify_decision,
)

RING = KeyRing.generate()
PUBLIC = RING.public()


def _decision(**overrides: object) -> Decision:
    data: dict[str, object] = {
        "request_id": "r-1",
        "outcome": "approved",
        "params": {"order": "A-1", "amount": 50},
        "reviewers": [{"user_id": "bob", "display_name": "Bob", "channel": "slack"}],
        "requested_at": 1700000000.5,
        "decided_at": 1700000060.25,
    }
    data.update(overrides)
    return Decision.model_validate(data)


def test_canonical_json_is_sorted_compact_and_keeps_utf8() -> None:
    """Keys sorted at every level, no spaces, non-ASCII kept as is."""
    assert '{"a":[1,{"c":2,"d":"é"}],"b":null}' == canonical_json(
        {"b": None, "a": [1, {"d": "é", "c": 2}]}
    )


def test_canonical_bytes_are_rfc8785() -> None:
    """The signed bytes are JCS: numbers in their shortest ES6 form, keys sorted by UTF-16."""
    assert b'{"a":1,"b":[2.5,100000000000000000000]}' == canonical_bytes(
        {"b": [2.5, 1e20], "a": 1.0}
    )


def test_params_hash_ignores_key_order() -> None:
    """The same params in another order hash the same; other values do not."""
    assert params_hash({"a": 1, "b": 2}) == params_hash({"b": 2, "a": 1})
    assert params_hash({"a": 1}) != params_hash({"a": 2})
    assert hashlib.sha256(b'{"a":1}').hexdigest() == params_hash({"a": 1})


def test_request_digest_covers_the_whole_request() -> None:
    """Any field of the request changes its digest: requester, dry_run, plan, agent, session."""
    base = ApprovalRequest(id="r-1", action="delete_volume", params={"volume_id": "v-1"})
    digest = request_digest(base)
    assert digest.startswith("sha256:")
    for change in (
        {"requested_by": "alice"},
        {"dry_run": True},
        {"plan": [PlanStep(description="step")]},
        {"agent_id": "a-2"},
        {"session_id": "s-2"},
        {"params": {"volume_id": "v-2"}},
        {"action": "list_instances"},
    ):
        assert digest != request_digest(base.model_copy(update=change)), change


def test_signed_decision_verifies_with_public_keys_only() -> None:
    """Signed with the keyring, verified with nothing but the public keys."""
    signed = sign_decision(_decision(), RING)
    assert RING.active == signed.key_id
    assert signed == verify_decision(signed, PublicKeys.parse(PUBLIC.to_env()))


@pytest.mark.parametrize(
    "change",
    [
        {"params": {"order": "A-1", "amount": 5000}},
        {"outcome": "rejected"},
        {"request_id": "r-2"},
        {"dry_run": True},
        {"requested_at": 1.0},
        {"reviewers": [{"user_id": "eve"}]},
        {"decided_at": 1800000000.0},
        {"request_digest": "sha256:" + "0" * 64},
        {"reason": "edited"},
    ],
)
def test_any_altered_field_fails_verification(change: dict[str, object]) -> None:
    """Every field is covered: changing any one breaks the signature."""
    signed = sign_decision(_decision(), RING)
    with pytest.raises(SignatureError, match="bad signature"):
        verify_decision(
            Decision.model_validate({**signed.model_dump(mode="json"), **change}), PUBLIC
        )


def test_a_random_key_cannot_sign_for_the_service() -> None:
    """A decision signed by a key the agent does not trust is refused by name."""
    forged = sign_decision(_decision(), KeyRing.generate())
    with pytest.raises(SignatureError, match="not trusted"):
        verify_decision(forged, PUBLIC)


def test_a_key_id_swapped_onto_a_forged_signature_fails() -> None:
    """Claiming the service's key id does not help a signature made with another key."""
    other = sign_decision(_decision(), KeyRing.generate())
    forged = other.model_copy(update={"key_id": RING.active})
    with pytest.raises(SignatureError, match="bad signature"):
        verify_decision(forged, PUBLIC)


def test_unsigned_decision_is_refused() -> None:
    """No signature at all: refused, never trusted by default."""
    with pytest.raises(SignatureError, match="not signed"):
        verify_decision(_decision(), PUBLIC)


def test_decision_of_another_request_is_refused() -> None:
    """A genuine decision for request A is not an answer for request B (replay)."""
    genuine = sign_decision(_decision(request_id="A"), RING)
    with pytest.raises(SignatureError, match="while waiting for 'B'"):
        verify_decision(genuine, PUBLIC, request_id="B")


def test_decision_for_another_request_under_the_same_id_is_refused() -> None:
    """Same id, different request digest: a request the agent never made."""
    mine = ApprovalRequest(id="r-1", action="delete_volume", params={"volume_id": "v-1"})
    theirs = ApprovalRequest(id="r-1", action="list_instances")
    decision = sign_decision(_decision(request_digest=request_digest(theirs)), RING)
    with pytest.raises(SignatureError, match="different request"):
        verify_decision(decision, PUBLIC, request_id="r-1", request_digest=request_digest(mine))


def test_rotated_keys_verify_old_and_new_signatures() -> None:
    """After rotation the new key signs and the old signatures still verify."""
    old = sign_decision(_decision(), RING)
    rotated = RING.rotated()
    new = sign_decision(_decision(), rotated)
    assert rotated.active == new.key_id != old.key_id
    keys = rotated.public()
    assert old == verify_decision(old, keys)
    assert new == verify_decision(new, keys)


def test_another_language_can_verify_from_the_documented_bytes() -> None:
    """Rebuilding the message from the JSON wire form (as any language would) verifies."""
    signed = sign_decision(_decision(), RING)
    wire = signed.model_dump(mode="json")
    signature = base64.b64decode(wire.pop("signature"))
    message = b"hitl-decision/1\n" + rfc8785.dumps(wire)
    assert decision_message(signed) == message
    raw = base64.b64decode(PUBLIC.to_env().split(":", 1)[1])
    Ed25519PublicKey.from_public_bytes(raw).verify(signature, message)  # raises if wrong


def test_reviewer_list_is_covered() -> None:
    """Adding a reviewer to a signed decision breaks it."""
    signed = sign_decision(_decision(), RING)
    more = [*signed.reviewers, Reviewer(user_id="eve")]
    with pytest.raises(SignatureError):
        verify_decision(signed.model_copy(update={"reviewers": more}), PUBLIC)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=2000, deadline=None)
@given(JSON_VALUES)
def test_fast_canonical_bytes_equal_the_rfc8785_reference(value: object) -> None:
    """The fast path and the reference implementation give the same bytes for any JSON value
    (floats of every magnitude, non-BMP keys, control characters, surrogates aside)."""
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError):
        with pytest.raises((rfc8785.CanonicalizationError, UnicodeEncodeError)):
            canonical_bytes(value)
        return
    assert expected == canonical_bytes(value)


@pytest.mark.parametrize(
    "value",
    [1e16, 1e21, 1e-5, 1e-7, 5e-324, 1.7976931348623157e308, -0.0, 2.0**53, 0.1 + 0.2, 123.456],
)
def test_fast_canonical_bytes_at_the_float_boundaries(value: float) -> None:
    """Exponent thresholds of Python and ECMAScript differ; the bytes must not."""
    assert rfc8785.dumps({"x": [value]}) == canonical_bytes({"x": [value]})


def test_keys_sort_by_utf16_code_units() -> None:
    """An astral-plane key sorts before U+FF61 in UTF-16 (after it in code points)."""
    value = {"\uff61": 1, "\U0001f600": 2}
    assert rfc8785.dumps(value) == canonical_bytes(value)
