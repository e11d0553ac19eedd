"""Reading policy files (the only I/O in :mod:`hitl.policies`) and reloading them safely.

::

    policy = load_policy()                       # the shipped default.yaml
    policy = load_policy("ops.yaml", env="staging")
    holder = PolicyHolder("ops.yaml")            # for the long-running service
    holder.reload_if_changed()                   # None, or (ok, message); keeps the last good one

The version is ``sha256:`` and the first 16 hex digits of the hash of the normalized config
(the validated model as canonical JSON: comments, key order and spacing do not change it),
followed by ``+<version>`` when the file declares one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from pathlib import Path

from hitl.errors import ConfigError
from hitl.policies._compile import compile_config, validate_model
from hitl.policies._config import PolicyConfig
from hitl.policies._policy import Policy
from hitl.policies._source import parse_yaml
from hitl.policies._testcases import PolicyTestCase, parse_tests

__all__ = [
    "DEFAULT_PATH",
    "PolicyHolder",
    "default_policy",
    "load_policy",
    "parse_policy",
    "policy_version",
    "test_file_for",
]

DEFAULT_PATH = Path(__file__).with_name("default.yaml")
DEFAULT_SOURCE = "<default>"


def policy_version(config: PolicyConfig) -> str:
    """``sha256:<16 hex>[+declared]`` for a validated config."""
    normalized = json.dumps(
        config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    digest = hashlib.sha256(normalized.encode()).hexdigest()[:16]
    return f"sha256:{digest}" + (f"+{config.version}" if config.version else "")


def parse_policy(
    text: str,
    *,
    source: str = "<string>",
    env: str | None = None,
    tests: list[PolicyTestCase] | None = None,
    name: str | None = None,
) -> Policy:
    """Build a policy from YAML text (pure). ``source`` names the file in error messages."""
    doc = parse_yaml(text, source)
    config = validate_model(PolicyConfig, doc, "policy")
    compiled = compile_config(config, doc)
    return Policy(
        compiled,
        version=policy_version(config),
        source=name or source,
        env=env,
        tests=tests or [],
    )


def test_file_for(path: str | os.PathLike[str]) -> Path | None:
    """``policy.yaml`` -> ``policy_test.yaml`` (or ``.yml``) when it exists."""
    p = Path(path)
    for suffix in (p.suffix or ".yaml", ".yaml", ".yml"):
        candidate = p.with_name(f"{p.stem}_test{suffix}")
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such policy file; check the path (--policy / HITL_POLICY)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the policy file: {exc}") from None


def load_policy(
    path: str | os.PathLike[str] | None = None,
    *,
    env: str | None = None,
    with_tests: bool = True,
) -> Policy:
    """Load, validate and compile a policy file (None: the shipped default).

    Raises :class:`hitl.errors.ConfigError` whose message has one ``file:line: field: problem``
    line per problem. The test cases next to the file (``<name>_test.yaml``) are loaded too
    unless ``with_tests`` is false.
    """
    file = DEFAULT_PATH if path is None else Path(path)
    shown = str(file)
    tests: list[PolicyTestCase] = []
    if with_tests and (test_path := test_file_for(file)) is not None:
        tests = parse_tests(_read(test_path), str(test_path))
    return parse_policy(
        _read(file),
        source=shown,
        env=env,
        tests=tests,
        name=DEFAULT_SOURCE if path is None else shown,
    )


@functools.cache
def _default() -> Policy:
    return load_policy(None)


def default_policy() -> Policy:
    """The shipped ``default.yaml`` (loaded once)."""
    return _default()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class PolicyHolder:
    """The current policy of a long-running service; a bad reload keeps the last good policy.

    ::

        holder = PolicyHolder(settings.policy_path, env=settings.environment)
        signal.signal(signal.SIGHUP, lambda *_: audit(*holder.reload()))
        verdict = holder.current.evaluate(request)

    The first load raises ConfigError (a service must not start without a policy); later
    reloads never raise: they answer ``(ok, message)`` for the audit log.
    """

    def __init__(self, path: str | os.PathLike[str] | None, env: str | None = None) -> None:
        self._path = None if path is None else Path(path)
        self._env = env
        self._lock = threading.Lock()
        self._file = DEFAULT_PATH if self._path is None else self._path
        self._stamp = _stamp(self._file)
        self._current = load_policy(self._path, env=env, with_tests=False)
        self.last_error: str | None = None

    @property
    def current(self) -> Policy:
        """The policy in force (swapped atomically by a successful reload)."""
        return self._current

    @property
    def path(self) -> Path:
        return self._file

    def reload(self) -> tuple[bool, str]:
        """Load the file again. ``(True, message)`` when it loaded (changed or not); ``(False,
        error)`` when it did not, in which case the last good policy stays in force."""
        with self._lock:
            self._stamp = _stamp(self._file)
            old = self._current
            try:
                new = load_policy(self._path, env=self._env, with_tests=False)
            except ConfigError as exc:
                self.last_error = str(exc)
                return False, (
                    f"policy reload failed; still using {old.version} from {old.source}:\n{exc}"
                )
            self.last_error = None
            self._current = new
            if new.version == old.version:
                return True, f"policy unchanged: {new.version} ({new.source})"
            return True, f"policy reloaded: {old.version} -> {new.version} ({new.source})"

    def reload_if_changed(self) -> tuple[bool, str] | None:
        """Reload when the file's modification time or size changed; None when it did not."""
        if _stamp(self._file) == self._stamp:
            return None
        return self.reload()
