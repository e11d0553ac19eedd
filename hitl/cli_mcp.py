"""``hitl mcp``: the MCP server (stdio or streamable HTTP), and ``hitl mcp guard``.

::

    hitl mcp --agent-id support-bot                      # stdio, for an IDE's mcp.json
    hitl mcp --agent-id support-bot --transport http --port 8765   # http://127.0.0.1:8765/mcp
    hitl mcp guard --agent-id db-bot --risky drop_table,delete_rows -- my-db-mcp --flag

Both run as an agent: ``HITL_REDIS_URL`` (the agent's credential) and ``HITL_PUBLIC_KEY``.
Needs the extra: ``pip install 'hitl-bot[mcp]'``.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from hitl.errors import ConfigError, InvalidRequest

__all__ = ["add_subparser"]


def _client(args: argparse.Namespace) -> Any:
    from hitl.client import AsyncClient

    agent_id = args.agent_id or os.environ.get("HITL_AGENT_ID")
    if not agent_id:
        raise InvalidRequest("name the agent: --agent-id ID (or HITL_AGENT_ID)")
    return AsyncClient(agent_id=agent_id)


def _integration() -> Any:
    try:
        from hitl.integrations import mcp
    except ImportError as exc:
        raise ConfigError(
            f"the MCP integration needs its extra: pip install 'hitl-bot[mcp]' ({exc})"
        ) from None
    return mcp


def cmd_mcp(args: argparse.Namespace) -> int:
    server = _integration().build_server(_client(args))
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=args.host, port=args.port)
    return 0


def cmd_guard(args: argparse.Namespace) -> int:
    import anyio
    from mcp import StdioServerParameters

    integration = _integration()
    command = [c for c in args.upstream if c != "--"]
    if not command:
        raise InvalidRequest("name the MCP server to guard after --: hitl mcp guard ... -- CMD")
    risky = {name.strip() for name in args.risky.split(",") if name.strip()}
    if not risky:
        raise InvalidRequest("--risky needs at least one tool name (comma-separated)")
    upstream = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    server = integration.guard_server(upstream, risky, _client(args), timeout=args.timeout)
    anyio.run(integration.run_guard, server)
    return 0


def add_subparser(sub: Any) -> None:
    agent = argparse.ArgumentParser(add_help=False)
    agent.add_argument("--agent-id", help="the agent this server asks for (or $HITL_AGENT_ID)")
    p = sub.add_parser(
        "mcp", parents=[agent], help="MCP server: request_approval, get_decision, list_feedback"
    )
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1", help="http: the address to listen on")
    p.add_argument("--port", type=int, default=8765, help="http: the port (path /mcp)")
    p.set_defaults(func=cmd_mcp)
    msub = p.add_subparsers(dest="mcp_command")
    g = msub.add_parser(
        "guard", parents=[agent], help="wrap another MCP server: risky tools ask hitl first"
    )
    g.add_argument("--risky", required=True, help="comma-separated tool names to guard")
    g.add_argument(
        "--timeout", type=float, help="seconds to wait for each approval (default: the policy's)"
    )
    g.add_argument("upstream", nargs=argparse.REMAINDER, help="-- COMMAND ARGS of the server")
    g.set_defaults(func=cmd_guard)
