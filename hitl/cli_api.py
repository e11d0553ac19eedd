"""The CLI's decide verbs, through the HTTP API of ``hitl serve`` (never Redis).

::

    hitl login --url http://127.0.0.1:3000      # asks for the token, checks it, saves both
    hitl approve ID [--reason R] [--param k=v ...] [--break-glass]
    hitl approve-all DIGEST_ID [--reason R]      # a digest's "Approve all N"
    hitl reject ID --reason R
    hitl ack ID
    hitl cancel ID [--reason R]                  # operator token
    hitl override ID --approve|--reject --reason R   # operator token
    hitl pending --mine                          # via the API when HITL_URL is set
    hitl logout

Who you are comes from your token (``HITL_TOKEN``, else ``hitl login``'s credentials file), and
what you may do from the server's policy: there is no ``--as`` and no ``--policy`` here. HTTP
answers map to the exit codes: 0 ok, 1 refused (401/403/404/409), 2 bad input or configuration
(400/413), 3 unreachable (or 503: Redis down on the server).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import http.client
import json
import os
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hitl.errors import (
    AlreadyDecided,
    ConfigError,
    HitlError,
    InvalidRequest,
    NotAuthorized,
    NotFound,
    StoreUnavailable,
    Unauthenticated,
)

__all__ = [
    "ApiClient",
    "Credentials",
    "Unreachable",
    "add_decide_subparsers",
    "credentials_path",
]

API = "/api/v1"
NO_AS = "identity comes from your token (HITL_TOKEN or `hitl login`), not --as"
NO_POLICY = (
    "--policy is not used when deciding: the server authorizes with its own policy and directory"
)


class Unreachable(HitlError):
    """The service could not be reached, or the answer was lost (exit code 3)."""


# -- credentials -------------------------------------------------------------------------------


def credentials_path() -> Path:
    """``$XDG_CONFIG_HOME/hitl/credentials.json`` (default ``~/.config/hitl/...``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hitl" / "credentials.json"


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str

    @classmethod
    def load(cls) -> Credentials:
        """``HITL_URL`` / ``HITL_TOKEN``, each falling back to the ``hitl login`` file."""
        saved: dict[str, Any] = {}
        path = credentials_path()
        if path.exists():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{path}: {exc}; run `hitl login` again") from None
        url = os.environ.get("HITL_URL") or str(saved.get("url") or "")
        token = os.environ.get("HITL_TOKEN") or str(saved.get("token") or "")
        missing = [n for n, v in (("HITL_URL", url), ("HITL_TOKEN", token)) if not v]
        if missing:
            raise ConfigError(
                f"{' and '.join(missing)} not set: deciding goes through `hitl serve`'s API. Set "
                "HITL_URL (e.g. http://127.0.0.1:3000) and HITL_TOKEN (from an operator's "
                "`hitl tokens create YOU`), or run `hitl login --url URL`"
            )
        return cls(_check_url(url), token)

    def save(self) -> Path:
        """Write the file with mode 0600 (atomically)."""
        path = credentials_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"url": self.url, "token": self.token}, fh)
            fh.write("\n")
        os.replace(tmp, path)
        return path


def _check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"HITL_URL {url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


# -- the client --------------------------------------------------------------------------------


class ApiClient:
    """A small synchronous client of the API (stdlib only; one connection per call)."""

    def __init__(self, credentials: Credentials, timeout: float = 30.0) -> None:
        self.credentials = credentials
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None, *, request_id: str = "") -> Any:
        """The answer's JSON, or the error the status means (see the module docstring)."""
        parts = urllib.parse.urlsplit(self.credentials.url)
        conn_type = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_type(parts.hostname or "", parts.port, timeout=self.timeout)
        target = parts.path.rstrip("/") + API + path
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Authorization": f"Bearer {self.credentials.token}",
            "Accept": "application/json",
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise Unreachable(
                    f"cannot reach {self.credentials.url} ({_why(exc)}); nothing was sent - is "
                    "`hitl serve` running there? (HITL_URL)"
                ) from None
            try:
                conn.request(method, target, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise Unreachable(_lost(method, request_id, exc, self.credentials.url)) from None
        finally:
            conn.close()
        return _answer(response.status, raw)


def _why(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _lost(method: str, request_id: str, exc: BaseException, url: str) -> str:
    if method == "GET":
        return f"the connection to {url} was lost ({_why(exc)}); try again"
    check = f"`hitl show {request_id}`" if request_id else "`hitl show ID`"
    return (
        f"the connection to {url} was lost after the request was sent ({_why(exc)}): the outcome "
        f"is unknown - it may or may not have been recorded. Check with {check} before retrying"
    )


def _answer(status: int, raw: bytes) -> Any:
    try:
        data = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        data = {}
    if 200 <= status < 300:
        return data
    error = data.get("error") if isinstance(data, dict) else None
    message = str(error.get("message")) if isinstance(error, dict) else ""
    message = message or f"HTTP {status}: {raw[:200].decode('utf-8', 'replace')}"
    if status in (400, 413):
        raise InvalidRequest(message)
    if status == 401:
        raise Unauthenticated(f"not authenticated: {message}")
    if status == 403:
        raise NotAuthorized(message)
    if status == 404:
        raise NotFound(message)
    if status == 409:
        raise AlreadyDecided(message)
    if status == 503:
        raise StoreUnavailable(f"the service cannot reach Redis: {message}")
    raise HitlError(f"the service failed (HTTP {status}): {message}")


# -- commands ----------------------------------------------------------------------------------


def _out(args: argparse.Namespace, human: str, data: Any) -> int:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        print(human)
    return 0


def _refuse_local_identity(args: argparse.Namespace) -> None:
    if getattr(args, "as_user", None) is not None:
        raise InvalidRequest(NO_AS)
    if getattr(args, "policy", None) is not None:
        raise InvalidRequest(NO_POLICY)


def _client(args: argparse.Namespace) -> ApiClient:
    _refuse_local_identity(args)
    return ApiClient(Credentials.load())


def _quote(request_id: str) -> str:
    return urllib.parse.quote(request_id, safe="")


def _post(client: ApiClient, request_id: str, verb: str, body: dict[str, Any]) -> Any:
    return client.call(
        "POST", f"/requests/{_quote(request_id)}/{verb}", body, request_id=request_id
    )


def _action_output(args: argparse.Namespace, answer: dict[str, Any], before: Any = None) -> int:
    from hitl.cli import _when

    record = answer.get("record") or {}
    human = f"{answer['id']}: {answer['message']}"
    if before is not None and answer.get("decision") is None:
        now = record.get("votes") or []
        lost = [v for v in before.get("votes") or [] if v not in now]
        if lost:
            voided = ", ".join(
                v["reviewer"].get("display_name") or v["reviewer"]["user_id"] for v in lost
            )
            human += f"\n  earlier approvals ({voided}) were for other params and are void"
    glass = record.get("break_glass")
    if glass and glass.get("acked_by") is None:
        human += (
            f"\n  BREAK-GLASS: a second person must run `hitl ack {answer['id']}` by "
            f"{_when(glass.get('ack_deadline'))}, or the missed acknowledgement is raised as an "
            "alert"
        )
    data = {"id": answer["id"], "state": answer["state"], "message": answer["message"]}
    if answer.get("decision") is not None:
        data["decision"] = answer["decision"]
    return _out(args, human, data)


def cmd_approve(args: argparse.Namespace) -> int:
    from hitl.cli import parse_param

    client = _client(args)
    if args.break_glass:
        if args.param:
            raise InvalidRequest("--break-glass approves the params as requested; drop --param")
        answer = _post(client, args.id, "break-glass", {"reason": args.reason or ""})
        return _action_output(args, answer)
    if not args.param:
        return _action_output(args, _post(client, args.id, "approve", {"reason": args.reason}))
    before = client.call("GET", f"/requests/{_quote(args.id)}")
    schema = (before.get("request") or {}).get("param_schema")
    params = dict(parse_param(p, schema, before.get("params")) for p in args.param)
    answer = _post(client, args.id, "modify", {"params": params, "reason": args.reason})
    return _action_output(args, answer, before)


def cmd_approve_all(args: argparse.Namespace) -> int:
    """A digest's "Approve all N": one vote per listed request, each authorized by the server.

    Exit 0 when every request took the vote, 1 when any was refused (the others still count).
    """
    client = _client(args)
    path = f"/digests/{_quote(args.digest_id)}/approve-all"
    answer = client.call("POST", path, {"reason": args.reason})
    items = answer.get("items") or []
    lines = [f"{args.digest_id}: {answer['message']}"]
    lines += [f"  {i['request_id']}: {'' if i['ok'] else 'refused: '}{i['message']}" for i in items]
    _out(args, "\n".join(lines), answer)
    return 0 if all(i["ok"] for i in items) else 1


def cmd_reject(args: argparse.Namespace) -> int:
    client = _client(args)
    return _action_output(args, _post(client, args.id, "reject", {"reason": args.reason}))


def cmd_label(args: argparse.Namespace) -> int:
    answer = _post(_client(args), args.id, "label", {"label": args.label, "note": args.note})
    return _out(args, answer["message"], answer)


def cmd_ack(args: argparse.Namespace) -> int:
    answer = _post(_client(args), args.id, "ack", {})
    return _out(args, f"{answer['id']}: {answer['message']}", answer["record"])


def cmd_cancel(args: argparse.Namespace) -> int:
    answer = _post(_client(args), args.id, "cancel", {"reason": args.reason})
    return _out(args, f"{answer['id']}: {answer['message']}", answer)


def cmd_override(args: argparse.Namespace) -> int:
    outcome = "approved" if args.approve else "rejected"
    client = _client(args)
    body = {"outcome": outcome, "reason": args.reason}
    return _action_output(args, _post(client, args.id, "override", body))


def cmd_control(args: argparse.Namespace) -> int:
    """``hitl pause AGENT`` / ``hitl resume AGENT`` / ``hitl stop SESSION`` through the API."""
    where = "sessions" if args.command == "stop" else "agents"
    path = f"/{where}/{_quote(args.target)}/{args.command}"
    answer = _client(args).call("POST", path, {"reason": args.reason})
    return _out(args, answer["message"], answer)


def pending_via_api(args: argparse.Namespace) -> dict[str, Any]:
    """``hitl pending`` against the API (when HITL_URL is set)."""
    if getattr(args, "as_user", None) is not None:
        raise InvalidRequest(f"{NO_AS}; use --mine for what your token's reviewer may decide")
    query = {"offset": args.offset, "limit": args.limit}
    if args.mine:
        query["mine"] = 1
    answer: dict[str, Any] = ApiClient(Credentials.load()).call(
        "GET", "/requests?" + urllib.parse.urlencode(query)
    )
    return answer


def cmd_login(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("HITL_URL") or ""
    if not url:
        raise ConfigError("which service? pass --url http://HOST:PORT (or set HITL_URL)")
    token = args.token or os.environ.get("HITL_TOKEN") or ""
    if not token:
        token = getpass.getpass("hitl token (hitl_...): ").strip()
    credentials = Credentials(_check_url(url), token)
    who = ApiClient(credentials).call("GET", "/whoami")
    path = credentials.save()
    name = who.get("display_name") or who["sub"]
    return _out(
        args,
        f"logged in to {credentials.url} as {name} ({who['sub']}, {who['role']}); "
        f"credentials in {path} (mode 0600)",
        {"url": credentials.url, **who, "file": str(path)},
    )


def cmd_logout(args: argparse.Namespace) -> int:
    path = credentials_path()
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        return _out(args, f"removed {path}", {"removed": str(path)})
    return _out(args, f"not logged in ({path} does not exist)", {"removed": None})


# -- parser ------------------------------------------------------------------------------------


def add_decide_subparsers(sub: Any) -> None:
    """approve, approve-all, reject, label, ack, cancel, override, pause, resume, stop, login,
    logout."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    # Refused with a message (not an argparse error), so old scripts learn what changed.
    common.add_argument("--as", dest="as_user", default=None, help=argparse.SUPPRESS)
    common.add_argument("--policy", default=None, help=argparse.SUPPRESS)

    p = sub.add_parser("approve", parents=[common], help="approve (optionally with changed params)")
    p.add_argument("id")
    p.add_argument("--reason", default="")
    p.add_argument("--param", action="append", default=[], metavar="K=V", help="modify a param")
    p.add_argument(
        "--break-glass",
        action="store_true",
        help="emergency: approve alone (needs --reason; a second person must `hitl ack` in time)",
    )
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser(
        "approve-all",
        parents=[common],
        help="approve every request a digest lists (each authorized, audited on its own)",
    )
    p.add_argument("digest_id", metavar="DIGEST_ID", help="the digest's id (dg-...)")
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_approve_all)

    p = sub.add_parser("ack", parents=[common], help="acknowledge a break-glass approval")
    p.add_argument("id")
    p.set_defaults(func=cmd_ack)

    p = sub.add_parser("reject", parents=[common], help="reject with a reason")
    p.add_argument("id")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_reject)

    p = sub.add_parser(
        "label", parents=[common], help="say whether a decision was right (false-positive rate)"
    )
    p.add_argument("id")
    p.add_argument("label", choices=["correct", "incorrect"])
    p.add_argument("--note", default="", help="why (kept in the audit log)")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("cancel", parents=[common], help="withdraw a pending request (operator)")
    p.add_argument("id")
    p.add_argument("--reason", default="")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser(
        "override",
        parents=[common],
        help="operator override: decide regardless of roles and quorum (audited)",
    )
    p.add_argument("id")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--approve", action="store_true")
    which.add_argument("--reject", action="store_true")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_override)

    for name, target, text in (
        ("pause", "AGENT", "pause an agent: its tools refuse to run until resumed"),
        ("resume", "AGENT", "let a paused agent act again (role manager or operator)"),
        ("stop", "SESSION", "stop a session: cancel its pending requests, halt its tools"),
    ):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("target", metavar=target)
        p.add_argument("--reason", required=name != "resume", default="")
        p.set_defaults(func=cmd_control)

    p = sub.add_parser("login", help="save the service URL and your token (checked first)")
    p.add_argument("--url", help="the service, e.g. http://127.0.0.1:3000 (default $HITL_URL)")
    p.add_argument("--token", help="your token (default: $HITL_TOKEN, else asked for)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="forget the saved URL and token")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_logout)
