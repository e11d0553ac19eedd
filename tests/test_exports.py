"""The public names: ``hitl.__all__`` is pinned so that removing a name is a deliberate change."""

from __future__ import annotations

import importlib

import pytest

import hitl
import hitl.errors as errors

PUBLIC = [
    "AlreadyDecided",
    "ApprovalRejected",
    "ApprovalRequest",
    "ApprovalTimeout",
    "AsyncClient",
    "AuditError",
    "Client",
    "ConfigError",
    "Decision",
    "HitlError",
    "InvalidRequest",
    "NotAuthorized",
    "NotFound",
    "Outcome",
    "RefusedAttempt",
    "Risk",
    "SignatureError",
    "StaleApproval",
    "State",
    "StoreUnavailable",
    "__version__",
    "require_approval",
]


def test_all_is_pinned() -> None:
    """``hitl.__all__`` lists exactly the documented names."""
    assert sorted(PUBLIC) == sorted(hitl.__all__)
    assert len(set(hitl.__all__)) == len(hitl.__all__)


def test_every_public_name_exists() -> None:
    """Every name in ``__all__`` can be imported from ``hitl``."""
    missing = [name for name in hitl.__all__ if not hasattr(hitl, name)]
    assert [] == missing


def test_version_is_a_string() -> None:
    """``hitl.__version__`` is a version string."""
    assert isinstance(hitl.__version__, str)
    assert hitl.__version__.count(".") >= 1


def test_exception_tree() -> None:
    """Every hitl error derives from HitlError, as drawn in hitl.errors."""
    parents = {
        "ConfigError": "HitlError",
        "InvalidRequest": "HitlError",
        "NotFound": "HitlError",
        "RefusedAttempt": "HitlError",
        "AlreadyDecided": "RefusedAttempt",
        "NotAuthorized": "RefusedAttempt",
        "ApprovalRejected": "HitlError",
        "ApprovalTimeout": "HitlError",
        "SignatureError": "HitlError",
        "AgentHalted": "HitlError",
        "StaleApproval": "HitlError",
        "AuditError": "HitlError",
        "StoreUnavailable": "HitlError",
        "Unauthenticated": "HitlError",
    }
    assert sorted([*parents, "HitlError"]) == sorted(errors.__all__)
    assert parents == {name: getattr(errors, name).__bases__[0].__name__ for name in parents}


@pytest.mark.parametrize(
    "module",
    ["hitl.models", "hitl.errors", "hitl.signing", "hitl.queue", "hitl.handlers", "hitl.client"],
)
def test_submodule_all_names_exist(module: str) -> None:
    """Each public module's ``__all__`` names real attributes."""
    mod = importlib.import_module(module)
    assert [] == [name for name in mod.__all__ if not hasattr(mod, name)]


def test_top_level_names_are_the_real_objects() -> None:
    """``hitl.Client`` is ``hitl.client.Client`` (no copies or wrappers)."""
    import hitl.client
    import hitl.models

    assert (hitl.client.Client, hitl.client.AsyncClient, hitl.models.Decision) == (
        hitl.Client,
        hitl.AsyncClient,
        hitl.Decision,
    )
