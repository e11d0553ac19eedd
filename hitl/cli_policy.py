"""``hitl policy``: check a policy file, explain a verdict, run the policy's test cases.

::

    hitl policy check  [FILE]                          # 0 valid, 2 invalid (file:line: field: ...)
    hitl policy explain [FILE] --request '{"action": "delete_volume"}' [--at 2025-03-04T22:00Z]
    hitl policy test   [FILE] [-v]                     # 0 all pass, 1 a case failed, 2 bad file

FILE defaults to ``$HITL_POLICY``, else the shipped default policy. ``--request`` takes JSON, or
``@path`` to read it from a file, or ``-`` to read standard input. Every command takes ``--json``
for machine-readable output. The lead's :mod:`hitl.cli` calls :func:`add_subparser`; this module
also runs alone: ``python -m hitl.cli_policy check policy.yaml``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import pydantic

from hitl.errors import ConfigError
from hitl.models import ApprovalRequest
from hitl.policies import Policy, load_policy, run_tests, test_file_for

__all__ = ["add_subparser", "cmd_check", "cmd_explain", "cmd_test", "main"]

OK, FAILED, USAGE = 0, 1, 2


def add_subparser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``policy`` with ``check``, ``explain`` and ``test`` to a ``hitl`` parser.

    Each sub-command sets ``func``: call ``args.func(args)`` to get the exit code.
    """
    policy = subparsers.add_parser(
        "policy",
        help="check, explain and test approval policies",
        description="Check a policy file, explain the verdict for a request, run its tests.",
    )
    commands = policy.add_subparsers(dest="policy_command", metavar="COMMAND", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "file",
            nargs="?",
            metavar="FILE",
            help="the policy file (default: $HITL_POLICY, else the shipped default policy)",
        )
        p.add_argument("--env", help="the deployment environment (default: $HITL_ENV, the file's)")
        p.add_argument("--json", action="store_true", help="print JSON instead of text")

    check = commands.add_parser(
        "check", help="validate a policy file", description="Validate a policy file."
    )
    common(check)
    check.set_defaults(func=cmd_check)

    explain = commands.add_parser(
        "explain",
        help="show the verdict for one request and why",
        description="Evaluate one request and explain the verdict in words.",
    )
    common(explain)
    explain.add_argument(
        "--request",
        "-r",
        required=True,
        metavar="JSON",
        help="the ApprovalRequest as JSON, @FILE to read it from a file, or - for stdin",
    )
    explain.add_argument(
        "--at",
        metavar="ISO_TIME",
        help="evaluate as of this time (default: now); without an offset, the policy's zone",
    )
    explain.set_defaults(func=cmd_explain)

    test = commands.add_parser(
        "test",
        help="run the test cases next to a policy (FILE_test.yaml)",
        description="Run the policy's test cases: a request in, the expected verdict out.",
    )
    common(test)
    test.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    test.set_defaults(func=cmd_test)


def _policy_path(args: argparse.Namespace) -> str | None:
    file: str | None = args.file or os.environ.get("HITL_POLICY") or None
    if file is not None and (name := Path(file).name).endswith(("_test.yaml", "_test.yml")):
        # `hitl policy test policy_test.yaml` means the policy next to it
        base, suffix = name.rsplit("_test", 1)
        file = str(Path(file).with_name(base + suffix))
    return file


def _load(args: argparse.Namespace, out: TextIO, err: TextIO) -> Policy | None:
    env = args.env or os.environ.get("HITL_ENV") or None
    try:
        return load_policy(_policy_path(args), env=env)
    except ConfigError as exc:
        if args.json:
            _dump({"ok": False, "errors": str(exc).splitlines()}, out)
        else:
            print(f"error: the policy is not valid:\n{exc}", file=err)
        return None


def _dump(data: Any, out: TextIO) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False), file=out)


def cmd_check(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Validate the file: 0 when it loads, 2 (with every problem's file:line) when not."""
    out, err = out or sys.stdout, err or sys.stderr
    policy = _load(args, out, err)
    if policy is None:
        return USAGE
    cfg = policy.config
    facts = {
        "rules": len(cfg.rules),
        "tools": len(cfg.tools),
        "reviewers": len(cfg.reviewers),
        "schedules": len(cfg.schedules),
        "escalations": len(cfg.escalations),
        "preferences": len(cfg.preferences),
        "tests": len(policy.tests),
    }
    if args.json:
        _dump({"ok": True, "source": policy.source, "version": policy.version, **facts}, out)
        return OK
    print(f"ok: {policy.source} is a valid policy", file=out)
    print(f"  version {policy.version}, environment {policy.env}", file=out)
    print("  " + ", ".join(f"{what}: {n}" for what, n in facts.items()), file=out)
    return OK


def _read_request(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    if text.startswith("@"):
        return Path(text[1:]).read_text(encoding="utf-8")
    return text


def _parse_at(text: str | None) -> datetime.datetime | None:
    if text is None:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def cmd_explain(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Print the verdict for ``--request`` and why; 2 for a bad file, request or time."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        raw = json.loads(_read_request(args.request))
        request = ApprovalRequest.model_validate(raw)
        at = _parse_at(args.at)
    except OSError as exc:
        print(f"error: cannot read the request: {exc}", file=err)
        return USAGE
    except json.JSONDecodeError as exc:
        print(f"error: --request is not valid JSON: {exc}", file=err)
        return USAGE
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(request)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        print(f"error: --request is not a valid approval request: {problems}", file=err)
        return USAGE
    except ValueError as exc:
        print(f"error: --at is not an ISO time such as 2025-03-04T22:00:00Z: {exc}", file=err)
        return USAGE
    policy = _load(args, out, err)
    if policy is None:
        return USAGE
    if at is None:
        at = datetime.datetime.now(datetime.UTC)
    verdict = policy.evaluate(request, now=at)
    notify = policy.resolve(verdict.destination, at) if verdict.destination is not None else []
    if args.json:
        _dump(
            {
                "verdict": verdict.model_dump(mode="json"),
                "notify": notify,
                "at": at.isoformat(),
                "explanation": policy.describe(verdict, at=at, requested_by=request.requested_by),
            },
            out,
        )
        return OK
    print(f"Request:     {request.action} {json.dumps(request.params)}", file=out)
    print(f"At:          {at.isoformat()}", file=out)
    for line in policy.describe(verdict, at=at, requested_by=request.requested_by):
        print(line, file=out)
    return OK


def cmd_test(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the cases in ``FILE_test.yaml``: 0 all pass, 1 any fails (or none exist), 2 bad file."""
    out, err = out or sys.stdout, err or sys.stderr
    policy = _load(args, out, err)
    if policy is None:
        return USAGE
    if not policy.tests:
        path = _policy_path(args)
        where = test_file_for(path) if path else None
        expected = where or "<policy name>_test.yaml next to the policy file"
        message = f"no test cases found (expected {expected})"
        if args.json:
            _dump({"ok": False, "passed": 0, "failed": 0, "error": message}, out)
        else:
            print(f"error: {message}", file=err)
        return FAILED
    results = run_tests(policy)
    failed = [r for r in results if not r.passed]
    if args.json:
        _dump(
            {
                "ok": not failed,
                "version": policy.version,
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "results": [
                    {"name": r.name, "passed": r.passed, "failures": r.failures} for r in results
                ],
            },
            out,
        )
        return FAILED if failed else OK
    for r in results:
        if r.passed and not args.verbose:
            continue
        print(f"{'PASS' if r.passed else 'FAIL'}: {r.name}", file=out)
        for failure in r.failures:
            print(f"    {failure}", file=out)
        if not r.passed and r.verdict is not None:
            print(f"    (rule {r.verdict.rule}: {r.verdict.reason})", file=out)
    if failed:
        print("-" * 60, file=out)
    print(
        f"{'FAIL' if failed else 'PASS'}: {len(results) - len(failed)}/{len(results)} "
        f"cases passed ({policy.source}, {policy.version})",
        file=out,
    )
    return FAILED if failed else OK


def main(argv: list[str] | None = None) -> int:
    """``python -m hitl.cli_policy check FILE`` (the same as ``hitl policy check FILE``)."""
    parser = argparse.ArgumentParser(prog="hitl", description="hitl policy tools")
    add_subparser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
