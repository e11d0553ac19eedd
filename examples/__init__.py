"""Runnable examples of the framework integrations (docs/integrations.md).

Each runs against a real hitl (``hitl serve``, or ``hitl demo``'s embedded server) with a
scripted model, so that it needs no API key; swap the scripted model for a real one. The tests
in tests/integrations/ run these same files.
"""
