"""Jira Cloud (REST API v3): an issue per request whose policy names ``jira:<PROJECT>``, and the
decision on it as a comment and a transition.

- At review: ``POST /rest/api/3/issue`` opens an issue in the project (summary, an ADF
  description with the card's facts). A request whose context carries ``jira_issue: OPS-123``
  (a change ticket that exists already) is linked to that issue instead; the key must belong to
  the policy's project, so an agent cannot make hitl write on any issue it likes.
- At the decision: ``POST /rest/api/3/issue/{key}/comment`` with the outcome, the reviewers, the
  reason and any modified params (an Atlassian Document Format body); then, when
  ``HITL_JIRA_TRANSITIONS`` names a transition for the outcome, ``GET .../transitions`` and
  ``POST .../transitions`` to move the issue.

Basic auth with the account's email and an API token (``HITL_JIRA_USER``, ``HITL_JIRA_TOKEN``)::

    notifier = JiraNotifier(settings)
    await notifier.send(message)                 # -> Sent(status="sent", ref="OPS-7")
    await notifier.decided(record, delivery)     # comment + transition
"""

from __future__ import annotations

import re
from typing import Any

from hitl.bot.cards import card_view, format_value, param_changes
from hitl.models import RequestRecord
from hitl.queue.deliveries import Delivery

from .base import Message, NotifyError, Sent
from .http import JsonClient, basic_auth
from .settings import NotifySettings

__all__ = ["CONTEXT_KEY", "JiraNotifier", "adf"]

CONTEXT_KEY = "jira_issue"
"""The request context key that names an existing issue (``OPS-123``)."""
ISSUE_KEY = re.compile(r"^([A-Z][A-Z0-9_]{1,31})-[1-9][0-9]{0,9}$")


def adf(*paragraphs: str, bullets: list[str] | None = None) -> dict[str, Any]:
    """An Atlassian Document Format document: paragraphs, then a bullet list."""
    content: list[dict[str, Any]] = [
        {"type": "paragraph", "content": [{"type": "text", "text": p}]} for p in paragraphs if p
    ]
    if bullets:
        content.append(
            {
                "type": "bulletList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {"type": "paragraph", "content": [{"type": "text", "text": b}]}
                        ],
                    }
                    for b in bullets
                ],
            }
        )
    return {"type": "doc", "version": 1, "content": content}


def decision_comment(record: RequestRecord) -> dict[str, Any]:
    """The comment's ADF body: outcome, reviewers, reason, modified params."""
    decision = record.decision
    view = card_view(record)
    if decision is None:
        return adf(f"hitl: {view.status}")
    who = [
        f"{r.display_name or r.user_id} ({r.user_id}, via {r.channel})" for r in decision.reviewers
    ]
    bullets = [f"Outcome: {decision.outcome.value}", f"Reviewers: {', '.join(who) or 'policy'}"]
    bullets.append(f"Reason: {decision.reason or '-'}")
    if decision.modified:
        for change in param_changes(decision.original_params or {}, decision.params):
            bullets.append(
                f"Modified {change.name}: {format_value(change.before)} -> "
                f"{format_value(change.after)}"
            )
    bullets.append(f"Request: {record.id} (policy {decision.policy_version or '-'})")
    return adf(f"hitl decision on “{view.title}”: {view.status}", bullets=bullets)


class JiraNotifier:
    """Opens or links issues for ``jira:`` targets and records decisions on them."""

    kind = "jira"

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        auth = basic_auth(settings.jira_user, settings.jira_token)
        self.client = JsonClient("Jira", settings.timeout_s, headers=auth)
        self.api = settings.jira_url + "/rest/api/3"
        self._commented: set[tuple[str, str]] = set()
        """(issue, request) whose comment is posted: a retried transition does not repeat it."""

    async def start(self) -> None:
        await self.client.start()

    async def stop(self) -> None:
        await self.client.stop()

    async def send(self, message: Message) -> Sent:
        record = message.record
        project = message.target.target
        existing = record.request.context.get(CONTEXT_KEY)
        if existing is not None:
            match = ISSUE_KEY.match(str(existing))
            if match is None or match.group(1) != project:
                raise NotifyError(
                    f"the request's context names Jira issue {str(existing)[:40]!r}, which is "
                    f"not an issue of project {project}",
                    retry=False,
                )
            return Sent(status="linked", ref=str(existing), address=str(existing))
        view = card_view(record)
        facts = [
            f"Request: {record.id}",
            f"Action: {view.action}",
            f"Risk: {view.risk.value}",
            f"Requested by: {view.requested_by or '-'}",
            f"Agent: {view.agent_id or '-'}",
        ]
        facts += [f"{k}: {format_value(v)}" for k, v in list(view.params.items())[:20]]
        body = {
            "fields": {
                "project": {"key": project},
                "summary": f"Approval: {view.title}"[:255],
                "issuetype": {"name": self.settings.jira_issue_type},
                "description": adf(view.reasoning or view.title, bullets=facts),
                "labels": ["hitl", f"risk-{view.risk.value}"],
            }
        }
        answer = await self.client.call("POST", f"{self.api}/issue", body, expect=(201,))
        key = answer.get("key") if isinstance(answer, dict) else None
        if not key:
            raise NotifyError(f"Jira opened no issue: {answer}", retry=False)
        return Sent(status="sent", ref=str(key), address=str(key))

    async def decided(self, record: RequestRecord, delivery: Delivery) -> Sent | None:
        key = delivery.ref
        url = f"{self.api}/issue/{key}"
        if (key, record.id) not in self._commented:
            body = {"body": decision_comment(record)}
            await self.client.call("POST", f"{url}/comment", body, expect=(201,))
            self._commented.add((key, record.id))
        wanted = self.settings.jira_transitions.get(record.state.value)
        if wanted:
            answer = await self.client.call("GET", f"{url}/transitions")
            options = answer.get("transitions", []) if isinstance(answer, dict) else []
            found = next(
                (t for t in options if str(t.get("name", "")).lower() == wanted.lower()), None
            )
            if found is None:
                names = ", ".join(str(t.get("name")) for t in options) or "none"
                raise NotifyError(
                    f"{key} has no transition {wanted!r} now (it has: {names}); the comment "
                    "was added",
                    retry=False,
                )
            move = {"transition": {"id": str(found["id"])}}
            await self.client.call("POST", f"{url}/transitions", move, expect=(204, 200))
        return Sent(status="sent", ref=key, address=key)
