"""``hitl feedback``: what reviewers taught an agent, and the preferences it suggests.

::

    hitl feedback show --agent support-bot --action refund      # newest first
    hitl feedback suggest --policy policy.yaml                  # proposed preferences (YAML)
    hitl feedback accept learned-support-bot-refund --policy policy.yaml

``suggest`` only proposes; nothing changes until a person runs ``accept``, which adds the
entry under ``preferences:`` in the policy file (comments kept) after checking that the file
still loads. ``hitl serve`` picks the change up like any policy edit.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from hitl.errors import InvalidRequest, NotFound

__all__ = ["add_subparser"]


def _print(args: argparse.Namespace, human: str, data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False) if args.json else human)


def _store(args: argparse.Namespace) -> Any:
    from hitl.config import Settings
    from hitl.queue.connection import open_store

    return open_store(Settings.from_env(), signer=False)


def _policy_file(args: argparse.Namespace) -> Path:
    from hitl.policies import DEFAULT_PATH

    named = args.policy or os.environ.get("HITL_POLICY")
    return Path(named) if named else DEFAULT_PATH


def cmd_show(args: argparse.Namespace) -> int:
    from hitl.models import FeedbackEntry

    store = _store(args)
    raw = store.redis.lrange(store.keys.feedback(args.agent, args.action), 0, args.limit - 1)
    entries = [FeedbackEntry.model_validate_json(item) for item in raw]
    lines = []
    for e in entries:
        change = f" {e.original_params} -> {e.params}" if e.modified else ""
        by = ", ".join(e.reviewers)
        lines.append(
            f"{e.request_id}  {e.outcome.value:<8} {e.risk.value:<8} {by}: {e.reason}{change}"
        )
    _print(
        args,
        "\n".join(lines) or f"no feedback for {args.agent} / {args.action}",
        [e.model_dump(mode="json") for e in entries],
    )
    return 0


def _suggestions(args: argparse.Namespace) -> list[tuple[Any, str | None]]:
    from hitl.handlers.learning import effect, feedback_lists, suggest_all

    text = _policy_file(args).read_text()
    found = suggest_all(feedback_lists(_store(args)), args.min)
    return [(s, effect(text, s)) for s in found]


def cmd_suggest(args: argparse.Namespace) -> int:
    rows = _suggestions(args)
    useful = [s for s, why in rows if why is None]
    human = []
    for s, why in rows:
        head = f"# {s.name}: {s.approvals} approvals in a row ({s.risk.value} risk)"
        human.append(head + (f" -- skipped: {why}" if why else ""))
        if why is None:
            human.append(s.yaml().rstrip())
    if useful:
        human.append(f"# accept one with: hitl feedback accept NAME --policy {_policy_file(args)}")
    _print(
        args,
        "\n".join(human) or "no suggestions (no repeated plain approvals of low/medium risk)",
        [s.entry() | {"approvals": s.approvals, "skipped": why} for s, why in rows],
    )
    return 0


def cmd_accept(args: argparse.Namespace) -> int:
    from hitl.handlers.learning import accept

    if not (args.policy or os.environ.get("HITL_POLICY")):
        raise InvalidRequest("name the policy file to change: --policy FILE (or HITL_POLICY)")
    path = _policy_file(args)
    chosen = next((s for s, why in _suggestions(args) if s.name == args.name), None)
    if chosen is None:
        raise NotFound(f"no suggestion named {args.name!r} (see `hitl feedback suggest`)")
    text = accept(path.read_text(), chosen, source=str(path))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    _print(args, f"added preference {chosen.name} to {path}", chosen.entry())
    return 0


def add_subparser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    p = sub.add_parser("feedback", help="what reviewers decided per agent; learned preferences")
    fsub = p.add_subparsers(dest="feedback_command", required=True)
    s = fsub.add_parser("show", parents=[common], help="one agent's feedback for one action")
    s.add_argument("--agent", required=True)
    s.add_argument("--action", required=True)
    s.add_argument("--limit", type=int, default=50)
    s.set_defaults(func=cmd_show)
    policy = argparse.ArgumentParser(add_help=False)
    policy.add_argument("--policy", help="policy file (default: $HITL_POLICY, else the shipped)")
    policy.add_argument("--min", type=int, default=3, help="approvals in a row needed (3)")
    g = fsub.add_parser("suggest", parents=[common, policy], help="proposed preferences")
    g.set_defaults(func=cmd_suggest)
    a = fsub.add_parser("accept", parents=[common, policy], help="add one to the policy file")
    a.add_argument("name")
    a.set_defaults(func=cmd_accept)
