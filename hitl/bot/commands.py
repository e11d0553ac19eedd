"""The reviewer commands every chat channel understands, parsed once: Slack's ``/hitl`` and the
Teams bot's text messages.

::

    parse("approve r-42 looks fine")    # Parsed("approve", "r-42", "looks fine")
    parse("reject r-42")                # Parsed("reject", usage="A rejection needs a reason. ...")
"""

from __future__ import annotations

from dataclasses import dataclass

from hitl.handlers.controls import CONTROL_USAGE

__all__ = ["USAGE", "Parsed", "help_text", "parse"]

USAGE = {
    "pending": "`/hitl pending` - the requests you may decide, with buttons",
    "show": "`/hitl show ID` - one request, its card and its state",
    "approve": "`/hitl approve ID [reason]` - approve (one vote under a two-person rule)",
    "reject": "`/hitl reject ID reason` - reject; the reason is required",
    **CONTROL_USAGE,
    "stats": "`/hitl stats` - what is waiting, by risk, and how the Slack channel is doing",
    "oncall": "`/hitl oncall` - who is on call now for each schedule",
    "help": "`/hitl help` - this list",
}


def help_text(command: str = "/hitl") -> str:
    lines = [f"*{command}* - human approval for AI agents"]
    lines += ["• " + text.replace("/hitl", command) for text in USAGE.values()]
    return "\n".join(lines)


@dataclass(frozen=True)
class Parsed:
    """A parsed command line: the subcommand and its arguments, or the usage to answer with."""

    name: str
    request_id: str = ""
    reason: str = ""
    usage: str = ""


def parse(text: str) -> Parsed:
    """``approve r-42 looks fine`` -> ``Parsed("approve", "r-42", "looks fine")``."""
    words = text.strip().split(None, 2)
    if not words:
        return Parsed("help")
    name = words[0].lower()
    rest = words[1:]
    if name not in USAGE:
        return Parsed("unknown", usage=f"Unknown subcommand `{words[0][:40]}`.")
    if name in CONTROL_USAGE:
        return Parsed(name, reason=" ".join(words))  # control_command parses and says usage
    if name in ("show", "approve", "reject"):
        if not rest:
            return Parsed(name, usage=f"Missing the request id. Usage: {USAGE[name]}")
        reason = rest[1] if len(rest) > 1 else ""
        if name == "reject" and not reason.strip():
            return Parsed(name, usage=f"A rejection needs a reason. Usage: {USAGE[name]}")
        if name == "show" and reason:
            return Parsed(name, usage=f"`show` takes one id. Usage: {USAGE[name]}")
        return Parsed(name, request_id=rest[0], reason=reason)
    if rest:
        return Parsed(name, usage=f"`{name}` takes no arguments. Usage: {USAGE[name]}")
    return Parsed(name)
