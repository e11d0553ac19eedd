"""A rule whose condition cannot be evaluated keeps the risk it would raise (fails closed)."""

from __future__ import annotations

import pytest

from hitl.models import ApprovalRequest, Risk, VerdictKind
from hitl.policies import default_policy


@pytest.mark.parametrize("amount", ["lots", "150", [1], {"v": 1}, True])
def test_unreadable_refund_amount_still_needs_a_manager(amount: object) -> None:
    """refund-over-100 cannot compare a non-number: the request stays high risk, to a manager."""
    request = ApprovalRequest(action="refund", params={"order_id": "A-1", "amount": amount})
    verdict = default_policy().evaluate(request)
    assert (VerdictKind.REVIEW, Risk.HIGH) == (verdict.kind, verdict.risk)
    assert "manager" in verdict.roles
    assert "could not be evaluated" in verdict.reason
