"""Settings, read from the environment (``HITL_*``) or given in code.

::

    settings = Settings.from_env()                 # HITL_REDIS_URL unset -> embedded server
    settings = Settings(redis_url="redis://localhost:6379/0", keyring=KeyRing.generate())

Keys: decisions and audit checkpoints are signed with Ed25519. ``hitl serve`` and ``hitl worker``
need the private keyring (``HITL_SIGNING_KEY_FILE``, made by ``hitl keys generate FILE``); agents
need only the public keys (``HITL_PUBLIC_KEY`` = ``kid:base64,...`` or ``HITL_PUBLIC_KEY_FILE``),
which verify but cannot sign. With the embedded default (no ``HITL_REDIS_URL``) a keyring is
created once in the data directory (``signing-keys.json``, mode 0600) beside its public half
(``public-keys.json``), so a demo needs no set-up. Nothing is ever signed with an improvised key:
a service with a Redis URL and no keyring refuses to start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from hitl.errors import ConfigError
from hitl.keys import KeyRing, PublicKeys

if TYPE_CHECKING:
    from hitl.queue.audit import AnchorSink

__all__ = ["Settings", "default_data_dir"]

KEYRING_NAME = "signing-keys.json"
PUBLIC_NAME = "public-keys.json"


def default_data_dir() -> Path:
    """``$HITL_DATA_DIR``, else ``$XDG_DATA_HOME/hitl``, else ``~/.local/share/hitl``."""
    if env := os.environ.get("HITL_DATA_DIR"):
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "hitl"


class Settings(BaseModel):
    """Everything a hitl process needs to know. Immutable once built."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    redis_url: str | None = None
    """None means: start (or reuse) the embedded server in ``data_dir``."""
    prefix: str = "hitl:"
    data_dir: Path = Field(default_factory=default_data_dir)
    policy_path: str | None = None
    environment: str | None = None
    decision_ttl_s: int = 7 * 24 * 3600
    """How long ``hitl:decision:<id>`` waits for its agent."""
    retention_s: int = Field(default=7 * 24 * 3600, ge=0)
    """How long a decided record stays in Redis (``$HITL_RETENTION_S``; 0: forever)."""
    consumer_group: str = "hitl-intake"
    dead_maxlen: int = Field(default=10_000, ge=1)
    """``hitl:dead`` is trimmed (approximately) to this many entries (``$HITL_DEAD_MAXLEN``)."""
    user: str | None = None
    """The reviewer the CLI acts as when ``--as`` is not given (``$HITL_USER``)."""
    keyring: KeyRing | None = None
    """The private signing keys, given in code (tests, embedding); else loaded from a file."""
    signing_key_file: Path | None = None
    """``$HITL_SIGNING_KEY_FILE``: the keyring of the service, the worker and operators."""
    public_keys: PublicKeys | None = None
    """Keys that verify decisions, given in code; else ``$HITL_PUBLIC_KEY(_FILE)``."""
    public_key_file: Path | None = None
    audit_anchor: str | None = None
    """``$HITL_AUDIT_ANCHOR``: where signed audit checkpoints go (a path or ``s3://bucket/key``);
    default ``audit-anchors.jsonl`` in the data dir."""
    checkpoint_interval_s: float = 10.0
    """``$HITL_CHECKPOINT_S``: seconds between checkpoints made by ``hitl serve``."""
    claim_idle_ms: int = Field(default=30_000, ge=100)
    """``$HITL_CLAIM_IDLE_MS``: how long a request read by an intake that died stays unacknowledged
    before another intake (or the restarted one) takes it over."""

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
            "signing_key_file": env.get("HITL_SIGNING_KEY_FILE") or None,
            "public_key_file": env.get("HITL_PUBLIC_KEY_FILE") or None,
            "audit_anchor": env.get("HITL_AUDIT_ANCHOR") or None,
        }
        if every := env.get("HITL_CHECKPOINT_S"):
            try:
                values["checkpoint_interval_s"] = float(every)
            except ValueError:
                raise ConfigError(f"HITL_CHECKPOINT_S must be seconds, got {every!r}") from None
        if idle := env.get("HITL_CLAIM_IDLE_MS"):
            try:
                values["claim_idle_ms"] = int(idle)
            except ValueError:
                raise ConfigError(
                    f"HITL_CLAIM_IDLE_MS must be whole milliseconds, got {idle!r}"
                ) from None
        if text := env.get("HITL_PUBLIC_KEY"):
            values["public_keys"] = PublicKeys.parse(text)
        if ttl := env.get("HITL_DECISION_TTL"):
            try:
                values["decision_ttl_s"] = int(ttl)
            except ValueError:
                raise ConfigError(f"HITL_DECISION_TTL must be whole seconds, got {ttl!r}") from None
        if kept := env.get("HITL_RETENTION_S"):
            try:
                values["retention_s"] = int(kept)
            except ValueError:
                raise ConfigError(f"HITL_RETENTION_S must be whole seconds, got {kept!r}") from None
        if dead := env.get("HITL_DEAD_MAXLEN"):
            try:
                values["dead_maxlen"] = int(dead)
            except ValueError:
                raise ConfigError(
                    f"HITL_DEAD_MAXLEN must be a whole number, got {dead!r}"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def anchor(self) -> AnchorSink:
        """The audit anchor: ``HITL_AUDIT_ANCHOR``, else a file in the data dir named after the
        Redis it anchors (``audit-anchors.jsonl`` for the embedded server,
        ``audit-anchors-<host>-<port>-<db>.jsonl`` otherwise), so that two deployments used from
        one machine never mix their checkpoints."""
        from hitl.queue.audit import open_anchor

        if self.audit_anchor:
            return open_anchor(self.audit_anchor)
        return open_anchor(str(self.data_dir / f"audit-anchors{_deployment_slug(self)}.jsonl"))

    # -- keys ----------------------------------------------------------------------------------

    @property
    def keyring_path(self) -> Path | None:
        """Where the keyring is read from: the configured file, else the embedded default's."""
        if self.signing_key_file is not None:
            return self.signing_key_file
        local = self.data_dir / KEYRING_NAME
        if self.redis_url is None or local.exists():
            return local
        return None

    def signing_keys(self) -> KeyRing:
        """The keyring that signs decisions and checkpoints, or a :class:`ConfigError`.

        With the embedded default and no file yet, one is created (mode 0600) in the data dir.
        """
        if self.keyring is not None:
            return self.keyring
        path = self.keyring_path
        if path is None:
            hint = (
                " (HITL_SECRET is no longer used: decisions are signed with Ed25519)"
                if os.environ.get("HITL_SECRET")
                else ""
            )
            raise ConfigError(
                "no signing key: hitl serve and hitl worker need HITL_SIGNING_KEY_FILE "
                "(create one with `hitl keys generate FILE`; give agents only "
                f"`hitl keys public FILE`){hint}"
            )
        if self.signing_key_file is None and not path.exists():
            return _create_local_keyring(path)
        return _cached_keyring(path)

    def verify_keys(self) -> PublicKeys:
        """The public keys that decisions and checkpoints must verify against.

        ``HITL_PUBLIC_KEY`` / ``HITL_PUBLIC_KEY_FILE`` when set (an agent's configuration); else
        the public half of the keyring this process holds; else the embedded default's
        ``public-keys.json``.
        """
        found = PublicKeys()
        if self.public_keys is not None:
            found = found.merged(self.public_keys)
        if self.public_key_file is not None:
            found = found.merged(PublicKeys.load(self.public_key_file))
        if found:
            return found
        if self.keyring is not None:
            return self.keyring.public()
        if self.signing_key_file is not None:
            return _cached_keyring(self.signing_key_file).public()
        local = self.data_dir / PUBLIC_NAME
        if local.exists():
            return PublicKeys.load(local)
        if self.redis_url is None:  # the embedded default: its keyring is created on first use
            return self.signing_keys().public()
        raise ConfigError(
            "no public key to verify decisions with: set HITL_PUBLIC_KEY (kid:base64, from "
            "`hitl keys public FILE`) or HITL_PUBLIC_KEY_FILE"
        )


def _deployment_slug(settings: Settings) -> str:
    if settings.redis_url is None:
        return ""
    from urllib.parse import urlparse

    url = urlparse(settings.redis_url)
    where = url.hostname or url.path or "redis"
    try:
        port = str(url.port or "")
    except ValueError:  # several hosts: redis+sentinel://h1:p1,h2:p2/service
        port = ""
    parts = [where, port, url.path.strip("/") if url.hostname else ""]
    slug = "-".join(p for p in parts if p)
    return "-" + "".join(c if c.isalnum() or c in "._-" else "_" for c in slug)[:80]


_KEYRINGS: dict[tuple[str, float], KeyRing] = {}


def _cached_keyring(path: Path) -> KeyRing:
    """Read once per file version (``hitl keys rotate`` changes the mtime)."""
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise ConfigError(f"signing key file {path}: {exc.strerror or exc}") from None
    key = (str(path), mtime)
    ring = _KEYRINGS.get(key)
    if ring is None:
        ring = _KEYRINGS[key] = KeyRing.load(path)
    return ring


def _create_local_keyring(path: Path) -> KeyRing:
    """The embedded default's keyring, made once; a racing process's file wins."""
    ring = KeyRing.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    ring.save(tmp, overwrite=True)
    try:
        os.link(tmp, path)  # fails if another process created it first
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    ring = _cached_keyring(path)
    public = path.with_name(PUBLIC_NAME)
    import json

    public.write_text(json.dumps(ring.public().to_json(), indent=2) + "\n", encoding="utf-8")
    return ring
