"""Ed25519 keys: the service's signing keyring and the public keys agents verify with.

Only ``hitl serve`` and ``hitl worker`` (and an operator's break-glass tooling) hold a
:class:`KeyRing`: private keys with ids, one of them active. Agents hold :class:`PublicKeys`, which
can verify but never sign, so nothing an agent holds can approve anything::

    ring = KeyRing.generate()                       # `hitl keys generate keys.json`
    kid, sig = ring.sign(b"message")
    ring.public().verify(kid, b"message", sig)      # True
    ring = ring.rotated()                           # `hitl keys rotate keys.json`: new active key,
                                                    # the old one kept (verifiers still accept it)

Files (JSON, written with mode 0600 for private keys)::

    {"format": "hitl-keyring/1", "active": "k-1a2b3c4d",
     "keys": [{"kid": "k-1a2b3c4d", "private": "<base64 32 bytes>", "public": "<base64>",
               "created": "2026-12-02T16:00:00Z"}]}
    {"format": "hitl-public-keys/1", "keys": [{"kid": "k-1a2b3c4d", "public": "<base64>"}]}

``HITL_PUBLIC_KEY`` may also hold ``kid:base64`` pairs separated by commas.

The arithmetic is libsodium's (PyNaCl): Ed25519 is deterministic, so its signatures are byte for
byte those of any other implementation (the tests check them with ``cryptography``'s OpenSSL
one), and it verifies in about half the time OpenSSL takes - an agent pays one verification per
decision it waits for.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from hitl.errors import ConfigError

__all__ = ["KeyRing", "PublicKeys", "key_id"]

KEYRING_FORMAT = "hitl-keyring/1"
PUBLIC_FORMAT = "hitl-public-keys/1"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} is not base64") from None
    if len(raw) != 32:
        raise ConfigError(f"{what} is {len(raw)} bytes; an Ed25519 key is 32")
    return raw


def key_id(public: VerifyKey) -> str:
    """A short, stable id derived from the public key: ``k-`` and 12 hex digits."""
    return "k-" + hashlib.sha256(bytes(public)).hexdigest()[:12]


@dataclass(frozen=True)
class PublicKeys:
    """Keys that verify signatures (by key id). Holding them lets nobody sign anything."""

    keys: dict[str, VerifyKey] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.keys)

    @property
    def ids(self) -> list[str]:
        return sorted(self.keys)

    def verify(self, kid: str, data: bytes, signature: str) -> bool:
        """True when ``signature`` (base64) is ``kid``'s signature of ``data``."""
        key = self.keys.get(kid)
        if key is None:
            return False
        try:
            key.verify(data, base64.b64decode(signature, validate=True))
        except (BadSignatureError, binascii.Error, ValueError):
            return False
        return True

    def merged(self, other: PublicKeys) -> PublicKeys:
        return PublicKeys({**self.keys, **other.keys})

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PUBLIC_FORMAT,
            "keys": [{"kid": k, "public": _b64(bytes(v))} for k, v in sorted(self.keys.items())],
        }

    def to_env(self) -> str:
        """The ``HITL_PUBLIC_KEY`` value: ``kid:base64`` pairs separated by commas."""
        return ",".join(f"{k}:{_b64(bytes(v))}" for k, v in sorted(self.keys.items()))

    @classmethod
    def parse(cls, text: str, source: str = "HITL_PUBLIC_KEY") -> PublicKeys:
        """From a public-keys JSON document, or ``kid:base64[,kid:base64...]``."""
        text = text.strip()
        if text.startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{source}: not JSON: {exc}") from None
            return cls.from_json(data, source)
        keys: dict[str, VerifyKey] = {}
        for part in filter(None, (p.strip() for p in text.replace("\n", ",").split(","))):
            kid, sep, value = part.partition(":")
            if not sep:
                raise ConfigError(f"{source}: expected kid:base64, got {part[:40]!r}")
            key = VerifyKey(_unb64(value, f"{source} key {kid}"))
            keys[kid.strip()] = key
        if not keys:
            raise ConfigError(f"{source} holds no keys")
        return cls(keys)

    @classmethod
    def from_json(cls, data: Any, source: str) -> PublicKeys:
        entries = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{source}: expected {{'keys': [{{'kid', 'public'}}, ...]}}")
        keys: dict[str, VerifyKey] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not {"kid", "public"} <= entry.keys():
                raise ConfigError(f"{source}: every key needs 'kid' and 'public'")
            raw = _unb64(str(entry["public"]), f"{source} key {entry['kid']}")
            keys[str(entry["kid"])] = VerifyKey(raw)
        return cls(keys)

    @classmethod
    def load(cls, path: str | Path) -> PublicKeys:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"public key file {path}: {exc.strerror or exc}") from None
        return cls.parse(text, str(path))


@dataclass(frozen=True)
class KeyRing:
    """Private signing keys by id; ``active`` signs, the others still verify (rotation)."""

    active: str
    keys: dict[str, SigningKey]
    created: dict[str, str] = field(default_factory=dict)

    @classmethod
    def generate(cls) -> KeyRing:
        key = SigningKey.generate()
        kid = key_id(key.verify_key)
        return cls(kid, {kid: key}, {kid: _now()})

    def rotated(self) -> KeyRing:
        """A new active key; the previous ones stay so earlier signatures keep verifying."""
        key = SigningKey.generate()
        kid = key_id(key.verify_key)
        return KeyRing(kid, {**self.keys, kid: key}, {**self.created, kid: _now()})

    def retired(self, kid: str) -> KeyRing:
        """Without ``kid`` (never the active key)."""
        if kid == self.active:
            raise ConfigError(f"{kid} is the active key; rotate first")
        if kid not in self.keys:
            raise ConfigError(f"no key {kid} (keys: {', '.join(sorted(self.keys))})")
        rest = {k: v for k, v in self.keys.items() if k != kid}
        return KeyRing(self.active, rest, {k: v for k, v in self.created.items() if k != kid})

    def sign(self, data: bytes) -> tuple[str, str]:
        """``(key id, base64 signature)`` of ``data`` with the active key."""
        return self.active, _b64(self.keys[self.active].sign(data).signature)

    def public(self) -> PublicKeys:
        return PublicKeys({kid: key.verify_key for kid, key in self.keys.items()})

    # -- files ---------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": KEYRING_FORMAT,
            "active": self.active,
            "keys": [
                {
                    "kid": kid,
                    "private": _b64(bytes(key)),
                    "public": _b64(bytes(key.verify_key)),
                    "created": self.created.get(kid, ""),
                }
                for kid, key in sorted(self.keys.items())
            ],
        }

    @classmethod
    def from_json(cls, data: Any, source: str) -> KeyRing:
        if not isinstance(data, dict) or data.get("format") != KEYRING_FORMAT:
            raise ConfigError(
                f"{source} is not a hitl keyring (expected format {KEYRING_FORMAT!r}; "
                "create one with `hitl keys generate FILE`)"
            )
        keys: dict[str, SigningKey] = {}
        created: dict[str, str] = {}
        for entry in data.get("keys") or []:
            if not isinstance(entry, dict) or not {"kid", "private"} <= entry.keys():
                raise ConfigError(f"{source}: every key needs 'kid' and 'private'")
            kid = str(entry["kid"])
            raw = _unb64(str(entry["private"]), f"{source} key {kid}")
            keys[kid] = SigningKey(raw)
            created[kid] = str(entry.get("created", ""))
        active = str(data.get("active", ""))
        if active not in keys:
            raise ConfigError(f"{source}: the active key {active!r} is not in the file")
        return cls(active, keys, created)

    @classmethod
    def load(cls, path: str | Path) -> KeyRing:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"signing key file {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"signing key file {path}: not JSON: {exc}") from None
        return cls.from_json(data, str(path))

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write the keyring with mode 0600 (atomically: a temporary file, then rename)."""
        target = Path(path)
        if target.exists() and not overwrite:
            raise ConfigError(f"{target} exists; use `hitl keys rotate {target}` to add a key")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.to_json(), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, target)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
