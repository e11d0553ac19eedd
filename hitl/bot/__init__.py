"""Channel adapters: Slack (Bolt), Teams (botbuilder), the web inbox; card renderers."""
