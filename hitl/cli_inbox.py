"""``hitl inbox``: sign-in credentials for the web inbox (``/inbox`` of ``hitl serve``).

::

    hitl inbox passwd bob                 # asks twice; or --password-stdin
    hitl inbox login bob                  # prints a one-time sign-in link (15 minutes)
    hitl inbox login bob --url https://hitl.example.com --minutes 60

Both sign with the service keyring (``HITL_SIGNING_KEY_FILE``: an operator's credential), name a
reviewer of the server policy's directory (``HITL_POLICY``, else the shipped one), and are audited.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from hitl.cli_tokens import _actor, _out
from hitl.config import Settings
from hitl.errors import InvalidRequest

__all__ = ["add_subparser", "link_url"]


def link_url(base: str, link: str) -> str:
    """Where a one-time sign-in link is used: ``BASE/inbox/login/link?t=...``."""
    return base.rstrip("/") + "/inbox/login/link?t=" + link


def _context() -> tuple[Any, Any, Any]:
    from hitl.handlers.tokens import Directory
    from hitl.queue.connection import open_store
    from hitl.queue.sessions import WebRecords
    from hitl.service import load_authority

    settings = Settings.from_env()
    ring = settings.signing_keys()
    authority, _ = load_authority(settings)
    directory = authority if isinstance(authority, Directory) else None
    return WebRecords(open_store(settings)), ring, directory


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"new inbox password for {args.reviewer}: ")
    if first != getpass.getpass("again: "):
        raise InvalidRequest("the two passwords differ; nothing was changed")
    return first


def cmd_passwd(args: argparse.Namespace) -> int:
    from hitl.handlers.sessions import set_password

    web, ring, directory = _context()
    password = _read_password(args)
    record = set_password(web, ring, directory, args.reviewer, password, actor=_actor())
    return _out(
        args,
        f"inbox password set for {record.user}; they sign in at /inbox/login",
        {"user": record.user, "set_at": record.set_at},
    )


def cmd_login(args: argparse.Namespace) -> int:
    from hitl.handlers.sessions import issue_link

    web, ring, directory = _context()
    link = issue_link(web, ring, directory, args.reviewer, actor=_actor(), minutes=args.minutes)
    url = link_url(args.url, link)
    return _out(
        args,
        f"{url}\nA one-time sign-in link for {args.reviewer}: it works once, for "
        f"{args.minutes:g} minutes. Hand it over privately.",
        {"url": url},
    )


def add_subparser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("inbox", help="web inbox sign-in: passwords and one-time links")
    isub = p.add_subparsers(dest="inbox_command", required=True)
    pw = isub.add_parser("passwd", parents=[common], help="set a reviewer's inbox password")
    pw.add_argument("reviewer", help="a reviewer in the server policy's directory")
    pw.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (scripts)"
    )
    pw.set_defaults(func=cmd_passwd)
    lg = isub.add_parser("login", parents=[common], help="print a one-time sign-in link")
    lg.add_argument("reviewer", help="a reviewer in the server policy's directory")
    lg.add_argument(
        "--url",
        default=os.environ.get("HITL_URL", "http://127.0.0.1:3000"),
        help="the service's address as reviewers reach it (default $HITL_URL)",
    )
    lg.add_argument("--minutes", type=float, default=15.0, help="how long it works (default 15)")
    lg.set_defaults(func=cmd_login)
