"""Shared fixtures: a real Redis per session (flushed per test), a Store, an intake, settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis

from hitl.config import Settings
from hitl.handlers import Decider, OpenAuthority
from hitl.keys import KeyRing
from hitl.queue.intake import IntakeConsumer
from hitl.queue.store import Store
from tests.redis_server import RedisServer

if TYPE_CHECKING:
    from hitl.service import Service

if TYPE_CHECKING:
    from tests.api_server import ApiServer
    from tests.reviewers import Reviewers

KEYRING = KeyRing.generate()
"""One signing keyring for the whole run (the service's; agents get ``KEYRING.public()``)."""


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server on a free port for the whole run."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A decoded client on an empty database."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    """Settings pointing at the test Redis, with the run's keyring and a private data dir."""
    return Settings(redis_url=redis_server.url, keyring=KEYRING, data_dir=tmp_path / "data")


@pytest.fixture
def store(r: redis.Redis, settings: Settings) -> Store:
    return Store(r, signer=settings.signing_keys())


@pytest.fixture
def decider(store: Store) -> Decider:
    return Decider(store, OpenAuthority())


@pytest.fixture
def intake(store: Store, decider: Decider) -> Iterator[IntakeConsumer]:
    """An intake consumer with the open policy (everything goes to one human)."""
    consumer = IntakeConsumer(
        store,
        OpenAuthority().evaluate,
        block_ms=0,
        on_cancel=decider.cancel_by_agent,
    )
    consumer.ensure_group()
    yield consumer
    consumer.close()


@pytest.fixture
def api(settings: Settings, store: Store) -> Iterator[ApiServer]:
    """``hitl serve``'s HTTP API (shipped policy, the run's keyring) on a free port."""
    from hitl.service import Service
    from tests.api_server import ApiServer

    service = Service(settings, store=store)
    with ApiServer(service) as server:
        yield server
    for consumer in service.consumers:
        consumer.close()


@pytest.fixture
def api_env(env: None, api: ApiServer, monkeypatch: pytest.MonkeyPatch) -> ApiServer:
    """The CLI's environment plus ``HITL_URL`` of the running API (tokens: set HITL_TOKEN)."""
    monkeypatch.setenv("HITL_URL", api.url)
    return api


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, tmp_path: Path) -> None:
    """The CLI's environment: HITL_REDIS_URL and HITL_SIGNING_KEY_FILE for the test Redis (an
    operator's); no HITL_POLICY."""
    monkeypatch.setenv("HITL_REDIS_URL", redis_server.url)
    monkeypatch.setenv("HITL_SIGNING_KEY_FILE", str(keyring_file(tmp_path)))


def keyring_file(where: Path) -> Path:
    """The run's keyring written to a file (mode 0600), as `hitl keys generate` would."""
    path = where / "signing-keys.json"
    if not path.exists():
        KEYRING.save(path)
    return path


def public_key_env() -> str:
    """The ``HITL_PUBLIC_KEY`` value an agent is given."""
    return KEYRING.public().to_env()


@pytest.fixture
def pintake(store: Store) -> Iterator[IntakeConsumer]:
    """An intake classifying with the shipped policy, as `hitl serve` (and the CLI) do."""
    from hitl.policies import default_policy

    consumer = IntakeConsumer(store, default_policy().evaluate, block_ms=0)
    consumer.ensure_group()
    yield consumer
    consumer.close()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's HITL_* environment or data directory."""
    for key in list(os.environ):
        if key.startswith(("HITL_", "SLACK_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HITL_DATA_DIR", str(tmp_path / "hitl-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # no saved `hitl login`


@pytest.fixture
def service(settings: Settings, store: Store) -> Iterator[Service]:
    """A `hitl serve` Service with the open policy, whose intake a test starts (no HTTP)."""
    from hitl.service import Service

    svc = Service(settings, store=store, authority=OpenAuthority())
    yield svc
    svc.stop_intake()
    for consumer in svc.consumers:
        consumer.close()


@pytest.fixture
def reviewers(api: ApiServer, store: Store, pintake: IntakeConsumer) -> Iterator[Reviewers]:
    """Bob deciding through the API (shipped policy), with the intake running in a thread."""
    from tests.reviewers import Reviewers
    from tests.scenarios.helpers import consuming

    with consuming(pintake):
        yield Reviewers(api, store)
