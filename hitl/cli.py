"""The ``hitl`` command: run the service, review requests, check the audit chain.

::

    hitl serve --port 3000               # intake + HTTP (/healthz, /api/v1; Slack mounts here)
    hitl demo                            # embedded Redis + service + a scripted IT-ops agent
    hitl tokens create bob               # an operator issues bob's personal API token
    hitl login --url http://127.0.0.1:3000   # bob saves the URL and his token (or HITL_URL/TOKEN)
    hitl pending --mine                  # what bob may decide (asks the service)
    hitl show ID
    hitl approve ID --param amount=50 --reason "half is enough"
    hitl reject ID --reason "not during the freeze"
    hitl override ID --reject --reason "incident 42"   # operator token: decides regardless
    hitl submit --json request.json [--wait 60]
    hitl audit verify [FILE.jsonl]       # the chain in Redis, or an exported file offline
    hitl audit export FILE.jsonl

Decisions go through the service's HTTP API (:mod:`hitl.cli_api`) with the caller's token: the
CLI never writes a decision to Redis, and the server's policy decides who may decide. Every
command takes ``--json`` for machine-readable output. Exit codes: 0 ok, 1 refused or failed
check, 2 bad usage or input, 3 Redis or the service unavailable.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from hitl.config import Settings
from hitl.errors import (
    ConfigError,
    HitlError,
    InvalidRequest,
    NotFound,
    RefusedAttempt,
    StoreUnavailable,
)
from hitl.models import RequestRecord

__all__ = ["main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


# -- output helpers ----------------------------------------------------------------------------


def _out(args: argparse.Namespace, human: str, data: Any) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        print(human)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _record_json(record: RequestRecord) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    data["id"] = record.id
    return data


def describe(record: RequestRecord) -> str:
    """A multi-line, human-readable view of one request."""
    req, v = record.request, record.verdict
    lines = [
        f"{record.id}  [{v.risk.value.upper()}]  {req.title}",
        f"  state      {record.state.value}"
        + (f" (deadline {_when(record.deadline)})" if record.deadline else ""),
        f"  action     {req.action}" + ("   ** DRY RUN **" if req.dry_run else ""),
        f"  agent      {req.agent_id or '-'}  session {req.session_id or '-'}"
        f"  on behalf of {req.requested_by or '-'}",
        f"  policy     {v.kind.value} by rule {v.rule or '-'}: {v.reason or '-'}",
        f"  needs      {v.approvals} approval(s)"
        + (f" from roles {', '.join(v.roles)}" if v.roles else "")
        + (f"; distinct roles {', '.join(v.distinct_roles)}" if v.distinct_roles else ""),
    ]
    if req.confidence is not None:
        lines.append(f"  confidence {req.confidence:.2f}")
    if req.reasoning:
        lines.append(f"  reasoning  {_short(req.reasoning, 200)}")
    if req.context:
        lines.append(f"  context    {_short(req.context, 200)}")
    lines.append("  params")
    for key, value in record.params.items():
        was = req.params.get(key, "<new>")
        changed = f"   (was {_short(was, 30)})" if was != value else ""
        lines.append(f"    {key} = {_short(value)}{changed}")
    for n, step in enumerate(req.plan, start=1):
        lines.append(f"  plan {n:>2}.   {step.description or step.action}")
    for vote in record.votes:
        r = vote.reviewer
        lines.append(
            f"  approved by {r.display_name or r.user_id} ({r.role or '-'}) at {_when(r.at)}"
        )
    if record.decision is not None:
        from hitl.handlers import describe_decision

        d = record.decision
        lines.append(f"  decision   {describe_decision(d)}" + (f": {d.reason}" if d.reason else ""))
    return "\n".join(lines)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "policy", None):
        overrides["policy_path"] = args.policy
    return Settings.from_env(**overrides)


def _store(args: argparse.Namespace, *, signer: bool = True) -> Any:
    from hitl.queue.connection import open_store

    return open_store(_settings(args), signer=signer)


def _authority(args: argparse.Namespace) -> Any:
    from hitl.service import load_authority

    try:
        authority, _ = load_authority(_settings(args))
    except ImportError:  # pragma: no cover
        from hitl.handlers import OpenAuthority

        return OpenAuthority()
    return authority


def parse_param(
    text: str, schema: dict[str, Any] | None, current: dict[str, Any] | None = None
) -> tuple[str, Any]:
    """``k=v`` -> (k, v): a string where the schema (or the current value) says string, else the
    value as JSON if it parses. The handler then refuses unknown names and changed types."""
    if "=" not in text:
        raise InvalidRequest(f"--param {text!r}: write it as name=value")
    key, raw = text.split("=", 1)
    kind = (((schema or {}).get("properties") or {}).get(key) or {}).get("type")
    if kind == "string" or (kind is None and isinstance((current or {}).get(key), str)):
        return key, raw
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


# -- commands ----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from hitl.service import Service

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    port = args.port if args.port is not None else int(os.environ.get("PORT", "3000"))
    service = Service(_settings(args), consumers=args.consumers)
    kwargs = service.store.redis.connection_pool.connection_kwargs
    where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"

    def listening(bound: int) -> None:  # the real port: `--port 0` binds any free one
        print(
            f"hitl: serving on http://{args.host}:{bound} (healthz at /healthz), redis {where}, "
            f"policy {service.authority.version}; run `hitl worker` beside it for escalations",
            flush=True,
        )

    asyncio.run(service.serve(host=args.host, port=port, on_listening=listening))
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from hitl.jobs import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run_worker(_settings(args), burst=args.burst)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from hitl.demo import run_demo

    return run_demo(_settings(args), port=args.port, interactive=args.interactive)


def cmd_pending(args: argparse.Namespace) -> int:
    from hitl.handlers import pending

    if args.offset < 0 or args.limit < 1:
        raise InvalidRequest("--offset must be 0 or more and --limit 1 or more")
    if os.environ.get("HITL_URL") or args.mine:  # --mine: the token's reviewer, per the service
        return _pending_via_api(args)
    store = _store(args, signer=False)
    authority = _authority(args)
    who = args.as_user or os.environ.get("HITL_USER")
    page = pending(
        store,
        reviewer_id=None if args.all or not who else who,
        authority=authority,
        offset=args.offset,
        limit=args.limit,
    )
    rows = [
        f"{r.id:<34} {r.verdict.risk.value:<8} {len(r.approvals)}/{r.verdict.approvals}  "
        f"{_when(r.deadline):<20} {_short(r.request.title, 50)}"
        for r in page.records
    ]
    scope = "all" if args.all or not who else f"that {who} may decide"
    lookup = getattr(authority, "reviewer", None)
    if who and not args.all and lookup is not None and lookup(who) is None:
        scope += f"; note: {who} is not in the policy's reviewer directory"
    header = f"{page.total} pending ({scope})"
    if rows:
        header += f"\n{'ID':<34} {'RISK':<8} VOTES {'DEADLINE':<20} SUMMARY\n" + "\n".join(rows)
    if page.next_offset is not None:
        header += f"\n... more: --offset {page.next_offset}"
    _out(
        args,
        header,
        {
            "total": page.total,
            "offset": page.offset,
            "requests": [_record_json(r) for r in page.records],
        },
    )
    return EXIT_OK


def _pending_via_api(args: argparse.Namespace) -> int:
    from hitl.cli_api import pending_via_api

    page = pending_via_api(args)
    records = [RequestRecord.model_validate(r) for r in page["requests"]]
    rows = [
        f"{r.id:<34} {r.verdict.risk.value:<8} {len(r.approvals)}/{r.verdict.approvals}  "
        f"{_when(r.deadline):<20} {_short(r.request.title, 50)}"
        for r in records
    ]
    header = f"{page['total']} pending ({'that you may decide' if args.mine else 'all'})"
    if rows:
        header += f"\n{'ID':<34} {'RISK':<8} VOTES {'DEADLINE':<20} SUMMARY\n" + "\n".join(rows)
    if page.get("next_offset") is not None:
        header += f"\n... more: --offset {page['next_offset']}"
    _out(args, header, page)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    from hitl.handlers.metrics import governance_of, stats, stats_lines

    governance = governance_of(_authority(args))
    figures = stats(_store(args, signer=False), last=args.last, governance=governance)
    _out(args, "\n".join(stats_lines(figures)), figures)
    return EXIT_OK


def describe_deliveries(deliveries: Sequence[Any]) -> str:
    """The notifications sent about a request: what, to whom, when, and how it went."""
    lines = ["  notified"] if deliveries else []
    for d in deliveries:
        where = f" <{d.address}>" if d.address else ""
        error = f": {_short(d.error, 80)}" if d.error else ""
        tries = f", {d.attempts} tries" if d.attempts > 1 else ""
        lines.append(
            f"    {_when(d.created_at)}  {d.target} -> {d.to}{where}  ({d.what})  "
            f"{d.status}{tries} at {_when(d.updated_at)}{error}"
        )
    return "\n".join(lines)


def cmd_show(args: argparse.Namespace) -> int:
    from hitl.queue.deliveries import Deliveries

    store = _store(args, signer=False)
    record = store.get(args.id)
    sent = Deliveries(store).list(record.id)
    data = _record_json(record)
    data["deliveries"] = [d.model_dump(mode="json") for d in sent]
    human = describe(record)
    if sent:
        human += "\n" + describe_deliveries(sent)
    _out(args, human, data)
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from hitl.client import Client
    from hitl.models import ApprovalRequest

    if args.wait is not None and args.wait <= 0:
        raise InvalidRequest(f"--wait must be a positive number of seconds, got {args.wait:g}")
    text = sys.stdin.read() if args.json_file == "-" else Path(args.json_file).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{args.json_file} is not JSON: {exc}") from None
    from pydantic import ValidationError

    try:
        request = ApprovalRequest.model_validate(data)
    except ValidationError as exc:
        from hitl.queue.intake import validation_errors

        errors = validation_errors(exc)
        raise InvalidRequest(
            "invalid request: " + "; ".join(f"{f}: {m}" for f, m in errors), errors
        ) from None
    with Client(settings=_settings(args)) as client:
        request_id = client.submit_request(request)
        if args.wait is None:
            _out(args, f"submitted {request_id}", {"id": request_id})
            return EXIT_OK
        decision = client.wait(request_id, args.wait)
    human = f"{request_id}: {decision.outcome.value} {decision.reason}".rstrip()
    if decision.modified:
        changed = {
            k: f"{(decision.original_params or {}).get(k)!r} -> {v!r}"
            for k, v in decision.params.items()
            if (decision.original_params or {}).get(k) != v
        }
        human += "\n  modified: " + ", ".join(f"{k}: {c}" for k, c in changed.items())
        human += "\n  run with: " + json.dumps(decision.params, ensure_ascii=False)
    _out(args, human, decision.model_dump(mode="json"))
    return EXIT_OK if decision.approved else EXIT_FAIL


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Every chain (Redis, or an export) against its signed checkpoints, with public keys only."""
    from hitl.queue.audit import (
        ChainHead,
        open_anchor,
        split_export,
        verify_chain,
        verify_chains,
    )
    from hitl.queue.checkpoints import read_log, verify_store
    from hitl.queue.keys import Keys

    settings = _settings(args)
    keys = settings.verify_keys()
    expect = None
    if args.head:
        seq, _, digest = args.head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise InvalidRequest(f"--head {args.head!r}: expected SEQ:HASH (64 hex digits)")
        expect = ChainHead(int(seq), digest)
    anchor = open_anchor(args.anchor) if args.anchor else settings.anchor()
    if args.file:
        with open(args.file, encoding="utf-8") as fh:
            entries, carried = split_export(fh)
        checkpoints = [*carried, *(anchor.read() if args.anchor else [])]
        if args.chain:  # one named chain (an export of a log from before the sharding)
            report = verify_chain(entries, checkpoints, keys, chain=args.chain, expect_head=expect)
        else:
            # The chains' names carry the exporter's key prefix; without checkpoints, ours.
            prefix = carried[0].chain.rpartition("audit:{")[0] if carried else settings.prefix
            names = Keys(prefix).audit_chains
            report = verify_chains(entries, checkpoints, keys, names=names, expect_head=expect)
    else:
        store = _store(args, signer=False)
        checkpoints = anchor.read()
        report = verify_store(store, checkpoints, keys)
        if report.ok and expect is not None:
            # Also against a head kept elsewhere (an export's, a published anchor).
            names = store.keys.audit_chains
            report = verify_chains(
                read_log(store), checkpoints, keys, names=names, expect_head=expect
            )
    data = {
        "ok": report.ok,
        "entries": report.entries,
        "chains": report.chains,
        "head": {"seq": report.head.seq, "hash": report.head.hash},
        "first_bad_seq": report.first_bad_seq,
        "chain": report.chain,
        "problem": report.problem,
        "checkpoints": report.checkpoints,
        "anchored_seq": report.anchored_seq,
        "unanchored": report.unanchored,
        "anchor": anchor.where,
    }
    _out(args, str(report), data)
    return EXIT_OK if report.ok else EXIT_FAIL


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    """Sign every chain's head now (needs the keyring: an operator's or the service's)."""
    from hitl.queue.checkpoints import Checkpointer

    settings = _settings(args)
    store = _store(args)
    checkpointer = Checkpointer(store, settings.signing_keys(), settings.anchor())
    made = checkpointer.checkpoint()
    if not made:
        _out(args, "the chain has not moved since the last checkpoint", {"checkpoints": []})
    else:
        lines = [
            f"checkpoint {c.chain} seq {c.seq} hash {c.hash} signed by {c.key_id}" for c in made
        ]
        _out(
            args,
            "\n".join([*lines, f"-> {checkpointer.anchor.where}"]),
            {"checkpoints": [c.to_json() for c in made], "anchor": checkpointer.anchor.where},
        )
    return EXIT_OK


def cmd_audit_export(args: argparse.Namespace) -> int:
    """Entries, then the checkpoints that cover them: verifiable offline with the public key."""
    from hitl.queue.audit import heads_root
    from hitl.queue.checkpoints import read_log

    settings = _settings(args)
    store = _store(args, signer=False)
    entries = read_log(store)
    names = set(store.keys.audit_chains)
    checkpoints = [c for c in settings.anchor().read() if c.chain in names]
    with open(args.file, "w", encoding="utf-8") as fh:
        for entry in entries:
            fh.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
        for cp in checkpoints:
            fh.write(json.dumps({"checkpoint": cp.to_json()}, sort_keys=True) + "\n")
    head = heads_root(store.head())
    _out(
        args,
        f"wrote {len(entries)} entries and {len(checkpoints)} signed checkpoints to {args.file}; "
        f"root seq {head.seq} hash {head.hash}\n"
        f"check it offline (public key only) with: hitl audit verify {args.file}",
        {
            "file": args.file,
            "entries": len(entries),
            "checkpoints": len(checkpoints),
            "head": {"seq": head.seq, "hash": head.hash},
        },
    )
    return EXIT_OK


def cmd_dead(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise InvalidRequest(f"--limit must be 1 or more, got {args.limit}")
    store = _store(args, signer=False)
    entries = store.redis.xrevrange(store.keys.dead, count=args.limit)
    rows = [
        f"{i}  {f.get('reason', '')}"
        + (  # an oversized entry keeps only a digest and a prefix of its largest field
            f"  [{f.get('payload_field')}: {f['payload_bytes']} bytes, sha256 "
            f"{f['payload_sha256'][:16]}..., starts {json.loads(f['payload_prefix'])!r:.60}]"
            if "payload_sha256" in f
            else ""
        )
        for i, f in entries
    ]
    data = [
        {
            "id": i,
            **f,
            "errors": json.loads(f.get("errors") or "[]"),
            "payload": json.loads(f.get("payload") or "{}"),
            **(
                {"payload_prefix": json.loads(f["payload_prefix"])} if "payload_prefix" in f else {}
            ),
        }
        for i, f in entries
    ]
    _out(args, f"{store.redis.xlen(store.keys.dead)} dead-lettered\n" + "\n".join(rows), data)
    return EXIT_OK


def cmd_server(args: argparse.Namespace) -> int:
    from hitl.queue.embedded import EmbeddedServer

    settings = _settings(args)
    server = EmbeddedServer(settings.data_dir)
    if args.action == "start":
        print(server.ensure())
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    else:
        if server.alive():
            print(f"running: {server.url} (pid {server.pid()}, data in {settings.data_dir})")
        else:
            print(f"stopped (data in {settings.data_dir}; `hitl server start` to start it)")
    return EXIT_OK


def cmd_acl(args: argparse.Namespace) -> int:
    from hitl.acl import ROLES, acl_rules, password_env
    from hitl.queue.keys import Keys
    from hitl.queue.scheduler import SchedulerConfig

    keys = Keys(args.prefix or os.environ.get("HITL_PREFIX", "hitl:"))
    roles = args.role or list(ROLES)
    passwords: dict[str, str] = {}
    if args.password_from_env:
        missing = [password_env(r) for r in roles if not os.environ.get(password_env(r))]
        if missing:
            raise InvalidRequest(f"--password-from-env: set {', '.join(missing)}")
        passwords = {r: os.environ[password_env(r)] for r in roles}
    queue = args.queue or SchedulerConfig.from_env().queue_name(keys)
    print("\n".join(acl_rules(keys, queue, roles, passwords)))
    return EXIT_OK


# -- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument(
        "--policy", help="policy file (default: $HITL_POLICY, else the shipped one)"
    )

    parser = argparse.ArgumentParser(
        prog="hitl", description="In-chat human approval for AI agents."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", parents=[common], help="run intake + the HTTP server")
    p.add_argument(
        "--port", type=int, default=None, help="default $PORT, else 3000; 0: any free port"
    )
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--consumers", type=int, default=1, help="intake consumers in this process")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "worker",
        parents=[common],
        help="the RQ worker + scheduler: escalations, reminders, digests",
    )
    p.add_argument("--burst", action="store_true", help="run due jobs, then exit")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", parents=[common], help="the IT-operations demo on embedded Redis")
    p.add_argument("--port", type=int, default=0, help="HTTP port (default: a free one)")
    p.add_argument(
        "--interactive", action="store_true", help="leave requests pending for you to decide"
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("pending", parents=[common], help="list pending requests")
    p.add_argument("--as", dest="as_user", help="only what this reviewer may decide ($HITL_USER)")
    p.add_argument("--all", action="store_true", help="every pending request")
    p.add_argument(
        "--mine", action="store_true", help="with HITL_URL: only what your token may decide"
    )
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_pending)

    p = sub.add_parser("stats", parents=[common], help="approval/escalation rates, review latency")
    p.add_argument("--last", type=int, default=1000, help="decisions to look back over")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("show", parents=[common], help="one request in full")
    p.add_argument("id")
    p.set_defaults(func=cmd_show)

    from hitl.cli_api import add_decide_subparsers

    add_decide_subparsers(sub)  # approve(-all), reject, ack, cancel, override, login: the API

    p = sub.add_parser("submit", parents=[common], help="queue an ApprovalRequest from JSON")
    p.add_argument("--json-file", "--file", dest="json_file", required=True, metavar="FILE")
    p.add_argument("--wait", type=float, default=None, metavar="SECONDS")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("audit", help="verify or export the audit chain")
    asub = p.add_subparsers(dest="audit_command", required=True)
    v = asub.add_parser("verify", parents=[common], help="check the chain (Redis, or a file)")
    v.add_argument("file", nargs="?", help="an exported .jsonl (offline); default: Redis")
    v.add_argument(
        "--head",
        help="expected root SEQ:HASH, as export prints it (detects deleted newest entries)",
    )
    v.add_argument(
        "--anchor", help="checkpoints to check against (default $HITL_AUDIT_ANCHOR / data dir)"
    )
    v.add_argument(
        "--chain",
        help="verify FILE as the one chain of this name (an export from before the sharding)",
    )
    v.set_defaults(func=cmd_audit_verify)
    c = asub.add_parser("checkpoint", parents=[common], help="sign the head now (needs the keys)")
    c.set_defaults(func=cmd_audit_checkpoint)
    e = asub.add_parser("export", parents=[common], help="write the chain as JSON lines")
    e.add_argument("file")
    e.set_defaults(func=cmd_audit_export)

    p = sub.add_parser("dead", parents=[common], help="list dead-lettered input")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_dead)

    p = sub.add_parser("server", parents=[common], help="the embedded Redis server")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.set_defaults(func=cmd_server)

    p = sub.add_parser("acl", help="print Redis ACL SETUSER rules, one user per process kind")
    p.add_argument("--prefix", help="the key prefix (default $HITL_PREFIX, else hitl:)")
    p.add_argument("--queue", help="the RQ queue (default $HITL_QUEUE, else from the prefix)")
    p.add_argument("--role", action="append", choices=["service", "worker", "agent", "auditor"])
    p.add_argument(
        "--password-from-env",
        action="store_true",
        help="hash passwords from $HITL_ACL_<ROLE>_PASSWORD instead of CHANGE_ME placeholders",
    )
    p.set_defaults(func=cmd_acl)

    try:
        from hitl.cli_policy import add_subparser
    except ImportError:  # pragma: no cover
        pass
    else:
        add_subparser(sub)
    from hitl.cli_feedback import add_subparser as add_feedback
    from hitl.cli_inbox import add_subparser as add_inbox
    from hitl.cli_keys import add_subparser as add_keys
    from hitl.cli_mcp import add_subparser as add_mcp
    from hitl.cli_teams import add_subparser as add_teams
    from hitl.cli_tokens import add_subparser as add_tokens

    add_keys(sub)
    add_tokens(sub)
    add_teams(sub)
    add_inbox(sub)
    add_mcp(sub)
    add_feedback(sub)
    return parser


def _fix_submit_json_flag(argv: list[str]) -> list[str]:
    """``hitl submit --json FILE`` (as documented) means the file, not ``--json`` output."""
    if argv[:1] == ["submit"] and "--json" in argv:
        i = argv.index("--json")
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            return [*argv[:i], "--json-file", *argv[i + 1 :]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    args_list = _fix_submit_json_flag(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(args_list)
    from hitl.cli_api import Unreachable

    try:
        return int(args.func(args))
    except InvalidRequest as exc:
        print(f"hitl: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NotFound as exc:
        print(f"hitl: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except RefusedAttempt as exc:
        print(f"hitl: refused: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except (StoreUnavailable, Unreachable) as exc:
        print(f"hitl: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ConfigError as exc:
        print(f"hitl: configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HitlError as exc:
        print(f"hitl: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except BrokenPipeError:  # `hitl show ID | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        print(f"hitl: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        print(f"hitl: Redis is unreachable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
