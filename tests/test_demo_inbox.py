"""``hitl demo`` shows the inbox: its address and a one-time link that signs a reviewer in."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from hitl.demo import _show_inbox
from tests.api_server import ApiServer
from tests.bot.inbox.client import Browser


def test_demo_prints_the_inbox_and_a_working_sign_in_link(
    api: ApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed link signs bob in; the inbox then shows his name."""
    _show_inbox(api.service, api.url, interactive=True)
    out = capsys.readouterr().out
    assert f"== web inbox: {api.url}/inbox" in out
    found = re.search(r"(http://\S+/inbox/login/link\?t=(\S+))", out)
    assert found is not None, out
    browser = Browser(api.url)
    assert 303 == browser.sign_in_with_link(urllib.parse.unquote(found.group(2)))
    assert "Bob Brown" in browser.get("/inbox")[1]
