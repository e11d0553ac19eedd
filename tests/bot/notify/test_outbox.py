"""The outbox through the running service: retries, failures, fallback, Jira links, Twilio
callbacks, and that no provider ever holds up a card or a decision."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import redis

from hitl.bot.notify.oncall import PagerDutyOncall
from hitl.bot.notify.sms import STATUS_PATH, twilio_signature
from hitl.client import Client
from hitl.config import Settings
from hitl.models import State
from hitl.queue.deliveries import Deliveries, Delivery
from hitl.queue.intake import IntakeConsumer
from tests.bot.notify.rig import Rig, notify_rig
from tests.bot.notify.standins import PD_API_TOKEN, TOKEN
from tests.scenarios.helpers import audit_entries, drain, wait_until

POLICY = """
roles: {engineering_manager: ""}
reviewers:
  - {id: alice, display_name: Alice Adams, slack_id: U0ALICE, phone: "+15550000009",
     roles: [engineering_manager]}
  - {id: erin, slack_id: U0ERIN, phone: "+15550000001", roles: [engineering_manager]}
  - {id: bob, display_name: Bob Brown, slack_id: U0BOB, phone: "+15550000002",
     email: bob@example.com, roles: [engineering_manager]}
schedules:
  primary: {members: [erin]}
tools: {page_me: high, ticket: high, text_me: high, self_text: high, text_oncall: high}
rules:
  - {name: pages, action: page_me, destination: [oncall:primary, pagerduty:billing, sms:bob]}
  - {name: tickets, action: ticket, destination: [oncall:primary, jira:OPS]}
  - {name: texts, action: text_me, destination: [oncall:primary, sms:bob, email:bob]}
  - {name: self, action: self_text, destination: [oncall:primary, sms:alice, email:bob]}
  - {name: oncall, action: text_oncall, destination: [oncall:primary, sms:oncall:primary]}
"""


@pytest.fixture
def rig(settings: Settings, r: redis.Redis) -> Iterator[Rig]:
    with notify_rig(settings, r, POLICY) as running:
        yield running


@pytest.fixture
def client(settings: Settings) -> Iterator[Client]:
    with Client(settings=settings, agent_id="ops-agent") as c:
        yield c


def deliveries(rig: Rig, rid: str, kind: str) -> list[Delivery]:
    return [d for d in Deliveries(rig.store).list(rid) if d.kind == kind]


def settled(rig: Rig, rid: str, kind: str, status: str) -> Delivery:
    found = wait_until(
        lambda: [d for d in deliveries(rig, rid, kind) if d.status == status],
        what=f"a {status} {kind} delivery",
    )
    return found[0]


def kinds(rig: Rig, rid: str) -> list[str]:
    return [e["kind"] for e in audit_entries(rig.store.redis) if e["request_id"] == rid]


def test_a_flaky_provider_is_retried_until_it_answers(rig: Rig, client: Client) -> None:
    """Two 500s, then a 201: one SMS, three tries recorded, nothing audited as failed."""
    rig.providers.fail_sms = 2
    rid = rig.submit(client, "text_me")
    sent = settled(rig, rid, "sms", "sent")
    assert (3, "+15550000002") == (sent.attempts, sent.address)
    assert 1 == len(rig.providers.sms)
    assert "notification_failed" not in kinds(rig, rid)


def test_an_unconfigured_service_fails_at_once_and_falls_back(rig: Rig, client: Client) -> None:
    """pagerduty:billing has no routing key: one try, audited, and the next target (sms:bob)
    is told; the SMS was due anyway, so it is sent once."""
    rid = rig.submit(client, "page_me")
    failed = settled(rig, rid, "pagerduty", "failed")
    assert 1 == failed.attempts and "HITL_PAGERDUTY_ROUTING_KEYS" in failed.error
    settled(rig, rid, "sms", "sent")
    assert [] == rig.providers.events
    entries = [e for e in audit_entries(rig.store.redis) if e["request_id"] == rid]
    fallback = wait_until(
        lambda: [e for e in audit_entries(rig.store.redis) if e["kind"] == "notification_fallback"],
        what="the fallback audited",
    )[0]
    assert "pagerduty:billing" == fallback["details"]["failed"]
    assert "notification_failed" in [e["kind"] for e in entries]
    assert 1 == len(rig.providers.sms)


def test_jira_issue_in_the_context_is_linked_and_commented(rig: Rig, client: Client) -> None:
    """A request naming OPS-42 links it (no new issue) and the decision is commented there,
    once, though the transition needed a second try."""
    rid = rig.submit(client, "ticket", {"jira_issue": "OPS-42"})
    linked = settled(rig, rid, "jira", "linked")
    assert ("OPS-42", {}) == (linked.ref, rig.providers.issues)
    rig.providers.fail_transitions = 1
    bob = rig.api.token("bob")
    status, _, _ = rig.api.call("POST", f"/requests/{rid}/reject", bob, {"reason": "not now"})
    assert 200 == status
    comment = wait_until(lambda: rig.providers.comments.get("OPS-42"), what="the comment")[0]
    assert "Outcome: rejected" in str(comment) and "Reason: not now" in str(comment)
    assert ["41"] == wait_until(lambda: rig.providers.transitions.get("OPS-42"), what="moved")
    assert 1 == len(rig.providers.comments["OPS-42"])
    assert 2 == settled(rig, rid, "jira", "sent").attempts


def test_an_agent_cannot_point_jira_at_another_project(rig: Rig, client: Client) -> None:
    """jira_issue HR-1 under a jira:OPS policy: refused, audited, nothing written to Jira."""
    rid = rig.submit(client, "ticket", {"jira_issue": "HR-1"})
    failed = settled(rig, rid, "jira", "failed")
    assert "not an issue of project OPS" in failed.error
    assert ({}, {}) == (rig.providers.issues, rig.providers.comments)
    wait_until(lambda: "notification_failed" in kinds(rig, rid), what="the failure audited")


def report(rig: Rig, sid: str, status: str) -> int:
    """A status callback for message ``sid``, signed as Twilio signs it."""
    params = {"MessageSid": sid, "MessageStatus": status}
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(TOKEN, rig.api.url + STATUS_PATH, params),
    }
    raw = urlencode(params).encode()
    return rig.api.call("POST", "/notify/twilio/status", raw=raw, headers=headers)[0]


def test_a_late_sent_report_does_not_undo_delivered(rig: Rig, client: Client) -> None:
    """Twilio's reports may arrive out of order: 'delivered' stays delivered."""
    rid = rig.submit(client, "text_me")
    sms = settled(rig, rid, "sms", "sent")
    assert (204, 204) == (report(rig, sms.ref, "delivered"), report(rig, sms.ref, "sent"))
    assert ["delivered"] == [d.status for d in deliveries(rig, rid, "sms")]
    assert 400 == report(rig, sms.ref, "exploded")


def test_twilio_undelivered_callback_fails_over(rig: Rig, client: Client) -> None:
    """A signed 'undelivered' report: recorded, audited, and the next target (email) is told."""
    rid = rig.submit(client, "text_me")
    sms = settled(rig, rid, "sms", "sent")
    wait_until(lambda: rig.providers.mailbox.messages, what="the email sent at review")
    params = {"MessageSid": sms.ref, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    url = rig.api.url + STATUS_PATH
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(TOKEN, url, params),
    }
    raw = urlencode(params).encode()
    assert 204 == rig.api.call("POST", "/notify/twilio/status", raw=raw, headers=headers)[0]
    failed = settled(rig, rid, "sms", "failed")
    assert "30003" in failed.error
    wait_until(lambda: "notification_fallback" in kinds(rig, rid), what="the fallback audited")
    unknown = {**params, "MessageSid": "SMnope"}
    headers["X-Twilio-Signature"] = twilio_signature(TOKEN, url, unknown)
    raw = urlencode(unknown).encode()
    assert 404 == rig.api.call("POST", "/notify/twilio/status", raw=raw, headers=headers)[0]


def test_the_requester_is_never_texted_their_own_request(rig: Rig, client: Client) -> None:
    """sms:alice on alice's request means nobody: audited, and the next target is told."""
    rid = rig.submit(client, "self_text")
    failed = settled(rig, rid, "sms", "failed")
    assert "means nobody" in failed.error and [] == rig.providers.sms
    assert "bob@example.com" == settled(rig, rid, "email", "sent").address


def test_a_hanging_provider_holds_up_no_card_and_no_decision(rig: Rig, client: Client) -> None:
    """Twilio does not answer: the card is posted and bob decides through the API meanwhile;
    the SMS is recorded once Twilio answers."""
    rig.providers.holding = True
    try:
        rid = rig.submit(client, "text_me")
        wait_until(lambda: rig.providers.held, what="the SMS in flight")
        wait_until(lambda: rig.slack.posts, what="the card")
        status, body, _ = rig.api.call(
            "POST", f"/requests/{rid}/approve", rig.api.token("bob"), {"reason": "ok"}
        )
        assert (200, "approved") == (status, body["state"])
        assert ["queued"] == [d.status for d in deliveries(rig, rid, "sms")]
    finally:
        rig.providers.holding = False
    settled(rig, rid, "sms", "sent")
    assert State.APPROVED == rig.store.get(rid).state


def test_on_call_comes_from_pagerduty_when_configured(
    settings: Settings, r: redis.Redis, client: Client
) -> None:
    """PagerDuty says bob is primary (the file says erin): the card and the SMS go to bob; a
    PagerDuty user who is not a reviewer is ignored, and without an answer the file holds."""
    schedules = {"primary": "PSCHED1"}
    with notify_rig(
        settings, r, POLICY, pagerduty_api_token=PD_API_TOKEN, pagerduty_schedules=schedules
    ) as rig:
        people = rig.service.dispatcher.people
        assert isinstance(people, PagerDutyOncall) and {} == people.on_call
        rig.providers.on_call["PSCHED1"] = [
            {"email": "Bob@Example.com", "summary": "Bob Brown"},
            {"email": "stranger@example.com", "summary": "Not A Reviewer"},
            {"email": "erin@example.com", "summary": "Erin", "level": 2},
        ]
        assert rig.api.loop is not None
        asyncio.run_coroutine_threadsafe(people.refresh(), rig.api.loop).result(10)
        assert {"primary": ["bob"]} == people.on_call
        rid = rig.submit(client, "text_oncall")
        assert "+15550000002" == settled(rig, rid, "sms", "sent").address
        assert ("bob",) == wait_until(lambda: rig.slack.posts, what="the card")[0][1].people
        assert [] == rig.providers.refused


def test_the_sweep_tells_what_was_stored_while_nobody_dispatched(rig: Rig, client: Client) -> None:
    """A request stored by an intake without a dispatcher: the sweep sends its SMS, once."""
    lone = IntakeConsumer(rig.store, rig.service.classify, group="elsewhere", block_ms=0)
    lone.ensure_group()
    rid = client.submit("text_me", {"instance_id": "i-9"}, summary="Stored elsewhere")
    drain(lone)
    lone.close()
    assert rig.api.loop is not None
    for _ in range(2):
        asyncio.run_coroutine_threadsafe(rig.service.dispatcher.sweep(), rig.api.loop).result(10)
        settled(rig, rid, "sms", "sent")
    assert 1 == len(rig.providers.sms)
