"""The wire models: defaults, bounds, and error messages that name the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from hitl.models import (
    MAX_CONTEXT_BYTES,
    MAX_DEPTH,
    MAX_PARAMS_BYTES,
    MAX_SAFE_INTEGER,
    ApprovalRequest,
    Decision,
    EscalationStep,
    Outcome,
    PlanStep,
    RequestRecord,
    Reviewer,
    Risk,
    State,
    Verdict,
    VerdictKind,
    Vote,
    is_valid_id,
    json_depth,
)


def _errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        ApprovalRequest.model_validate(data)
    return [
        (".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors(include_url=False)
    ]


def _fields(data: dict[str, Any]) -> set[str]:
    return {f.split(".")[0] for f, _ in _errors(data)}


# -- ApprovalRequest ---------------------------------------------------------------------------


def test_only_action_is_required() -> None:
    """A request with just an action gets empty params, no id and no risk hint."""
    req = ApprovalRequest(action="refund")
    assert (None, {}, None, False, []) == (req.id, req.params, req.risk, req.dry_run, req.plan)


def test_missing_action_names_the_field() -> None:
    """Leaving out ``action`` is an error on ``action``."""
    assert [("action", "Field required")] == _errors({"params": {}})


@pytest.mark.parametrize("action", ["", "rm -rf /", "9lives", "a" * 129, "x;y"])
def test_bad_action_names_the_field(action: str) -> None:
    """An action that is not a tool name is refused on ``action``."""
    assert {"action"} == _fields({"action": action})


@pytest.mark.parametrize("good", ["refund", "aws.ec2:stop_instance", "_x", "a-b", "a" * 128])
def test_tool_names_are_actions(good: str) -> None:
    """Dotted, namespaced and dashed tool names are valid actions."""
    assert good == ApprovalRequest(action=good).action


@pytest.mark.parametrize("rid", ["", "has space", "-leading-dash", "a" * 129, "é", "a/b"])
def test_bad_id_names_the_field(rid: str) -> None:
    """An id outside letters, digits and ``._:-`` (at most 128) is refused on ``id``."""
    assert {"id"} == _fields({"id": rid, "action": "x"})
    assert not is_valid_id(rid)


@pytest.mark.parametrize("rid", ["r-1", "x-1700000000000-0", "A.b:c_d-9", "a" * 128])
def test_good_ids(rid: str) -> None:
    """Ids the SDK and the intake generate, and typical caller ids, are valid."""
    assert is_valid_id(rid)
    assert rid == ApprovalRequest(id=rid, action="x").id


def test_params_must_be_an_object() -> None:
    """``params`` as a list is refused on ``params``."""
    assert {"params"} == _fields({"action": "x", "params": [1, 2]})


def test_params_over_the_limit_say_size_and_limit() -> None:
    """Params over 64 KiB are refused with their size, the limit and what to do instead."""
    errors = _errors({"action": "x", "params": {"blob": "a" * MAX_PARAMS_BYTES}})
    assert "params" == errors[0][0]
    assert f"the limit is {MAX_PARAMS_BYTES}" in errors[0][1]
    assert "send a reference" in errors[0][1]


def test_params_at_the_limit_are_accepted() -> None:
    """Params that serialize to exactly the limit are fine (the bound is inclusive)."""
    overhead = len('{"blob":""}')
    req = ApprovalRequest(action="x", params={"blob": "a" * (MAX_PARAMS_BYTES - overhead)})
    assert MAX_PARAMS_BYTES - overhead == len(req.params["blob"])


def test_params_size_counts_utf8_bytes() -> None:
    """Multi-byte characters count by their UTF-8 size, not as one each."""
    too_big = {"t": "é" * (MAX_PARAMS_BYTES // 2)}
    assert {"params"} == _fields({"action": "x", "params": too_big})


def test_context_over_the_limit() -> None:
    """Context over 64 KiB is refused on ``context`` with the limit."""
    errors = _errors({"action": "x", "context": {"memory": "m" * MAX_CONTEXT_BYTES}})
    assert "context" == errors[0][0]
    assert str(MAX_CONTEXT_BYTES) in errors[0][1]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("summary", "s" * 301),
        ("reasoning", "r" * 32_001),
        ("agent_id", ""),
        ("agent_id", "a" * 129),
        ("session_id", "s" * 129),
        ("requested_by", ""),
        ("callback_url", "https://x/" + "p" * 2048),
    ],
)
def test_text_bounds_name_the_field(field: str, value: str) -> None:
    """Each bounded text field is refused under its own name."""
    assert {field} == _fields({"action": "x", field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("confidence", -0.01),
        ("confidence", 1.01),
        ("confidence", "high"),
        ("timeout_s", 0),
        ("timeout_s", 30 * 24 * 3600 + 1),
        ("timeout_s", "soon"),
        ("risk", "extreme"),
        ("risk", 3),
        ("dry_run", "maybe"),
        ("plan", "step one"),
        ("context", "a string"),
        ("param_schema", ["not", "a", "schema"]),
    ],
)
def test_wrong_values_name_the_field(field: str, value: Any) -> None:
    """Out-of-range and wrongly typed values are refused under their own name."""
    assert {field} == _fields({"action": "x", field: value})


def test_numeric_bounds_are_inclusive() -> None:
    """confidence 0 and 1 and the longest timeout are accepted."""
    for confidence in (0.0, 1.0):
        assert confidence == ApprovalRequest(action="x", confidence=confidence).confidence
    assert 30 * 24 * 3600 == ApprovalRequest(action="x", timeout_s=30 * 24 * 3600).timeout_s


@pytest.mark.parametrize("level", ["low", "medium", "high", "critical"])
def test_risk_levels(level: str) -> None:
    """The four risk words are the accepted hints."""
    assert Risk(level) == ApprovalRequest(action="x", risk=level).risk


def test_unknown_field_is_refused_by_name() -> None:
    """A typo such as ``parms`` is an error on that field, not a silent no-op."""
    assert [("parms", "Extra inputs are not permitted")] == _errors({"action": "x", "parms": {}})


def test_plan_accepts_strings_and_steps() -> None:
    """A plan step may be a bare description or a step object."""
    req = ApprovalRequest(
        action="x", plan=["drain node", {"action": "stop_instance", "params": {"id": "i-1"}}]
    )
    assert [
        PlanStep(description="drain node"),
        PlanStep(action="stop_instance", params={"id": "i-1"}),
    ] == req.plan


def test_plan_over_100_steps_is_refused() -> None:
    """More than 100 plan steps is refused on ``plan``."""
    assert {"plan"} == _fields({"action": "x", "plan": ["s"] * 101})


def test_plan_step_action_is_checked() -> None:
    """A plan step's action must be a tool name too."""
    assert ["plan.0.action"] == [
        f for f, _ in _errors({"action": "x", "plan": [{"action": "a b"}]})
    ]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "example.com/hook", "http://", "javascript:x"]
)
def test_callback_url_must_be_http(url: str) -> None:
    """Only http(s) callback URLs are accepted; the message says so."""
    errors = _errors({"action": "x", "callback_url": url})
    assert "callback_url" == errors[0][0]
    assert "http:// or https://" in errors[0][1]


def test_param_schema_must_be_a_schema() -> None:
    """An invalid JSON Schema is refused on ``param_schema`` with the schema error."""
    errors = _errors({"action": "x", "param_schema": {"type": "no-such-type"}})
    assert "param_schema" == errors[0][0]
    assert "not a valid JSON Schema" in errors[0][1]


def test_params_must_match_param_schema() -> None:
    """Params that break their own schema are refused, naming the param."""
    schema = {"type": "object", "properties": {"amount": {"type": "number", "maximum": 100}}}
    errors = _errors({"action": "x", "params": {"amount": 500}, "param_schema": schema})
    assert 1 == len(errors)
    assert "params do not match param_schema at amount" in errors[0][1]


def test_params_matching_param_schema_are_accepted() -> None:
    """Params that satisfy their schema are kept as given."""
    schema = {
        "type": "object",
        "required": ["amount"],
        "properties": {"amount": {"type": "number"}},
    }
    assert {"amount": 5} == ApprovalRequest(
        action="x", params={"amount": 5}, param_schema=schema
    ).params


def test_title_prefers_summary() -> None:
    """The title is the summary, else the action."""
    assert ("Refund A-1", "refund") == (
        ApprovalRequest(action="refund", summary="Refund A-1").title,
        ApprovalRequest(action="refund").title,
    )


def test_request_round_trips_through_json() -> None:
    """What an agent sends is what the intake reads back."""
    req = ApprovalRequest(
        id="r-1",
        action="refund",
        params={"amount": 1.5, "note": "ünïcode"},
        risk="high",
        confidence=0.5,
        plan=["a"],
        dry_run=True,
        timeout_s=60,
        callback_url="https://hooks.example.com/x",
    )
    assert req == ApprovalRequest.model_validate_json(req.model_dump_json())


# -- enums -------------------------------------------------------------------------------------


def test_risk_order_and_max() -> None:
    """Risk levels are ordered; max ignores None and defaults to LOW."""
    assert [0, 1, 2, 3] == [r.rank for r in (Risk.LOW, Risk.MEDIUM, Risk.HIGH, Risk.CRITICAL)]
    assert Risk.HIGH == Risk.max(Risk.MEDIUM, None, Risk.HIGH, Risk.LOW)
    assert Risk.LOW == Risk.max()
    assert Risk.LOW == Risk.max(None, None)


def test_only_pending_is_not_terminal() -> None:
    """Every state but pending is terminal."""
    assert {State.PENDING} == {s for s in State if not s.terminal}


def test_outcome_states_and_approval() -> None:
    """Each outcome maps to its state; only approvals (human or policy) are approvals."""
    assert {Outcome.APPROVED, Outcome.AUTO_APPROVED} == {o for o in Outcome if o.approved}
    assert {
        Outcome.APPROVED: State.APPROVED,
        Outcome.AUTO_APPROVED: State.APPROVED,
        Outcome.REJECTED: State.REJECTED,
        Outcome.AUTO_REJECTED: State.REJECTED,
        Outcome.EXPIRED: State.EXPIRED,
        Outcome.CANCELLED: State.CANCELLED,
    } == {o: o.state for o in Outcome}


# -- the other models --------------------------------------------------------------------------


@pytest.mark.parametrize("approvals", [0, 11])
def test_verdict_approvals_bounds(approvals: int) -> None:
    """A verdict asks for 1 to 10 approvals."""
    with pytest.raises(ValidationError, match="approvals"):
        Verdict(kind=VerdictKind.REVIEW, approvals=approvals)


def test_verdict_defaults() -> None:
    """By default a verdict needs one approval and denies on timeout."""
    v = Verdict(kind="review")
    assert (1, "rejected", Risk.LOW, []) == (v.approvals, v.timeout_outcome, v.risk, v.roles)


def test_escalation_step_needs_a_positive_delay() -> None:
    """An escalation step fires after a positive number of seconds."""
    with pytest.raises(ValidationError, match="after_s"):
        EscalationStep(after_s=0)


def test_reviewer_needs_an_id() -> None:
    """A reviewer without a user id is refused on ``user_id``."""
    with pytest.raises(ValidationError, match="user_id"):
        Reviewer(user_id="")


def test_vote_reason_is_bounded() -> None:
    """A vote's reason is at most 3000 characters."""
    with pytest.raises(ValidationError, match="reason"):
        Vote(reviewer=Reviewer(user_id="bob"), reason="r" * 3001)


def test_decision_approved_and_age() -> None:
    """A decision knows whether it approves, and how long the human took."""
    d = Decision(request_id="r-1", outcome="auto_approved", requested_at=10.0, decided_at=12.5)
    assert (True, 2.5) == (d.approved, d.age_s)
    early = Decision(request_id="r-1", outcome="rejected", requested_at=10.0, decided_at=9.0)
    assert (False, 0.0) == (early.approved, early.age_s)


def test_decision_refuses_a_bad_request_id() -> None:
    """A decision's request id follows the id rule."""
    with pytest.raises(ValidationError, match="request_id"):
        Decision(request_id="no spaces", outcome="approved")


def test_record_ignores_unknown_fields_and_counts_approvals() -> None:
    """A stored record tolerates fields from a newer version; approvals are the yes votes."""
    record = RequestRecord.model_validate(
        {
            "request": {"id": "r-1", "action": "x"},
            "verdict": {"kind": "review"},
            "created_at": 1.0,
            "from_the_future": True,
            "votes": [
                {"reviewer": {"user_id": "a"}},
                {"reviewer": {"user_id": "b"}, "approve": False},
            ],
        }
    )
    assert ("r-1", State.PENDING, ["a"]) == (
        record.id,
        record.state,
        [v.reviewer.user_id for v in record.approvals],
    )


# -- JSON limits: depth, finite numbers, integers (I-JSON) -------------------------------------


def _nested(depth: int) -> Any:
    """A value of ``depth`` nested containers (lists and objects alternating), innermost 1."""
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("field", ["params", "context", "param_schema"])
def test_nesting_beyond_the_limit_names_the_field(field: str) -> None:
    """A value nested deeper than the request's depth limit is refused, naming field and limit."""
    [(where, message)] = _errors({"action": "x", field: {"deep": _nested(MAX_DEPTH)}})
    assert field == where
    assert f"the limit is {MAX_DEPTH} levels" in message


def test_plan_step_params_share_the_document_depth() -> None:
    """A plan step's params count the plan and the step as levels of the request."""
    too_deep = {"action": "x", "plan": [{"params": {"deep": _nested(MAX_DEPTH - 3)}}]}
    assert {"plan"} == _fields(too_deep)
    fits = {"action": "x", "plan": [{"params": {"deep": _nested(MAX_DEPTH - 4)}}]}
    assert MAX_DEPTH == json_depth(json.dumps(fits))
    assert 1 == len(ApprovalRequest.model_validate(fits).plan)


def test_nesting_at_the_limit_is_accepted_and_reads_back() -> None:
    """The deepest params allowed fill the document depth exactly and round-trip as a record."""
    request = ApprovalRequest(id="r-1", action="x", params={"deep": _nested(MAX_DEPTH - 2)})
    assert MAX_DEPTH == json_depth(request.model_dump_json())
    record = RequestRecord(
        request=request, verdict=Verdict(kind=VerdictKind.REVIEW), created_at=1.0
    )
    assert record == RequestRecord.model_validate_json(record.model_dump_json())


def test_a_deep_python_value_is_refused_without_recursion() -> None:
    """A params value nested 10,000 deep (built in Python by an SDK user) is a clean error."""
    [(where, message)] = _errors({"action": "x", "params": {"deep": _nested(10_000)}})
    assert ("params", True) == (where, f"the limit is {MAX_DEPTH} levels" in message)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_numbers_are_refused(value: float) -> None:
    """inf and NaN have no JSON form: refused where they are, never stored as null."""
    [(where, message)] = _errors({"action": "x", "params": {"a": [1, {"b": value}]}})
    said = message.removeprefix("Value error, ").split(" (")[0]
    assert ("params", "params.a[1].b: not a finite number") == (where, said)


@pytest.mark.parametrize("value", [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 10**400])
@pytest.mark.parametrize("field", ["params", "context"])
def test_integers_beyond_2_53_are_refused(field: str, value: int) -> None:
    """Integers outside ±(2**53-1) cannot be signed as canonical JSON: send them as strings."""
    [(where, message)] = _errors({"action": "x", field: {"n": value}})
    assert field == where
    assert f"{field}.n: integer outside ±(2**53-1)" in message
    assert "send large integers as strings" in message


def test_integers_at_the_bound_and_bools_are_accepted() -> None:
    """±(2**53-1) are exact in every JSON parser; booleans are not integers here."""
    params = {"hi": MAX_SAFE_INTEGER, "lo": -MAX_SAFE_INTEGER, "flag": True, "x": 1.5e300}
    assert params == ApprovalRequest(action="x", params=params).params


def test_plan_step_numbers_are_checked() -> None:
    """Plan steps' params follow the same number rules as the request's params."""
    assert {"plan"} == _fields({"action": "x", "plan": [{"params": {"n": 2**60}}]})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('"[[[[["', 0),
        ('{"a": "\\"[[[[", "b": [[]]}', 3),
        ('{"a": "\\\\", "b": [[]]}', 3),
        ("[" * 700, 700),
        ('{"a": "[[[[', 1),
    ],
)
def test_json_depth_counts_brackets_outside_strings(text: str, expected: int) -> None:
    """The raw-text scanner skips string contents (and escaped quotes) and counts nesting."""
    assert expected == json_depth(text)
