"""What every framework test needs: an agent's environment (the ``reviewers`` fixture, who
decide through the API, is in tests/conftest.py)."""

from __future__ import annotations

import os
import sys
from typing import Any

import pytest

from tests.conftest import public_key_env
from tests.redis_server import RedisServer


@pytest.fixture
def agent_env(redis_server: RedisServer, tmp_path: Any) -> dict[str, str]:
    """The environment an agent process gets: Redis and the PUBLIC key, nothing that signs."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "HITL_REDIS_URL": redis_server.url,
        "HITL_PUBLIC_KEY": public_key_env(),
        "HITL_DATA_DIR": str(tmp_path / "agent-data"),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }


@pytest.fixture
def agent_vars(agent_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process is the agent: HITL_REDIS_URL and HITL_PUBLIC_KEY only."""
    monkeypatch.setenv("HITL_REDIS_URL", agent_env["HITL_REDIS_URL"])
    monkeypatch.setenv("HITL_PUBLIC_KEY", agent_env["HITL_PUBLIC_KEY"])
