"""``hitl demo``: the IT-operations case study, end to end, on the embedded server.

An infrastructure agent (the article's "Enterprise IT Operations Agent") asks to list instances,
stop instances on dev and production, delete a volume, change a security group and refund a
customer. The shipped policy routes each one; scripted reviewers answer the ones that need a
human (each step prints the equivalent ``hitl`` command: the reviewer's personal token and the
service's API), and the demo ends by verifying the audit chain. With ``--interactive`` the
requests stay pending, and the demo issues a token for each sample reviewer (alice .. frank) and
prints the commands to decide with them in another terminal
(``HITL_URL=... HITL_TOKEN=... hitl approve ID``). Either way it prints the web inbox's address
and a one-time sign-in link for bob, to decide in a browser instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from hitl.client import Client
from hitl.config import Settings
from hitl.errors import ApprovalRejected, HitlError, RefusedAttempt
from hitl.models import Decision, Reviewer
from hitl.queue.embedded import EmbeddedServer

__all__ = ["SCENARIO", "run_demo"]

REQUESTER = "alice"
REVIEWERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
DEMO_REVIEWER = "bob"
"""Whose one-time inbox sign-in link the demo prints (a manager: most requests are theirs)."""

SCENARIO: list[dict[str, Any]] = [
    {
        "action": "list_instances",
        "params": {"region": "eu-west-1"},
        "summary": "List EC2 instances in eu-west-1",
        "reasoning": "The user asked which instances are idle; listing is read-only.",
        "confidence": 0.97,
    },
    {
        "action": "stop_instance",
        "params": {"instance_id": "i-0dev42", "environment": "dev"},
        "summary": "Stop idle dev instance i-0dev42",
        "reasoning": "CPU < 1% for 14 days; dev instances are stopped nightly anyway.",
        "confidence": 0.93,
    },
    {
        "action": "stop_instance",
        "params": {"instance_id": "i-0prod7", "environment": "production"},
        "summary": "Stop production instance i-0prod7 (suspected runaway job)",
        "reasoning": "The instance has run a batch job at 100% CPU for 9 hours, 6x its usual.",
        "context": {"user_request": "Why is the AWS bill spiking? Fix it.", "ticket": "OPS-1182"},
        "confidence": 0.74,
        "review": [("approve", "bob", "confirmed with the batch team", None)],
    },
    {
        "action": "delete_volume",
        "params": {"volume_id": "vol-0abc123", "size_gb": 500},
        "summary": "Delete unattached 500 GB volume vol-0abc123",
        "reasoning": "Unattached for 90 days, no snapshots reference it, tagged owner left.",
        "confidence": 0.88,
        "review": [
            ("approve", "alice", "", None),  # the requester: refused
            ("approve", "carol", "no data classification tags", None),
            ("approve", "carol", "", None),  # second vote by the same person: refused
            ("approve", "dave", "snapshot taken first as vol-0abc123-final", None),
        ],
    },
    {
        "action": "modify_security_group",
        "params": {"group_id": "sg-0web", "rule": "0.0.0.0/0:22"},
        "summary": "Open SSH (22) to the world on sg-0web",
        "reasoning": "The user cannot reach the bastion from the hotel network.",
        "confidence": 0.61,
        "review": [("reject", "erin", "never open 22 to 0.0.0.0/0; use the VPN", None)],
    },
    {
        "action": "delete_volume",
        "params": {"volume_id": "vol-0old99", "size_gb": 20},
        "summary": "Delete old 20 GB volume vol-0old99",
        "reasoning": "Cleanup of a volume unattached for a year.",
        "confidence": 0.9,
        "timeout_s": 3,
        "silence": True,  # nobody answers: the worker applies deny-by-default
    },
    {
        "action": "refund",
        "params": {"order_id": "A-1001", "amount": 40.0, "reason": "damaged"},
        "summary": "Refund $40 for order A-1001",
        "reasoning": "Photo of the damaged item is attached to the ticket.",
        "confidence": 0.95,
    },
    {
        "action": "refund",
        "params": {"order_id": "A-1002", "amount": 250.0, "reason": "late delivery"},
        "param_schema": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string"},
                "amount": {"type": "number", "minimum": 0, "maximum": 1000},
                "reason": {"type": "string", "enum": ["damaged", "late delivery", "other"]},
            },
            "required": ["order_id", "amount"],
        },
        "summary": "Refund $250 for order A-1002",
        "reasoning": "Delivery was 9 days late; the customer asks for a full refund.",
        "confidence": 0.81,
        "review": [
            ("modify", "bob", "late, not lost: refund the shipping + 50%", {"amount": 150.0})
        ],
    },
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(text: str) -> None:
    print(text, flush=True)


def run_demo(settings: Settings, *, port: int = 0, interactive: bool = False) -> int:
    """Run the scripted demo (or leave requests pending with ``interactive``). Exit code."""
    from hitl.cli import describe
    from hitl.service import Service

    started_here = False
    server: EmbeddedServer | None = None
    if not settings.redis_url:
        server = EmbeddedServer(settings.data_dir)
        started_here = not server.alive()
        _say(f"== embedded server: {server.ensure()} (data: {settings.data_dir})")
    from hitl.jobs import start_worker, stop_worker

    service = Service(settings)
    worker = start_worker(settings, url=server.url if server is not None else None)
    _say(f"== RQ worker with scheduler: pid {worker.pid} (escalations, reminders, digests)")
    port = port or _free_port()
    loop = asyncio.new_event_loop()
    serving = threading.Thread(
        target=loop.run_until_complete,
        args=(service.serve(host="127.0.0.1", port=port),),
        daemon=True,
    )
    serving.start()
    _say(
        f"== service: intake + http://127.0.0.1:{port}/healthz and /api/v1, policy "
        f"{service.authority.version}"
    )
    url = f"http://127.0.0.1:{port}"
    tokens = _issue_tokens(service, url) if interactive else {}
    _show_inbox(service, url, interactive)
    if not interactive:
        _say(
            f"== reviewers decide with personal tokens (`hitl tokens create bob` -> $BOB) through "
            f"the API: HITL_URL={url} HITL_TOKEN=$BOB hitl approve ID"
        )
    results: dict[int, Decision | Exception] = {}
    client = Client(settings=settings, agent_id="it-ops-agent")
    run_id = time.strftime("%H%M%S")
    try:
        waiters = []
        for n, step in enumerate(SCENARIO):
            fields = {
                k: v for k, v in step.items() if k not in ("action", "params", "review", "silence")
            }
            rid = client.submit(
                step["action"],
                step["params"],
                id=f"demo-{run_id}-{n}",
                requested_by=REQUESTER,
                session_id=f"demo-{run_id}",
                **fields,
            )
            _say(f"\nagent -> {step['action']} {step['params']}  (id {rid})")
            waiter = threading.Thread(target=_wait, args=(client, rid, n, results), daemon=True)
            waiter.start()
            waiters.append(waiter)
            record = _until_stored(service, rid)
            verdict = record.verdict
            _say(
                f"  policy: {verdict.kind.value}, risk {verdict.risk.value}, rule "
                f"{verdict.rule}: {verdict.reason}"
            )
            if record.state.terminal:
                waiter.join(10)
                _report(results.pop(n, None))
                continue
            if interactive:
                who = _who_may_decide(service, record, tokens)
                _say(
                    f"  pending: `hitl show {rid}`; decide it with\n"
                    f"    HITL_URL={url} HITL_TOKEN=${who.upper()} hitl approve {rid}"
                )
                continue
            if step.get("silence"):
                _say(f"  ... nobody answers within timeout_s={step['timeout_s']}s")
            for act, who, reason, params in step.get("review", []):
                _review(service, rid, act, who, reason, params)
            waiter.join(20)
            _report(results.pop(n, None))
            if step["action"] == "refund" and n == len(SCENARIO) - 1:
                _say("\n" + describe(service.store.get(rid)))
        if interactive:
            _say("\nRequests are pending. Ctrl-C to stop the service (`hitl server stop` after).")
            with contextlib.suppress(KeyboardInterrupt):
                while any(w.is_alive() for w in waiters):
                    time.sleep(0.5)
                    for n in list(results):
                        _report(results.pop(n, None))
        ok = _verify_audit(settings, service)
        _say("\nDone. Try: hitl audit verify / hitl audit export audit.jsonl")
        return 0 if ok else 1
    finally:
        client.close()
        service.request_stop()
        serving.join(10)
        service.stop_intake()
        stop_worker(worker)
        if server is not None and started_here and not interactive:
            server.stop()
            _say("== embedded server stopped (its AOF keeps the data for next time)")


def _wait(client: Client, rid: str, n: int, results: dict[int, Decision | Exception]) -> None:
    try:
        decision = client.wait(rid, timeout=3600)
        if not decision.approved:
            raise ApprovalRejected(decision)
        results[n] = decision
    except HitlError as exc:
        results[n] = exc
    except Exception:  # the demo is shutting down under a still-waiting agent
        return


def _until_stored(service: Any, rid: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = service.store.find(rid)
        if record is not None:
            return record
        time.sleep(0.01)
    raise HitlError(f"the intake did not store {rid} within {timeout}s")


def _review(
    service: Any, rid: str, act: str, who: str, reason: str, params: dict[str, Any] | None
) -> None:
    entry = getattr(service.authority, "reviewer", lambda _u: None)(who)
    name = getattr(entry, "display_name", "") or who
    reviewer = Reviewer(user_id=who, display_name=name, channel="api")
    cmd: dict[str, Callable[[], Any]] = {
        "approve": lambda: service.decider.approve(rid, reviewer, reason),
        "reject": lambda: service.decider.reject(rid, reviewer, reason),
        "modify": lambda: service.decider.modify(rid, reviewer, params or {}, reason),
    }
    shown = f"HITL_TOKEN=${who.upper()} hitl {'approve' if act == 'modify' else act} {rid}"
    shown += "".join(f" --param {k}={v}" for k, v in (params or {}).items())
    shown += f' --reason "{reason}"' if reason else ""
    time.sleep(0.3)
    try:
        result = cmd[act]()
        _say(f"  $ {shown}\n    -> {result.message}")
    except RefusedAttempt as exc:
        _say(f"  $ {shown}\n    -> refused: {exc}")


def _issue_tokens(service: Any, url: str) -> dict[str, str]:
    """A one-day token per sample reviewer, made by the code behind `hitl tokens create`."""
    from hitl.handlers.tokens import Directory, issue
    from hitl.queue.tokens import TokenRecords

    authority = service.authority
    directory = authority if isinstance(authority, Directory) else None
    records = TokenRecords(service.store)
    tokens: dict[str, str] = {}
    _say("== reviewer tokens (as `hitl tokens create NAME --expires 1` makes them); paste:")
    _say(f"export HITL_URL={url}")
    for who in REVIEWERS:
        try:
            token, _ = issue(records, service.keyring, directory, who, actor="demo", expires_days=1)
        except HitlError as exc:  # a custom policy without the sample people
            _say(f"# no token for {who}: {exc}")
            continue
        tokens[who] = token
        _say(f"export {who.upper()}={token}")
    _say("then e.g.: HITL_TOKEN=$BOB hitl pending --mine / HITL_TOKEN=$BOB hitl approve ID")
    return tokens


def _show_inbox(service: Any, url: str, interactive: bool) -> None:
    """The inbox's address and a demo reviewer's one-time sign-in link (``hitl inbox login``)."""
    from hitl.cli_inbox import link_url
    from hitl.handlers.sessions import issue_link
    from hitl.handlers.tokens import Directory
    from hitl.queue.sessions import WebRecords

    authority = service.authority
    directory = authority if isinstance(authority, Directory) else None
    _say(f"== web inbox: {url}/inbox (stats at {url}/inbox/stats, Prometheus at {url}/metrics)")
    try:
        link = issue_link(
            WebRecords(service.store), service.keyring, directory, DEMO_REVIEWER, actor="demo",
            minutes=60,
        )  # fmt: skip
    except HitlError as exc:  # a custom policy without the sample people
        _say(f"# no sign-in link for {DEMO_REVIEWER}: {exc}")
        return
    _say(f"   sign in as {DEMO_REVIEWER} (a manager), once, within the hour: {link_url(url, link)}")
    if interactive:
        _say(f"   others: HITL_URL={url} hitl inbox login NAME   (alice .. frank)")
    else:
        _say("   (this scripted run ends in seconds: `make demo-inbox` keeps the requests pending)")


def _who_may_decide(service: Any, record: Any, tokens: dict[str, str]) -> str:
    """A sample reviewer whose token the policy accepts for this request (for the hint)."""
    for who in tokens:
        if service.authority.can_decide(record.verdict, who, record.request.requested_by):
            return who
    return next(iter(tokens), "YOU")


def _report(result: Decision | Exception | None) -> None:
    if isinstance(result, Decision):
        modified = f" (modified from {result.original_params})" if result.modified else ""
        _say(f"  agent <- {result.outcome.value}: runs with {result.params}{modified}")
    elif isinstance(result, ApprovalRejected):
        _say(f"  agent <- ApprovalRejected: {result}")
    elif result is not None:
        _say(f"  agent <- error: {result}")


def _verify_audit(settings: Settings, service: Any) -> bool:
    from hitl.queue.checkpoints import Checkpointer, verify_store

    anchor = settings.anchor()
    Checkpointer(service.store, settings.signing_keys(), anchor).checkpoint()
    report = verify_store(service.store, anchor.read(), settings.verify_keys())
    _say(f"\naudit chain: {report}")
    return report.ok
