"""Agent frameworks meet hitl where they run: one module per framework, each an optional extra.

``hitl.integrations.mcp`` (``pip install 'hitl-bot[mcp]'``): ``hitl mcp``, an MCP server any
MCP-capable agent or IDE can ask for approval, and ``hitl mcp guard``, which wraps another MCP
server so that its risky tools ask hitl before they run. See docs/integrations.md.

Every integration is agent-side: it holds the agent's Redis credential and the service's public
key, never a signing key, and reads decisions only through :class:`hitl.AsyncClient`, which
verifies them.
"""
