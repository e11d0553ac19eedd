"""The article's case study ("Enterprise IT Operations Agent") with notifiers, end to end.

The on-call engineer gets the card in chat and a Jira ticket is opened; nobody answers for 10
minutes (the secondary is told), nor for 20 (the engineering manager gets an SMS and a PagerDuty
incident). The manager approves through the SMS link's confirmation page; the incident is
resolved, the ticket gets the decision as a comment and a transition, and the waiting agent
gets the approval. The clock is a ManualClock, the scheduler's jobs run in rq's burst worker,
the service's HTTP app serves the confirmation page, and Twilio, PagerDuty, Jira and SMTP are
local stand-ins.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import redis

from hitl.bot.notify.sms import STATUS_PATH, twilio_signature
from hitl.cli import main
from hitl.client import Client
from hitl.config import Settings
from hitl.handlers.links import LINK_PREFIX, issue_link
from hitl.models import State
from hitl.queue.deliveries import Deliveries
from tests.bot.notify.rig import Rig, notify_rig
from tests.bot.notify.standins import TOKEN
from tests.scenarios.helpers import audit_entries, run_in_thread, wait_until


@pytest.fixture
def rig(settings: Settings, r: redis.Redis) -> Iterator[Rig]:
    with notify_rig(settings, r) as running:
        yield running


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(settings=settings, agent_id="it-ops-agent") as c:
        yield c


def sms_link(body: str) -> str:
    found = re.search(r"(http://\S+/api/v1/links/\S+)", body)
    assert found is not None, body
    return found.group(1)


def test_case_study_chain_ends_with_an_sms_approval(
    env: None, rig: Rig, client: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    """Slack silent 10 and 20 minutes; the manager's SMS and page; approval via the SMS link."""
    p = rig.providers
    rid = rig.submit(client)
    wait_until(lambda: rig.slack.posts, what="the card in chat")
    assert ("erin",) == rig.slack.posts[0][1].people
    issue = wait_until(lambda: list(p.issues), what="the Jira issue")[0]
    assert issue.startswith("OPS-") and "Approval: Stop production" in p.issues[issue]["summary"]

    rig.run_due(10)
    wait_until(lambda: len(rig.slack.posts) == 2, what="the secondary's card")
    assert ("dave",) == rig.slack.posts[1][1].people
    assert [] == p.sms and [] == p.events, "nobody is texted or paged at level 1"

    rig.run_due(20)
    text = wait_until(lambda: p.sms, what="the manager's SMS")[0]
    event = wait_until(lambda: p.events, what="the PagerDuty incident")[0]
    assert "+15550000002" == text["To"] and "Risk: high" in text["Body"]
    assert text["StatusCallback"] == rig.api.url + STATUS_PATH
    assert ("trigger", f"hitl-{rid}") == (event["event_action"], event["dedup_key"])

    # Twilio reports delivery, signed; a forged report changes nothing
    sid = wait_until(
        lambda: [d.ref for d in Deliveries(rig.store).list(rid) if d.kind == "sms" and d.ref],
        what="the SMS delivery recorded",
    )[0]
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC1"}
    good = twilio_signature(TOKEN, rig.api.url + STATUS_PATH, params)
    status, _, _ = rig.api.call("POST", "/notify/twilio/status", raw=urlencode(params).encode(),
                                headers={"Content-Type": "application/x-www-form-urlencoded",
                                         "X-Twilio-Signature": "forged"})  # fmt: skip
    assert 403 == status
    status = post_callback(rig, params, good)
    assert 204 == status

    link = sms_link(text["Body"])
    with run_in_thread(lambda: client.wait(rid, timeout=30)) as agent:
        status, html = rig.page("GET", link)
        assert 200 == status and "Bob Brown" in html and "Confirm: approve" in html
        assert State.PENDING == rig.store.get(rid).state, "a GET decided"
        status, html = rig.page(
            "POST", link, {"confirm": "yes", "outcome": "approve", "reason": "checked the loop"}
        )
        assert 200 == status, html
    decision = agent.value
    assert decision.approved and ["bob"] == [r.user_id for r in decision.reviewers]
    assert "sms" == decision.reviewers[0].channel

    resolve = wait_until(lambda: p.events[1:], what="the incident resolved")[0]
    assert ("resolve", f"hitl-{rid}") == (resolve["event_action"], resolve["dedup_key"])
    comment = wait_until(lambda: p.comments.get(issue), what="the decision comment")[0]
    words = str(comment)
    assert "Outcome: approved" in words and "Bob Brown (bob, via sms)" in words
    assert "Reason: checked the loop" in words
    assert ["31"] == wait_until(lambda: p.transitions.get(issue), what="the transition")
    assert [] == p.refused

    kinds = [e["kind"] for e in audit_entries(rig.store.redis) if e["request_id"] == rid]
    assert {"link_viewed", "link_used", "approved"} <= set(kinds)
    wait_until(
        lambda: len([d for d in Deliveries(rig.store).list(rid) if d.what == "decision"]) == 2,
        what="both follow-ups recorded",
    )
    assert 0 == main(["show", rid])
    shown = capsys.readouterr().out
    assert "sms:oncall:managers -> bob <+15550000002>" in shown and "delivered" in shown
    assert "pagerduty:ops -> ops" in shown and "resolved" in shown
    assert f"jira:OPS -> OPS <{issue}>" in shown


def post_callback(rig: Rig, params: dict[str, str], signature: str) -> int:
    status, _, _ = rig.api.call(
        "POST",
        "/notify/twilio/status",
        raw=urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    return status


def tamper(link: str, **changes: str) -> str:
    """The link with its payload edited (the signature kept): what a forger would send."""
    base, _, token = link.rpartition("/")
    body, _, sig = token[len(LINK_PREFIX) :].partition(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    data.update(changes)
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    edited = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return f"{base}/{LINK_PREFIX}{edited}.{sig}"


def test_misused_links_change_nothing_and_are_audited(rig: Rig, client: Client) -> None:
    """A GET, an unconfirmed POST, an expired link, a forged one, the requester's own link and
    a second use of a used link decide nothing; each is audited."""
    p = rig.providers
    rid = rig.submit(client)
    wait_until(lambda: rig.slack.posts and p.issues, what="the card and the Jira issue")
    rig.run_due(20)
    link = sms_link(wait_until(lambda: p.sms, what="the manager's SMS")[0]["Body"])
    ring = rig.service.keyring
    base = link.rpartition("/")[0]

    def refusals() -> list[str]:
        return [
            e["details"]["reason"]
            for e in audit_entries(rig.store.redis)
            if e["kind"] == "link_refused"
        ]

    assert 200 == rig.page("GET", link)[0]
    status, html = rig.page("POST", link, {"outcome": "approve"})  # no confirm=yes
    assert 400 == status and "not confirmed" in html
    expired = issue_link(ring, request_id=rid, reviewer_id="bob", act="any", via="sms",
                         expires_at=rig.clock() - 1)  # fmt: skip
    confirm = {"confirm": "yes", "outcome": "approve", "reason": "ok"}
    assert 403 == rig.page("POST", f"{base}/{expired}", confirm)[0]
    forged = tamper(link, sub="dave")
    assert 403 == rig.page("POST", forged, confirm)[0]
    own = issue_link(ring, request_id=rid, reviewer_id="alice", act="any", via="email",
                     expires_at=rig.clock() + 600)  # fmt: skip
    status, html = rig.page("POST", f"{base}/{own}", confirm)
    assert 403 == status and "no self-approval" in html
    assert State.PENDING == rig.store.get(rid).state, "a misused link decided"
    # sorted: entries of several audit chains carry no order between them
    assert ["bad_signature", "expired"] == sorted(refusals())
    refused = [e for e in audit_entries(rig.store.redis) if e["kind"] == "refused"]
    assert ["alice"] == [e["actor"] for e in refused]
    assert 1 == len([e for e in audit_entries(rig.store.redis) if e["kind"] == "link_viewed"])

    assert 200 == rig.page("POST", link, confirm)[0]
    assert State.APPROVED == rig.store.get(rid).state
    status, html = rig.page("POST", link, confirm)
    assert 403 == status and "already used" in html
    assert 403 == rig.page("GET", link)[0]
    assert ["bad_signature", "expired", "used", "used"] == sorted(refusals())
    decided = rig.store.get(rid).decision
    assert decided is not None and ["bob"] == [r.user_id for r in decided.reviewers]


def test_a_failed_sms_falls_back_to_email_and_its_reject_link_decides(
    rig: Rig, client: Client
) -> None:
    """Twilio fails every try: the failure is recorded and audited, the next target of the chain
    (email to bob) is told at once, and bob rejects through the email's Reject link."""
    p = rig.providers
    p.fail_sms = 99
    rid = rig.submit(client, "restart_service")
    mail = wait_until(lambda: p.mailbox.messages, what="the fallback email")[0]
    assert "bob@example.com" == mail["X-Envelope-To"]
    assert (
        mail["Subject"].startswith("[hitl] Approval needed: ") and "(high risk)" in mail["Subject"]
    )
    text, html = (part.get_payload(decode=True).decode() for part in mail.get_payload())
    assert "fallback for sms:user:bob" in text and "Parameter instance_id: i-0prod7" in text
    assert "<table>" in html and ">Reject</a>" in html
    sms = [d for d in Deliveries(rig.store).list(rid) if d.kind == "sms"]
    assert [("failed", 3)] == [(d.status, d.attempts) for d in sms]
    events = [e for e in audit_entries(rig.store.redis) if e["request_id"] == rid]
    failed = next(e for e in events if e["kind"] == "notification_failed")
    assert ("sms:user:bob", "bob") == (failed["details"]["target"], failed["details"]["to"])
    fallback = next(e for e in events if e["kind"] == "notification_fallback")
    assert "email:user:bob" == fallback["details"]["next"]

    reject = re.search(r"Reject: (\S+)", text)
    assert reject is not None
    status, page = rig.page("GET", reject.group(1))
    assert 200 == status and "Confirm: reject" in page and "Confirm: approve" not in page
    status, page = rig.page(
        "POST", reject.group(1), {"confirm": "yes", "outcome": "approve", "reason": "x"}
    )
    assert 403 == status and State.PENDING == rig.store.get(rid).state
    status, page = rig.page("POST", reject.group(1), {"confirm": "yes", "outcome": "reject"})
    assert 400 == status and "needs a reason" in page
    status, page = rig.page(
        "POST", reject.group(1), {"confirm": "yes", "outcome": "reject", "reason": "not at 2am"}
    )
    assert 200 == status, page
    decision = rig.store.get(rid).decision
    assert decision is not None and "rejected" == decision.outcome.value
    assert ("bob", "email") == (decision.reviewers[0].user_id, decision.reviewers[0].channel)
