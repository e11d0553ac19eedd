"""Settings, read from the environment (``HITL_*``) or given in code.

::

    settings = Settings.from_env()                 # HITL_REDIS_URL unset -> embedded server
    settings = Settings(redis_url="redis://localhost:6379/0", secret=b"...")

``HITL_SECRET`` signs decisions and MACs the audit chain (through derived sub-keys). When it is
not set, a random secret is created once in the data directory (``secret.key``, mode 0600) so
that a demo needs no set-up; production deployments set it (or ``HITL_SECRET_FILE``) explicitly
and give agents the same value so ``Client.verify`` can check signatures.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from hitl.errors import ConfigError
from hitl.signing import derive_key

__all__ = ["Settings", "default_data_dir"]


def default_data_dir() -> Path:
    """``$HITL_DATA_DIR``, else ``$XDG_DATA_HOME/hitl``, else ``~/.local/share/hitl``."""
    if env := os.environ.get("HITL_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hitl"


class Settings(BaseModel):
    """Everything a hitl process needs to know. Immutable once built."""

    model_config = ConfigDict(frozen=True)

    redis_url: str | None = None
    """None means: start (or reuse) the embedded server in ``data_dir``."""
    prefix: str = "hitl:"
    secret: bytes = b""
    data_dir: Path = Field(default_factory=default_data_dir)
    policy_path: str | None = None
    environment: str | None = None
    decision_ttl_s: int = 7 * 24 * 3600
    """How long ``hitl:decision:<id>`` waits for its agent."""
    consumer_group: str = "hitl-intake"
    dead_maxlen: int = Field(default=10_000, ge=1)
    """``hitl:dead`` is trimmed (approximately) to this many entries (``$HITL_DEAD_MAXLEN``)."""
    user: str | None = None
    """The reviewer the CLI acts as when ``--as`` is not given (``$HITL_USER``)."""

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "redis_url": env.get("HITL_REDIS_URL") or None,
            "prefix": env.get("HITL_PREFIX", "hitl:"),
            "data_dir": default_data_dir(),
            "policy_path": env.get("HITL_POLICY") or None,
            "environment": env.get("HITL_ENV") or None,
            "user": env.get("HITL_USER") or None,
        }
        if ttl := env.get("HITL_DECISION_TTL"):
            try:
                values["decision_ttl_s"] = int(ttl)
            except ValueError:
                raise ConfigError(f"HITL_DECISION_TTL must be whole seconds, got {ttl!r}") from None
        if dead := env.get("HITL_DEAD_MAXLEN"):
            try:
                values["dead_maxlen"] = int(dead)
            except ValueError:
                raise ConfigError(
                    f"HITL_DEAD_MAXLEN must be a whole number, got {dead!r}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "secret" not in values:
            values["secret"] = _secret_from_env(Path(str(values["data_dir"])))
        return cls.model_validate(values)

    @property
    def decision_key(self) -> bytes:
        return derive_key(self.require_secret(), "decision")

    @property
    def audit_key(self) -> bytes:
        return derive_key(self.require_secret(), "audit")

    def require_secret(self) -> bytes:
        if not self.secret:
            raise ConfigError("no secret configured: set HITL_SECRET (or HITL_SECRET_FILE)")
        return self.secret


def _secret_from_env(data_dir: Path) -> bytes:
    env = os.environ
    if value := env.get("HITL_SECRET"):
        return value.encode()
    if path := env.get("HITL_SECRET_FILE"):
        try:
            return Path(path).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"HITL_SECRET_FILE {path}: {exc.strerror}") from None
    return _local_secret(data_dir)


def _local_secret(data_dir: Path) -> bytes:
    """A per-installation secret for the embedded default, created once with mode 0600."""
    path = data_dir / "secret.key"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its secret
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(value)
    return value
