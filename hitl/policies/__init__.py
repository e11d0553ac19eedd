"""The policy engine: policy config in, a verdict out. Pure (no I/O) except for file loading.

A policy is a YAML file (the shipped :data:`DEFAULT_PATH` unless ``--policy FILE`` or
``HITL_POLICY`` names another) validated by pydantic and compiled once: CEL conditions,
the reviewer directory, on-call rotations, escalation chains. Evaluating a request is then cheap
and deterministic::

    from hitl.policies import load_policy
    policy = load_policy()                                   # the shipped default
    verdict = policy.evaluate(request, now=datetime.now(UTC))
    verdict.kind        # auto_approve | auto_reject | review
    verdict.rule        # which rule decided, verdict.reason says why in words
    policy.check_vote(verdict, record.votes, reviewer_id, request.requested_by)

How a request is decided is documented in :mod:`hitl.policies._policy` and at the top of
``default.yaml``. Bad policy files raise :class:`hitl.errors.ConfigError` with one
``file:line: field: problem`` line per problem.
"""

from __future__ import annotations

from hitl.policies._config import GovernanceConfig, PolicyConfig, PolicyKind, parse_duration
from hitl.policies._directory import DirectoryEntry
from hitl.policies._loading import (
    DEFAULT_PATH,
    PolicyHolder,
    default_policy,
    load_policy,
    parse_policy,
    policy_version,
    test_file_for,
)
from hitl.policies._policy import Policy, describe_destination, format_duration
from hitl.policies._testcases import CaseResult, Expectation, PolicyTestCase, parse_tests, run_tests
from hitl.policies._votes import VoteCheck

__all__ = [
    "DEFAULT_PATH",
    "CaseResult",
    "DirectoryEntry",
    "Expectation",
    "GovernanceConfig",
    "Policy",
    "PolicyConfig",
    "PolicyHolder",
    "PolicyKind",
    "PolicyTestCase",
    "VoteCheck",
    "default_policy",
    "describe_destination",
    "format_duration",
    "load_policy",
    "parse_duration",
    "parse_policy",
    "parse_tests",
    "policy_version",
    "run_tests",
    "test_file_for",
]
