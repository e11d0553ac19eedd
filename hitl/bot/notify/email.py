"""Email through SMTP (``aiosmtplib``): a plain message, text and simple HTML, with the card's
facts (:class:`~hitl.bot.cards.CardView`) and Approve / Reject links to a confirmation page.

The HTML is one column of headings, paragraphs and a table, no images, no scripts, so that a
screen reader and a text-only client read the same thing as the text part::

    notifier = EmailNotifier(settings)     # HITL_SMTP_HOST, HITL_SMTP_FROM, HITL_SMTP_TLS ...
    await notifier.send(message)           # -> Sent(address="bob@example.com")
"""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from hitl.bot.cards import CardView, card_view, format_time, format_value
from hitl.models import RequestRecord
from hitl.queue.deliveries import Delivery

from .base import Message, NotifyError, Sent
from .settings import NotifySettings

__all__ = ["EmailNotifier", "render_email"]

MAX_PARAMS = 20


def _facts(view: CardView) -> list[tuple[str, str]]:
    facts = [
        ("Request", view.request_id),
        ("Action", view.action),
        ("Risk", view.risk.value),
        ("Requested by", view.requested_by or "-"),
        ("Agent", view.agent_id or "-"),
        ("Status", view.status),
        ("Escalation", view.escalation),
    ]
    if view.deadline is not None:
        facts.append(("Decide by", format_time(view.deadline)))
    if view.user_request:
        facts.append(("The user asked", view.user_request))
    if view.reasoning:
        facts.append(("Agent's reasoning", view.reasoning))
    for name, value in list(view.params.items())[:MAX_PARAMS]:
        facts.append((f"Parameter {name}", format_value(value)))
    return facts


def render_email(message: Message, sender: str) -> EmailMessage:
    """The email for ``message``: subject, a text part and an HTML alternative."""
    view = card_view(message.record)
    person = message.person
    dry = " (dry run)" if view.dry_run else ""
    mail = EmailMessage()
    mail["Subject"] = f"[hitl] Approval needed{dry}: {view.title} ({view.risk.value} risk)"
    mail["From"] = sender
    mail["To"] = person.email if person is not None and person.email else ""
    mail["Message-ID"] = make_msgid(domain="hitl")
    mail["Auto-Submitted"] = "auto-generated"
    facts = _facts(view)
    approve, reject = message.links.get("approve", ""), message.links.get("reject", "")
    lines = [f"Hello {person.name}," if person is not None else "Hello,", ""]
    if message.text:
        lines += [message.text, ""]
    lines += [f"An AI agent asks for approval ({message.what}): {view.title}", ""]
    lines += [f"{k}: {v}" for k, v in facts]
    lines += [
        "",
        "Each link opens a confirmation page; nothing happens until you confirm there.",
        f"Approve: {approve}",
        f"Reject: {reject}",
        "",
        "The links are yours alone, work once, and expire. Do not forward this email.",
    ]
    mail.set_content("\n".join(lines))
    rows = "".join(
        f'<tr><th scope="row" align="left">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>'
        for k, v in facts
    )
    intro = html.escape(message.text) if message.text else ""
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(view.title)}</title></head><body>"
        f"<h1>Approval needed: {html.escape(view.title)}</h1>"
        + (f"<p>{intro}</p>" if intro else "")
        + f"<p>An AI agent asks for approval ({html.escape(message.what)}).</p>"
        f"<table>{rows}</table>"
        "<p>Each link opens a confirmation page; nothing happens until you confirm there.</p>"
        f'<p><a href="{html.escape(approve)}">Approve</a> &middot; '
        f'<a href="{html.escape(reject)}">Reject</a></p>'
        "<p>The links are yours alone, work once, and expire. Do not forward this email.</p>"
        "</body></html>"
    )
    mail.add_alternative(body, subtype="html")
    return mail


class EmailNotifier:
    """Sends ``email:`` targets through the configured SMTP server."""

    kind = "email"

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, message: Message) -> Sent:
        person = message.person
        if person is None or not person.email:
            raise NotifyError("the reviewer has no email address in the directory", retry=False)
        s = self.settings
        mail = render_email(message, s.smtp_from)
        try:
            await aiosmtplib.send(
                mail,
                hostname=s.smtp_host,
                port=s.smtp_port,
                username=s.smtp_user or None,
                password=s.smtp_password or None,
                use_tls=s.smtp_tls == "tls",
                start_tls=s.smtp_tls == "starttls",
                cert_bundle=s.smtp_ca_file or None,
                timeout=s.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise NotifyError(
                f"the SMTP server refused {person.email}: {exc}", retry=False
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"SMTP {s.smtp_host}:{s.smtp_port}: {exc}") from exc
        return Sent(address=person.email, ref=str(mail["Message-ID"]))

    async def decided(self, record: RequestRecord, delivery: Delivery) -> Sent | None:
        return None
