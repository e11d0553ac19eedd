"""A tiny MCP tool server for the guard tests: each tool call appends a line to a file."""

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
