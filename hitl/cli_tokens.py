"""``hitl tokens``: personal API tokens for reviewers and operators.

::

    hitl tokens create bob --label "bob's laptop"    # a reviewer in the server policy's directory
    hitl tokens create ops-bot --operator --expires 30
    hitl tokens list
    hitl tokens revoke t-3f9a0c1b2d4e

Creating a token signs it with the service keyring (``HITL_SIGNING_KEY_FILE``: an operator's
credential) and stores its record in Redis; the token is printed once and stored nowhere. The
reviewer must be in the policy the server uses (``HITL_POLICY``, else the shipped one).
Creation and revocation are audited.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
from typing import Any

from hitl.config import Settings

__all__ = ["add_subparser"]


def _out(args: argparse.Namespace, human: str, data: Any) -> int:
    print(json.dumps(data, indent=2) if args.json else human)
    return 0


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (containers)
        return "cli"


def _records(settings: Settings) -> Any:
    from hitl.queue.connection import open_store
    from hitl.queue.tokens import TokenRecords

    return TokenRecords(open_store(settings))


def cmd_create(args: argparse.Namespace) -> int:
    from hitl.handlers.tokens import Directory, issue
    from hitl.service import load_authority

    settings = Settings.from_env()
    ring = settings.signing_keys()
    authority, _ = load_authority(settings)
    directory = authority if isinstance(authority, Directory) else None
    token, record = issue(
        _records(settings),
        ring,
        directory,
        args.reviewer,
        actor=_actor(),
        operator=args.operator,
        label=args.label,
        expires_days=args.expires,
    )
    return _out(
        args,
        f"token {record.tid} for {record.sub} ({record.role}), expires {_when(record.exp)}\n"
        f"{token}\n"
        "It is shown once and stored nowhere: hand it over privately. Use it with\n"
        f"  HITL_URL=http://HOST:PORT HITL_TOKEN={token[:12]}... hitl pending --mine\n"
        "or `hitl login`. Revoke it with `hitl tokens revoke " + record.tid + "`.",
        {"token": token, **record.model_dump()},
    )


def cmd_list(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    records = _records(settings)
    rows = records.all()
    now = records.store.clock()

    def status(r: Any) -> str:
        if r.revoked_at is not None:
            return f"revoked {_when(r.revoked_at)}"
        return "expired" if now >= r.exp else "active"

    lines = [f"{len(rows)} tokens"]
    if rows:
        lines.append(f"{'ID':<16} {'SUBJECT':<16} {'ROLE':<9} {'EXPIRES':<20} {'STATUS':<28} LABEL")
        lines += [
            f"{r.tid:<16} {r.sub:<16} {r.role:<9} {_when(r.exp):<20} {status(r):<28} {r.label}"
            for r in rows
        ]
    data = [{**r.model_dump(), "status": status(r).split()[0]} for r in rows]
    return _out(args, "\n".join(lines), data)


def cmd_revoke(args: argparse.Namespace) -> int:
    from hitl.handlers.tokens import revoke

    record = revoke(_records(Settings.from_env()), args.token_id, actor=_actor())
    return _out(
        args,
        f"revoked {record.tid} ({record.sub}); the service refuses it from now on",
        record.model_dump(),
    )


def add_subparser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("tokens", help="personal API tokens: create, list, revoke")
    tsub = p.add_subparsers(dest="tokens_command", required=True)
    c = tsub.add_parser("create", parents=[common], help="a token for a reviewer (or operator)")
    c.add_argument("reviewer", help="a reviewer in the server policy's directory")
    c.add_argument("--label", default="", help="what it is for (shown by `tokens list`)")
    c.add_argument(
        "--operator", action="store_true", help="an operator token: cancel, override, checkpoint"
    )
    c.add_argument("--expires", type=float, default=90.0, metavar="DAYS", help="default 90")
    c.set_defaults(func=cmd_create)
    lst = tsub.add_parser("list", parents=[common], help="every token (never the tokens)")
    lst.set_defaults(func=cmd_list)
    r = tsub.add_parser("revoke", parents=[common], help="refuse a token from now on")
    r.add_argument("token_id")
    r.set_defaults(func=cmd_revoke)
