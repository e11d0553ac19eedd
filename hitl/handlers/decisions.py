"""Approve, reject, modify and cancel: the channel-agnostic use cases behind every button.

A Slack click, a Teams card action, a web-inbox form and ``hitl approve`` all end here. Each call
is one atomic store transaction; a refused attempt (already decided, not authorized,
self-approval, second vote by the same person) is committed to the audit chain and then raised::

    decider = Decider(store, authority)
    result = decider.approve("r-42", Reviewer(user_id="U0BOB", display_name="Bob", channel="slack"))
    result.decision        # set once terminal; None while a two-person rule waits for a second
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any

import jsonschema

from hitl.errors import AlreadyDecided, InvalidRequest, NotAuthorized, NotFound
from hitl.identity import canonical_id
from hitl.models import (
    MAX_DEPTH,
    MAX_PARAMS_BYTES,
    Decision,
    Outcome,
    RequestRecord,
    Reviewer,
    State,
    VerdictKind,
    Vote,
    check_json_value,
)
from hitl.queue.audit import AuditEvent
from hitl.queue.store import Change, Store
from hitl.signing import canonical_json

from .authority import Authority, OpenAuthority
from .timeouts import mark_seen, overdue_timeout, time_out

__all__ = ["Decider", "Result", "describe_decision"]

MAX_REASON = 3000


@dataclass(frozen=True)
class Result:
    """What a handler did: the record after the change, and the decision once terminal."""

    record: RequestRecord
    decision: Decision | None
    message: str

    @property
    def terminal(self) -> bool:
        return self.decision is not None


def describe_decision(decision: Decision) -> str:
    """``approved by Bob (U0BOB) at 2026-11-25 10:00:03Z``: for refusals and card footers."""
    who = ", ".join(
        f"{r.display_name} ({r.user_id})" if r.display_name else r.user_id
        for r in decision.reviewers
    )
    at = datetime.datetime.fromtimestamp(decision.decided_at, datetime.UTC)
    by = f" by {who}" if who else " by policy"
    return f"{decision.outcome.value}{by} at {at:%Y-%m-%d %H:%M:%SZ}"


class Decider:
    """The decision use cases, bound to a store and an authority (the policy)."""

    def __init__(self, store: Store, authority: Authority | None = None) -> None:
        self.store = store
        self.authority: Authority = authority or OpenAuthority()

    # -- approve -------------------------------------------------------------------------------

    def approve(self, request_id: str, reviewer: Reviewer, reason: str = "") -> Result:
        """One approval. Decides the request once the quorum (two-person rule) is met."""
        reason = _bounded_reason(reason)

        def fn(current: RequestRecord | None) -> Change:
            record = self._require_open(current, request_id, reviewer, "approve")
            if isinstance(record, Change):
                return record
            refusal = self._check_vote(record, reviewer, "approve")
            if refusal is not None:
                return refusal
            return self._add_approval(record, reviewer, reason)

        return self._result(request_id, fn)

    # -- reject --------------------------------------------------------------------------------

    def reject(self, request_id: str, reviewer: Reviewer, reason: str) -> Result:
        """A rejection ends the request at once, even under a two-person rule (one "no" suffices).

        The reason is required: it tells the agent (and its developers) what to do differently.
        Anyone who could approve may reject, and so may the requester (withdrawing is always safe).
        """
        reason = _bounded_reason(reason)
        if not reason.strip():
            raise InvalidRequest(
                "a rejection needs a reason (--reason 'why'): the agent learns from it",
                [("reason", "required")],
            )

        def fn(current: RequestRecord | None) -> Change:
            record = self._require_open(current, request_id, reviewer, "reject")
            if isinstance(record, Change):
                return record
            refusal = self._reject_refusal(record, reviewer)
            if refusal is not None:
                return refusal
            stamped = reviewer.model_copy(update={"at": self.store.clock()})
            return self._terminal(record, Outcome.REJECTED, [stamped], reason, actor=stamped)

        return self._result(request_id, fn)

    # -- modify --------------------------------------------------------------------------------

    def modify(
        self,
        request_id: str,
        reviewer: Reviewer,
        params: dict[str, Any],
        reason: str = "",
    ) -> Result:
        """Approve with changed params (e.g. refund $50 instead of $100).

        The new params are validated against the request's ``param_schema``. Earlier approvals
        were given to other params, so they are void. The policy is evaluated again on the new
        params: if the risk or the matching rule changes, the request goes back to review under
        the new verdict (the modifier's approval does not count); otherwise the modifier's
        approval counts towards the quorum as usual.
        """
        reason = _bounded_reason(reason)
        if not isinstance(params, dict):
            raise InvalidRequest("params must be an object", [("params", "not an object")])

        def fn(current: RequestRecord | None) -> Change:
            record = self._require_open(current, request_id, reviewer, "modify")
            if isinstance(record, Change):
                return record
            refusal = self._check_vote(record, reviewer, "modify", votes=[])
            if refusal is not None:
                return refusal
            # Merged on the record as it is now: a concurrent modification is never undone.
            merged = validate_params(record, params)
            new_request = record.request.model_copy(update={"params": merged})
            at = datetime.datetime.fromtimestamp(self.store.clock(), datetime.UTC)
            verdict = self.authority.evaluate(new_request, now=at)
            old = record.verdict
            stamped = reviewer.model_copy(update={"at": self.store.clock()})
            details: dict[str, Any] = {
                "before": record.params,
                "after": merged,
                "reason": reason,
                "risk_before": old.risk.value,
                "risk_after": verdict.risk.value,
                "rule_before": old.rule,
                "rule_after": verdict.rule,
            }
            modified = record.model_copy(
                update={
                    "params": merged,
                    "votes": [],
                    "modified_by": [*record.modified_by, stamped],
                }
            )
            events = [
                AuditEvent("modified", record.id, reviewer.user_id, details, old.policy_version)
            ]
            if verdict.kind is VerdictKind.AUTO_REJECT:
                return self._terminal(
                    modified,
                    Outcome.REJECTED,
                    [stamped],
                    f"the modified params are refused by policy: {verdict.reason}",
                    actor=stamped,
                    events=events,
                )
            if verdict.kind is VerdictKind.AUTO_APPROVE:
                # The policy would approve these params without anyone; a person chose them.
                note = f"modified params are auto-approvable ({verdict.rule}): {verdict.reason}"
                return self._terminal(
                    modified.model_copy(update={"verdict": verdict}),
                    Outcome.APPROVED,
                    [stamped],
                    reason or note,
                    actor=stamped,
                    events=events,
                )
            if verdict.risk != old.risk or verdict.rule != old.rule:
                again = modified.model_copy(update={"verdict": verdict})
                events.append(
                    AuditEvent(
                        "review_restarted",
                        record.id,
                        "policy",
                        {
                            "why": f"the modification changed the risk {old.risk.value} -> "
                            f"{verdict.risk.value} / rule {old.rule} -> {verdict.rule}; "
                            "earlier approvals are void",
                            "approvals": verdict.approvals,
                            "roles": verdict.roles,
                            "distinct_roles": verdict.distinct_roles,
                        },
                        verdict.policy_version,
                    )
                )
                return Change(record=again, events=events)
            change = self._add_approval(modified, reviewer, reason)
            change.events[:0] = events
            return change

        return self._result(request_id, fn)

    # -- checks before a form opens ------------------------------------------------------------

    def check(self, request_id: str, reviewer: Reviewer, attempt: str) -> RequestRecord:
        """May ``reviewer`` try ``attempt`` (approve, reject or modify) on the request now?

        For adapters that open a form (Reject reason, Modify params) before the decision: the
        same rules the decision will apply, refusals audited and raised, nothing else written.
        """

        def fn(current: RequestRecord | None) -> Change:
            record = self._require_open(current, request_id, reviewer, attempt)
            if isinstance(record, Change):
                return record
            if attempt == "reject":
                refusal = self._reject_refusal(record, reviewer)
            else:
                votes: list[Vote] | None = [] if attempt == "modify" else None
                refusal = self._check_vote(record, reviewer, attempt, votes=votes)
            return refusal or Change()

        change = self.store.update(request_id, fn)
        mark_seen(self.store, request_id)  # a reviewer has the request in front of them
        return change.record or self.store.get(request_id)

    def _reject_refusal(self, record: RequestRecord, reviewer: Reviewer) -> Change | None:
        """Anyone who could approve may reject, and so may the requester."""
        requester = record.request.requested_by
        if requester is not None and _same(requester, reviewer.user_id):
            return None
        if self.authority.can_decide(record.verdict, reviewer.user_id, requester):
            return None
        roles = ", ".join(record.verdict.roles + record.verdict.distinct_roles) or "a reviewer role"
        return self._refuse(
            record,
            reviewer,
            "reject",
            f"{reviewer.display_name or reviewer.user_id} may not decide this request "
            f"(it needs one of: {roles})",
        )

    # -- cancel --------------------------------------------------------------------------------

    def cancel(
        self, request_id: str, actor: str, reason: str = "", *, channel: str = "agent"
    ) -> Result:
        """The agent withdraws its request (it re-planned, or its user gave up); or an operator
        does (``channel="operator"``)."""
        reason = _bounded_reason(reason)
        who = Reviewer(user_id=actor, channel=channel)

        def fn(current: RequestRecord | None) -> Change:
            record = self._require_open(current, request_id, who, "cancel")
            if isinstance(record, Change):
                return record
            stamped = who.model_copy(update={"at": self.store.clock()})
            return self._terminal(record, Outcome.CANCELLED, [stamped], reason, actor=stamped)

        return self._result(request_id, fn)

    def cancel_by_agent(self, request_id: str, agent_id: str | None, reason: str = "") -> Result:
        """An agent's cancel from the stream: honoured only from the agent that submitted it.

        The agent ids are compared with :func:`hitl.identity.canonical_id`; a request submitted
        without an ``agent_id`` can only be cancelled by a cancel without one. Another agent's
        cancel is refused (:class:`NotAuthorized`, audited) and the request stays pending.
        (:meth:`cancel` is the operator's path: the CLI and the API, with an explicit actor.)
        """
        reason = _bounded_reason(reason)
        who = Reviewer(user_id=(agent_id or "agent")[:128], channel="agent")

        def fn(current: RequestRecord | None) -> Change:
            record = self._require_open(current, request_id, who, "cancel")
            if isinstance(record, Change):
                return record
            owner = record.request.agent_id
            if not _same_agent(owner, agent_id):
                by = f"agent {owner!r}" if owner else "no agent id"
                return self._refuse(
                    record,
                    who,
                    "cancel",
                    f"agent {agent_id or '(none)'!r} does not own request {record.id} (it was "
                    f"submitted with {by}); only the submitting agent may cancel it",
                )
            stamped = who.model_copy(update={"at": self.store.clock()})
            return self._terminal(record, Outcome.CANCELLED, [stamped], reason, actor=stamped)

        return self._result(request_id, fn)

    # -- operator override ---------------------------------------------------------------------

    def override(
        self, request_id: str, operator: Reviewer, outcome: Outcome, reason: str
    ) -> Result:
        """An operator decides now, regardless of roles and quorum: the operators' break-glass.

        Explicit and loud: the decision names the operator (channel ``operator``), and an
        ``operator_override`` audit entry with ``alert: true`` records who, why and which votes
        were pending. It never changes a request that is already terminal (an overdue one is
        expired first, then refused as late, as for everyone).
        """
        reason = _bounded_reason(reason)
        if not reason.strip():
            raise InvalidRequest(
                "an override needs a reason: it is reviewed by compliance", [("reason", "required")]
            )
        if outcome not in (Outcome.APPROVED, Outcome.REJECTED):
            raise InvalidRequest(
                f"an override approves or rejects, not {outcome.value}", [("outcome", "invalid")]
            )
        who = operator.model_copy(update={"channel": "operator", "role": "operator"})

        def fn(current: RequestRecord | None) -> Change:
            record = self._require_open(current, request_id, who, "override")
            if isinstance(record, Change):
                return record
            stamped = who.model_copy(update={"at": self.store.clock()})
            loud = AuditEvent(
                "operator_override",
                record.id,
                who.user_id,
                {
                    "alert": True,
                    "outcome": outcome.value,
                    "reason": reason,
                    "votes": [v.reviewer.user_id for v in record.votes],
                    "needed": record.verdict.approvals,
                    "roles": record.verdict.roles,
                },
                record.verdict.policy_version,
            )
            return self._terminal(
                record,
                outcome,
                [stamped],
                f"OPERATOR OVERRIDE: {reason}",
                actor=stamped,
                events=[loud],
            )

        return self._result(request_id, fn)

    # -- shared steps --------------------------------------------------------------------------

    def _result(self, request_id: str, fn: Any) -> Result:
        change = self.store.update(request_id, fn)
        assert change.record is not None
        record = change.record
        if change.decision is not None:
            message = describe_decision(change.decision)
        else:
            approvals = len(record.approvals)
            names = ", ".join(v.reviewer.display_name or v.reviewer.user_id for v in record.votes)
            message = f"{approvals} of {record.verdict.approvals} approvals" + (
                f" ({names})" if names else ""
            )
        return Result(record, change.decision, message)

    def _require_open(
        self, record: RequestRecord | None, request_id: str, who: Reviewer, attempt: str
    ) -> RequestRecord | Change:
        if record is None:
            event = AuditEvent(
                "refused",
                None,
                who.user_id,
                {"attempt": attempt, "request": request_id, "reason": "no such request"},
            )
            return Change(
                events=[event],
                error=NotFound(f"no request {request_id!r} (check the id with `hitl pending`)"),
            )
        if record.state is State.PENDING:
            expired = self._expire_if_overdue(record, who, attempt)
            if expired is not None:
                return expired
        if record.state is not State.PENDING:
            decision = record.decision
            said = describe_decision(decision) if decision else record.state.value
            return self._refuse(
                record,
                who,
                attempt,
                f"already {said}",
                error=AlreadyDecided(f"request {record.id} is already {said}", decision),
                late=True,
            )
        return record

    def _expire_if_overdue(
        self, record: RequestRecord, who: Reviewer, attempt: str
    ) -> Change | None:
        """Past the chain's end with no worker to notice: expire now, then refuse as late.

        Deny-by-default must not depend on the scheduler being up: an answer that arrives after
        the deadline is late whether or not the expiry job has run yet.
        """
        now = self.store.clock()
        step = overdue_timeout(record, now)
        if step is None:
            return None
        change = time_out(self.store, record, step, now)
        assert change.decision is not None and change.record is not None
        said = describe_decision(change.decision)
        late = self._refuse(
            change.record,
            who,
            attempt,
            f"already {said}",
            error=AlreadyDecided(f"request {record.id} is already {said}", change.decision),
            late=True,
        )
        change.events.extend(late.events)
        change.error = late.error
        return change

    def _check_vote(
        self,
        record: RequestRecord,
        reviewer: Reviewer,
        attempt: str,
        votes: list[Vote] | None = None,
    ) -> Change | None:
        check = self.authority.check_vote(
            record.verdict,
            record.votes if votes is None else votes,
            reviewer.user_id,
            record.request.requested_by,
        )
        if check.ok:
            return None
        return self._refuse(record, reviewer, attempt, check.reason)

    def _refuse(
        self,
        record: RequestRecord,
        who: Reviewer,
        attempt: str,
        reason: str,
        *,
        error: Exception | None = None,
        late: bool = False,
    ) -> Change:
        details: dict[str, Any] = {"attempt": attempt, "reason": reason, "channel": who.channel}
        if late:
            details["late"] = True
        event = AuditEvent(
            "refused", record.id, who.user_id, details, record.verdict.policy_version
        )
        err = error if error is not None else NotAuthorized(reason)
        assert isinstance(err, AlreadyDecided | NotAuthorized | NotFound)
        return Change(events=[event], error=err, record=None)

    def _add_approval(self, record: RequestRecord, reviewer: Reviewer, reason: str) -> Change:
        check = self.authority.check_vote(
            record.verdict, record.votes, reviewer.user_id, record.request.requested_by
        )
        stamped = reviewer.model_copy(update={"at": self.store.clock(), "role": check.role})
        votes = [*record.votes, Vote(reviewer=stamped, approve=True, reason=reason)]
        updated = record.model_copy(update={"votes": votes})
        vote_event = AuditEvent(
            "vote",
            record.id,
            reviewer.user_id,
            {
                "approve": True,
                "role": check.role,
                "reason": reason,
                "channel": reviewer.channel,
                "count": len(updated.approvals),
                "needed": record.verdict.approvals,
            },
            record.verdict.policy_version,
        )
        if not self.authority.quorum_met(record.verdict, votes):
            return Change(record=updated, events=[vote_event])
        approvers = [v.reviewer for v in votes if v.approve]
        # The deciding vote is recorded on the ``approved`` entry itself: one entry, not two.
        vote = {k: v for k, v in vote_event.details.items() if k != "reason"}
        return self._terminal(
            updated, Outcome.APPROVED, approvers, reason, actor=stamped, extra={"vote": vote}
        )

    def _terminal(
        self,
        record: RequestRecord,
        outcome: Outcome,
        reviewers: list[Reviewer],
        reason: str,
        *,
        actor: Reviewer,
        events: list[AuditEvent] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Change:
        decision = self.store.make_decision(record, outcome, reviewers=reviewers, reason=reason)
        final = record.model_copy(update={"state": outcome.state, "decision": decision})
        details: dict[str, Any] = {
            "reason": reason,
            "params": decision.params,
            "modified": decision.modified,
            "reviewers": [r.user_id for r in reviewers],
            "channel": actor.channel,
        }
        if decision.modified:
            details["original_params"] = decision.original_params
        details.update(extra or {})
        event = AuditEvent(
            outcome.value, record.id, actor.user_id, details, record.verdict.policy_version
        )
        return Change(record=final, events=[*(events or []), event], decision=decision)


def validate_params(record: RequestRecord, params: dict[str, Any]) -> dict[str, Any]:
    """The params under review updated with ``params``, checked against ``param_schema``."""
    if not isinstance(params, dict):
        raise InvalidRequest("params must be an object", [("params", "not an object")])
    schema = record.request.param_schema
    declared = set(((schema or {}).get("properties") or {}).keys())
    problems: list[tuple[str, str]] = []
    for key, value in params.items():
        problem = _param_problem(key, value, record.params, declared, schema is not None)
        if problem:
            problems.append((key, problem))
    if problems:
        text = "; ".join(f"{k}: {m}" for k, m in problems)
        raise InvalidRequest(f"cannot modify: {text}", problems)
    merged = {**record.params, **params}
    try:  # the same JSON limits as a submitted request (depth, finite numbers, 2**53)
        check_json_value(merged, "params", MAX_DEPTH - 1)
    except ValueError as exc:
        raise InvalidRequest(f"cannot modify: {exc}", [("params", str(exc))]) from None
    size = len(canonical_json(merged).encode())
    if size > MAX_PARAMS_BYTES:
        raise InvalidRequest(
            f"modified params are {size} bytes; the limit is {MAX_PARAMS_BYTES}",
            [("params", "too large")],
        )
    schema = record.request.param_schema
    if schema is not None:
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(merged))
        if errors:
            pairs = [
                (".".join(str(p) for p in e.absolute_path) or "params", e.message) for e in errors
            ]
            text = "; ".join(f"{f}: {m}" for f, m in pairs[:5])
            raise InvalidRequest(f"modified params do not match the schema: {text}", pairs)
    return merged


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null" if value is None else type(value).__name__


def _param_problem(
    key: str, value: Any, current: dict[str, Any], declared: set[str], has_schema: bool
) -> str:
    """Why a reviewer's new value for ``key`` is refused ('' if it is fine).

    A modification may change values, not the shape of the call: a name the agent did not send
    (and the schema does not declare) is a typo that would otherwise approve the original value,
    and a value of another type would make the policy's conditions fail (and the risk with them).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if key not in current and key not in declared:
        known = ", ".join(sorted(current)) or "none"
        return f"the request has no parameter {key!r} (its parameters: {known})"
    if key in current and not has_schema:
        want, got = _kind(current[key]), _kind(value)
        if want != got and current[key] is not None:
            return f"must stay a {want} (got {got} {value!r})"
    return ""


def _bounded_reason(reason: str) -> str:
    if len(reason) > MAX_REASON:
        raise InvalidRequest(
            f"the reason is {len(reason)} characters; keep it under {MAX_REASON}",
            [("reason", "too long")],
        )
    return reason


def _same_agent(owner: str | None, agent_id: str | None) -> bool:
    if not owner or not agent_id:
        return not owner and not agent_id
    return canonical_id(owner) == canonical_id(agent_id)


def _same(a: str, b: str) -> bool:
    return canonical_id(a) == canonical_id(b)
