"""Helpers for the policy tests: small policies from YAML text, requests, fixed times."""

from __future__ import annotations

import datetime
import textwrap
from typing import Any

from hitl.models import ApprovalRequest, Reviewer, Vote
from hitl.policies import Policy, parse_policy

UTC = datetime.UTC

TUESDAY_10 = datetime.datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
"""Business hours (2025-03-04 is a Tuesday); carol is primary on call, dave secondary."""
TUESDAY_22 = datetime.datetime(2025, 3, 4, 22, 0, tzinfo=UTC)
"""After hours, the same on-call week."""
SATURDAY_11 = datetime.datetime(2025, 3, 8, 11, 0, tzinfo=UTC)

DIRECTORY = """
reviewers:
  - {id: alice, display_name: Alice, slack_id: U0ALICE, email: alice@example.com,
     teams_id: aad-alice, roles: [standard]}
  - {id: bob, slack_id: U0BOB, email: bob@example.com, roles: [manager]}
  - {id: carol, slack_id: U0CAROL, roles: [security]}
  - {id: dave, slack_id: U0DAVE, roles: [lead_engineer]}
  - {id: erin, slack_id: U0ERIN, roles: [security, lead_engineer]}
  - {id: frank, slack_id: U0FRANK, roles: [compliance, manager]}
"""


def policy_from(text: str, *, directory: bool = True, env: str | None = None) -> Policy:
    """A policy from (dedented) YAML text, with the sample directory appended by default."""
    body = textwrap.dedent(text)
    if directory:
        body += textwrap.dedent(DIRECTORY)
    return parse_policy(body, source="test.yaml", env=env)


def req(action: str = "do_thing", **fields: Any) -> ApprovalRequest:
    return ApprovalRequest.model_validate({"action": action, **fields})


def vote(user_id: str, approve: bool = True) -> Vote:
    return Vote(reviewer=Reviewer(user_id=user_id), approve=approve)
