"""Least privilege in Redis: one ACL user per kind of process (``hitl acl``).

The agent is the party hitl does not trust (docs: "Trust model"), so an agent's Redis user can
add requests and read its decisions and nothing else: no forged decision, no edited record, no
touching the audit chain or the scheduler's jobs. The rules, per user:

- ``hitl-agent``: ``XADD`` to ``<prefix>requests`` (write-only: no ``XRANGE``/``XREAD`` of other
  agents' requests); ``BLPOP``/``LPOP`` on ``<prefix>decision:*`` (they remove what they return,
  so they need read and write on those keys); ``GET``/``EXISTS`` on ``<prefix>req:*``
  (read-only), ``LRANGE`` on ``<prefix>feedback:*`` and ``MGET`` on ``<prefix>control:*``
  (read-only: their feedback, and whether a person paused them), which is all
  :class:`hitl.Client` and :class:`hitl.AsyncClient` send.
- ``hitl-service`` (``hitl serve``) and ``hitl-worker`` (``hitl worker``): every key under the
  prefix and RQ's ``rq:*`` (the service arms the sweep and tick jobs, the worker runs them, and both
  write records, audit entries and decisions); data, stream, transaction and scripting commands
  (the store's WATCH/MULTI, the notification and digest-lock Lua scripts, RQ's own scripts); no
  ``@admin`` and no ``@dangerous`` command (no ``KEYS``, ``FLUSHALL``, ``CONFIG``, ``CLIENT
  KILL``...), no ``FUNCTION`` and no ``SCRIPT FLUSH``.
- ``hitl-auditor``: read-only (``%R~<prefix>*``, ``+@read`` without ``@dangerous``), plus the
  RQ queue and its registries read-only, to see which escalations are scheduled.

Every user may also ``PING`` (health checks), ``HELLO``/``AUTH``/``SELECT`` and ``CLIENT
SETNAME``/``SETINFO`` (redis-py's connection handshake).

Beyond the first guess, running the real code as these users showed:

- rq reads the server version with ``INFO server`` when it enqueues or runs a job (it stores it
  on the job and picks ``LPOS`` from 6.0.6). ``INFO`` is ``@dangerous``; refused, rq silently
  assumes Redis 5.0.9 and every job leaves a refusal in ``ACL LOG``. The service and the worker
  may run ``INFO`` (read-only server facts; they hold every hitl key anyway).
- RQ's worker names its connection and asks for its own address (``CLIENT SETNAME``, then
  ``CLIENT INFO``; ``CLIENT LIST`` only before Redis 6.2, not granted), and listens on its own
  pub/sub channel ``rq:pubsub:<worker name>`` for stop/kill commands (``SUBSCRIBE``, channels
  ``&rq:pubsub:*``; refused, the worker's listener thread dies with NoPermissionError).
  ``PUBLISH`` to it is how ``rq`` sends those commands, which hitl never does.
- ``CLIENT SETINFO`` exists from Redis 7.2. Redis 7.0 refuses an ACL rule naming it, so it is
  granted on a line of its own that fails harmlessly there (redis-py ignores a refused
  ``SETINFO``); on 7.2+ it keeps a refusal per connection out of ``ACL LOG``.

Key permissions by read/write selector (``%R~``, ``%W~``) need Redis 7.0 or later.
Usage::

    for line in acl_rules(Keys("hitl:"), queue="hitl"):
        redis.execute_command(*line.split())
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from hitl.errors import ConfigError
from hitl.queue.keys import Keys

__all__ = ["ROLES", "AclUser", "acl_rules", "acl_users", "password_env"]

ROLES = ("service", "worker", "agent", "auditor")
"""The kinds of process, in the order ``hitl acl`` prints them."""

_HANDSHAKE = ("+ping", "+hello", "+auth", "+select", "+client|setname")
"""What redis-py sends on connecting (AUTH or HELLO, SELECT for a database other than 0, the
client name when one is given) and its health checks (PING)."""

_DATA = (
    "+@read",
    "+@write",
    "+@keyspace",
    "+@string",
    "+@hash",
    "+@list",
    "+@set",
    "+@sortedset",
    "+@stream",
    "+@transaction",
    "+@connection",
    "-@admin",
    "-@dangerous",
    "-@pubsub",
    "-@scripting",
    "+eval",
    "+evalsha",
    "+script|load",
    "+script|exists",
    "+info",
)
"""The service's and worker's commands: data and transactions; Lua through EVAL/EVALSHA and
SCRIPT LOAD/EXISTS only (redis-py's ``register_script``); no admin, no dangerous command but
``INFO`` (rq reads the server version from it)."""


@dataclass(frozen=True)
class AclUser:
    """One Redis user: its name, key and channel patterns, and command rules."""

    role: str
    name: str
    keys: tuple[str, ...]
    commands: tuple[str, ...]
    channels: tuple[str, ...] = ()

    def rule(self, password: str) -> str:
        """The ``ACL SETUSER`` line; ``password`` is a rule (``>secret`` or ``#<sha256>``)."""
        channels = self.channels or ("resetchannels",)
        return " ".join(
            ("ACL SETUSER", self.name, "reset", "on", password, *channels, *self.keys)
            + ("-@all", *self.commands)
        )


def _valid(text: str, what: str) -> str:
    if not text or re.search(r"[\s*?\[\]\\]", text):
        raise ConfigError(
            f"{what} {text!r} cannot go into an ACL key pattern: use one without spaces, "
            "'*', '?', '[', ']' or '\\'"
        )
    return text


def acl_users(keys: Keys, queue: str) -> dict[str, AclUser]:
    """The four users for a key prefix and RQ queue, by role."""
    p = _valid(keys.prefix, "the key prefix")
    q = _valid(queue, "the queue name")
    service_keys = (f"~{p}*", "~rq:*")
    return {
        "service": AclUser("service", "hitl-service", service_keys, (*_DATA, *_HANDSHAKE)),
        "worker": AclUser(
            "worker",
            "hitl-worker",
            service_keys,
            (*_DATA, *_HANDSHAKE, "+client|info", "+subscribe", "+unsubscribe"),
            channels=("resetchannels", "&rq:pubsub:*"),
        ),
        "agent": AclUser(
            "agent",
            "hitl-agent",
            (
                f"%W~{keys.requests}",
                f"~{keys.decision('*')}",
                f"%R~{keys.req('*')}",
                f"%R~{p}feedback:*",
                f"%R~{p}control:*",
            ),
            ("+xadd", "+blpop", "+lpop", "+get", "+mget", "+exists", "+lrange", *_HANDSHAKE),
        ),
        "auditor": AclUser(
            "auditor",
            "hitl-auditor",
            (f"%R~{p}*", f"%R~rq:queue:{q}", f"%R~rq:*:{q}"),
            ("+@read", "-@dangerous", *_HANDSHAKE),
        ),
    }


def password_env(role: str) -> str:
    """The environment variable ``--password-from-env`` reads for ``role``."""
    return f"HITL_ACL_{role.upper()}_PASSWORD"


def acl_rules(
    keys: Keys,
    queue: str,
    roles: Iterable[str] = ROLES,
    passwords: Mapping[str, str] | None = None,
) -> list[str]:
    """``ACL SETUSER`` lines for ``roles``, one per user plus one granting ``CLIENT SETINFO``.

    A role without a password in ``passwords`` gets the placeholder ``>CHANGE_ME_<role>``; a
    given password goes in as its SHA-256 (``#<hex>``), so the printed rules hold no secret.
    """
    users = acl_users(keys, queue)
    out: list[str] = []
    for role in _known(roles):
        user = users[role]
        secret = (passwords or {}).get(role)
        password = (
            f"#{hashlib.sha256(secret.encode()).hexdigest()}" if secret else f">CHANGE_ME_{role}"
        )
        out.append(user.rule(password))
        out.append(f"ACL SETUSER {user.name} +client|setinfo")
    return out


def _known(roles: Iterable[str]) -> Sequence[str]:
    chosen = list(dict.fromkeys(roles))
    unknown = [r for r in chosen if r not in ROLES]
    if unknown:
        raise ConfigError(f"unknown role {unknown[0]!r}: choose from {', '.join(ROLES)}")
    return chosen
