"""A tiny MCP tool server to put behind ``hitl mcp guard``: each tool call appends a line to a
file, so you can see which ran.

    hitl mcp guard --agent-id db-bot --risky drop_table -- python examples/mcp_db_tools.py ran.txt

(as the command of an MCP server in your IDE's or agent's configuration): ``count_rows`` runs
at once; ``drop_table`` waits for a reviewer and runs with the params they approved.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mcp.server.mcpserver import MCPServer

LOG = Path(sys.argv[1])
server = MCPServer("db-tools")


def _ran(line: str) -> None:
    with LOG.open("a") as f:
        f.write(line + "\n")


@server.tool()
def drop_table(table: str) -> str:
    """Drop a table (irreversible)."""
    _ran(f"drop_table {table}")
    return f"dropped {table}"


@server.tool()
def count_rows(table: str) -> int:
    """Count the rows of a table (read-only)."""
    _ran(f"count_rows {table}")
    return 42


if __name__ == "__main__":
    server.run("stdio")
