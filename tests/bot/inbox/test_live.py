"""Live updates: a decision made elsewhere (the API, as the CLI and Slack's handlers write the
same record) reaches an open inbox page as a server-sent event."""

from __future__ import annotations

import http.client
import json

from tests.api_server import ApiServer
from tests.bot.inbox.conftest import Refund, SignedIn


def test_a_decision_made_through_the_api_is_streamed(
    api: ApiServer, signed_in: SignedIn, refund: Refund
) -> None:
    """The events stream of a signed-in page carries the change of r-1 to approved."""
    refund("r-1")
    bob = signed_in("bob")
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=20)
    cookie = "; ".join(f"{k}={v}" for k, v in bob.cookies.items())
    conn.request("GET", "/inbox/events", headers={"Cookie": cookie})
    response = conn.getresponse()
    assert (200, "text/event-stream") == (response.status, response.getheader("Content-Type"))
    assert b"retry: 2000\n" == response.readline()  # subscribed before the decision
    status, _, _ = api.call("POST", "/requests/r-1/approve", api.token("frank"), {})
    assert 200 == status
    change = None
    while change is None:
        line = response.readline()
        if line.startswith(b"data: "):
            data = json.loads(line[6:])
            change = data if data["request_id"] == "r-1" and data["state"] != "pending" else None
    conn.close()
    assert "approved" == change["state"]


def test_events_need_a_session(api: ApiServer) -> None:
    """Without a session the stream is not opened (the sign-in page instead)."""
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=20)
    conn.request("GET", "/inbox/events")
    response = conn.getresponse()
    assert 303 == response.status
    conn.close()
