"""What the notifiers send, and the pieces they are built from: the email and the SMS text,
Twilio's signature, the Jira comment, decision-link tokens, the settings."""

from __future__ import annotations

import pytest

from hitl.bot.notify import Contact, Message, NotifySettings
from hitl.bot.notify.email import render_email
from hitl.bot.notify.jira import decision_comment
from hitl.bot.notify.sms import render_sms, twilio_signature
from hitl.errors import ConfigError
from hitl.handlers.links import LinkRefused, issue_link, read_link
from hitl.keys import KeyRing
from hitl.models import (
    ApprovalRequest,
    Decision,
    NotifyTarget,
    Outcome,
    RequestRecord,
    Reviewer,
    Risk,
    State,
    Verdict,
    VerdictKind,
)

RING = KeyRing.generate()
BOB = Contact("bob", "Bob Brown", email="bob@example.com", phone="+15550000002")


def record(summary: str = "Stop i-1", **changes: object) -> RequestRecord:
    request = ApprovalRequest(
        id="r-1", action="stop_instance", params={"instance_id": "i-1"}, summary=summary,
        requested_by="alice",
    )  # fmt: skip
    verdict = Verdict(kind=VerdictKind.REVIEW, risk=Risk.HIGH)
    base = RequestRecord(
        request=request, verdict=verdict, created_at=1_900_000_000.0, params=request.params
    )
    return base.model_copy(update=changes)


def message(rec: RequestRecord, kind: str = "email", **links: str) -> Message:
    target = NotifyTarget.model_validate({"kind": kind, "target": "user:bob"})
    return Message(rec, target, "escalation level 2 of 3", "Nobody answered.", BOB, links)


def test_twilio_signature_matches_twilios_documented_example() -> None:
    """The worked example of Twilio's webhook-security guide."""
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert "0/KCTR6DLpKmkAf8muzZqo1nDgQ=" == twilio_signature("12345", url, params)
    assert "0/KCTR6DLpKmkAf8muzZqo1nDgQ=" != twilio_signature("12345", url, {**params, "To": "+1"})


def test_email_has_a_text_and_an_escaped_html_part_with_both_links() -> None:
    """The facts in both parts; a hostile summary is text in the HTML, never markup."""
    hostile = '<script>alert(1)</script><a href="https://evil">click</a>'
    mail = render_email(
        message(record(hostile), approve="https://h/a", reject="https://h/r"), "hitl@x"
    )
    assert "bob@example.com" == mail["To"] and "(high risk)" in mail["Subject"]
    text, html = (p.get_content() for p in mail.iter_parts())
    assert "Approve: https://h/a" in text and "Reject: https://h/r" in text
    assert "Parameter instance_id: i-1" in text and "Nobody answered." in text
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="https://evil"' not in html and 'href="https://h/r"' in html


def test_sms_is_short_with_the_risk_and_the_page_link() -> None:
    """One text: why, the summary (cut), the risk and the link."""
    body = render_sms(message(record("x" * 300), "sms", page="https://h/p"))
    assert body.startswith("hitl: approval needed (escalated to you): ")
    assert "Risk: high" in body and body.endswith("https://h/p") and len(body) < 220


def test_jira_comment_names_outcome_reviewers_reason_and_changes() -> None:
    """The ADF comment carries what the ticket needs to know."""
    decision = Decision(
        request_id="r-1", outcome=Outcome.APPROVED, params={"instance_id": "i-2"},
        original_params={"instance_id": "i-1"}, modified=True, reason="the other one",
        reviewers=[Reviewer(user_id="bob", display_name="Bob Brown", channel="sms")],
    )  # fmt: skip
    doc = decision_comment(record(state=State.APPROVED, decision=decision))
    assert ("doc", 1) == (doc["type"], doc["version"])
    words = str(doc)
    assert "Outcome: approved" in words and "Bob Brown (bob, via sms)" in words
    assert "Reason: the other one" in words and "Modified instance_id: i-1 -> i-2" in words


def test_link_tokens_verify_only_with_the_services_keys() -> None:
    """A link reads back with the keyring's public keys; another keyring's link is forged."""
    token = issue_link(RING, request_id="r-1", reviewer_id="bob", act="any", via="sms",
                       expires_at=2e9)  # fmt: skip
    claims = read_link(token, RING.public())
    assert ("r-1", "bob", "any", "sms") == (claims.rid, claims.sub, claims.act, claims.via)
    other = issue_link(KeyRing.generate(), request_id="r-1", reviewer_id="bob", act="any",
                       via="sms", expires_at=2e9)  # fmt: skip
    for bad, reason in ((other, "bad_signature"), ("hitl_lxyz", "malformed"), ("x", "malformed")):
        with pytest.raises(LinkRefused) as info:
            read_link(bad, RING.public())
        assert reason == info.value.reason


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pairs are parsed; a provider is enabled only when its settings are complete."""
    monkeypatch.setenv("HITL_PUBLIC_URL", "https://hitl.example.com/")
    monkeypatch.setenv("HITL_PAGERDUTY_ROUTING_KEYS", "ops=K1, db=K2")
    monkeypatch.setenv("HITL_SMTP_HOST", "smtp.example.com")
    settings = NotifySettings.from_env()
    assert {"ops": "K1", "db": "K2"} == settings.pagerduty_routing_keys
    assert "https://hitl.example.com" == settings.public_url
    assert settings.pagerduty_enabled and not settings.email_enabled and not settings.sms_enabled
    monkeypatch.setenv("HITL_PAGERDUTY_ROUTING_KEYS", "ops")
    with pytest.raises(ConfigError, match="HITL_PAGERDUTY_ROUTING_KEYS must be name=value"):
        NotifySettings.from_env()
    monkeypatch.setenv("HITL_PAGERDUTY_ROUTING_KEYS", "ops=K1")
    monkeypatch.setenv("HITL_SMTP_TLS", "sometimes")
    with pytest.raises(ConfigError, match="HITL_SMTP_TLS"):
        NotifySettings.from_env()
