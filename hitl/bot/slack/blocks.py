"""Block Kit messages for hitl: the approval card and the ``/hitl`` lists. Pure functions.

A card stays inside Block Kit's limits by construction: at most 14 blocks whatever the request
holds (40 parameters, 20 KB of reasoning), every text shortened to fit, and what is shortened is
one click away in a modal (``Full reasoning``, ``All 40 parameters``: see :mod:`.modals`)::

    blocks = card_blocks(record)                  # list of dicts for chat.postMessage/update
    text = card_text(record)                      # the notification / fallback text

Cards are posted and updated at volume, so they are built as the plain dicts
``slack_sdk.models`` would produce (about three times faster); the tests parse and validate every
card the app sends with ``slack_sdk.models``. The modals are built with the models themselves.

User content is escaped (``&``, ``<``, ``>``) so a request cannot ping ``<!channel>`` or forge a
link, and shortening never cuts an escape in half.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from hitl.bot.cards import (
    RISK_EMOJI,
    CardView,
    card_view,
    format_time,
    format_value,
    outcome_words,
)
from hitl.models import RequestRecord, State
from hitl.queue.digest import Digest, DigestItem

__all__ = [
    "APPROVE",
    "DIGEST_ALL",
    "DIGEST_PICK",
    "DIGEST_REJECT",
    "DIGEST_REJECT_VIEW",
    "DIGEST_SELECTED",
    "FULL",
    "MAX_MESSAGE_BLOCKS",
    "MAX_TEXT",
    "MAX_VIEW_BLOCKS",
    "MODIFY",
    "MODIFY_VIEW",
    "PAGE",
    "PARTS",
    "REJECT",
    "REJECT_VIEW",
    "SHOW",
    "MAX_BLOCK_ID",
    "MAX_INPUT",
    "MAX_LABEL",
    "MAX_MODAL_TITLE",
    "MAX_OPTION",
    "MAX_OPTION_VALUE",
    "MAX_OPTIONS",
    "REASON_BLOCK",
    "VALUE",
    "card_blocks",
    "card_text",
    "clip",
    "clip_md",
    "esc",
    "notice_blocks",
    "notice_text",
    "decided_line",
    "digest_blocks",
    "digest_text",
    "pending_blocks",
    "slack_date",
    "was_clipped",
]

# -- Block Kit's limits (https://docs.slack.dev/reference/block-kit) -----------------------------

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_TEXT = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_HEADER = 150
MAX_BUTTON = 75
MAX_MODAL_TITLE = 24
MAX_OPTION = 75
MAX_OPTION_VALUE = 150
MAX_OPTIONS = 100
MAX_LABEL = 2000
MAX_INPUT = 3000
MAX_CONFIRM_TEXT = 300
MAX_BLOCK_ID = 255

# -- what a card shows before "show all" -------------------------------------------------------

SHOW_REASONING = 800
SHOW_CONTEXT = 600
SHOW_PARAMS_LINES = 15
SHOW_PARAMS_CHARS = 1800
SHOW_VALUE = 150
SHOW_PLAN_STEPS = 8
SHOW_PLAN_CHARS = 1200
SHOW_CHANGES = 10
SHOW_REASON = 600

# -- action ids and callback ids ---------------------------------------------------------------

APPROVE = "hitl_approve"
REJECT = "hitl_reject"
MODIFY = "hitl_modify"
FULL = "hitl_full"
SHOW = "hitl_show"
PAGE = "hitl_page"
REJECT_VIEW = "hitl_reject_view"
MODIFY_VIEW = "hitl_modify_view"
DIGEST_PICK = "hitl_digest_pick"
DIGEST_SELECTED = "hitl_digest_selected"
DIGEST_ALL = "hitl_digest_all"
DIGEST_REJECT = "hitl_digest_reject"
DIGEST_REJECT_VIEW = "hitl_digest_reject_view"
DIGEST_SHOWN = 100
"""Digest items with a checkbox (10 checkbox groups of 10); "Approve all" acts on every item."""
REASON_BLOCK = "reason"
VALUE = "v"

PARTS = {
    "reasoning": "Reasoning",
    "context": "Context",
    "params": "Parameters",
    "plan": "Plan",
    "changes": "Changes",
    "summary": "Summary",
}
"""The parts of a card that can be shortened, and the title of the modal that shows them whole."""


# -- text helpers ------------------------------------------------------------------------------

_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,3}$")


def esc(text: str) -> str:
    """Escape mrkdwn control characters (``&``, ``<``, ``>``) in user content."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int, ellipsis: str = "…") -> str:
    """``text`` cut to at most ``limit`` characters, ending with ``ellipsis`` when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ellipsis))] + ellipsis


def clip_md(text: str, limit: int, ellipsis: str = "…") -> str:
    """Escaped ``text`` in at most ``limit`` characters, never ending in half an escape."""
    escaped = esc(text)
    if len(escaped) <= limit:
        return escaped
    cut = _PARTIAL_ENTITY.sub("", escaped[: max(0, limit - len(ellipsis))])
    return cut + ellipsis


def was_clipped(text: str, limit: int) -> bool:
    return len(esc(text)) > limit


def slack_date(ts: float) -> str:
    """A date Slack shows in each reader's own time zone (UTC text as the fallback)."""
    return f"<!date^{int(ts)}^{{date_short_pretty}} {{time}}|{format_time(ts)}>"


# Cards are posted and updated at volume, so they are plain dicts built by these constructors
# (the shapes ``slack_sdk.models`` produces; the tests parse every card with those models).

Json = dict[str, Any]


def _md(text: str) -> Json:
    return {"type": "mrkdwn", "text": text}


def _plain(text: str, limit: int) -> Json:
    return {"type": "plain_text", "text": clip(text, limit) or " ", "emoji": True}


def _section(
    text: str | None = None, *, fields: list[Json] | None = None, accessory: Json | None = None
) -> Json:
    block: Json = {"type": "section"}
    if text is not None:
        block["text"] = _md(clip(text, MAX_TEXT))
    if fields is not None:
        block["fields"] = fields[:MAX_FIELDS]
    if accessory is not None:
        block["accessory"] = accessory
    return block


def _header(text: str) -> Json:
    return {"type": "header", "text": _plain(text, MAX_HEADER)}


def _context(text: str) -> Json:
    return {"type": "context", "elements": [_md(clip(text, MAX_TEXT))]}


def _actions(elements: list[Json], block_id: str | None = None) -> Json:
    block: Json = {"type": "actions", "elements": elements}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def _button(
    text: str, action_id: str, value: str, style: str | None = None, confirm: Json | None = None
) -> Json:
    button: Json = {
        "type": "button",
        "text": _plain(text, MAX_BUTTON),
        "action_id": action_id,
        "value": value,
    }
    if style is not None:
        button["style"] = style
    if confirm is not None:
        button["confirm"] = confirm
    return button


def _confirm(title: str, text: str, confirm: str, deny: str, style: str) -> Json:
    return {
        "title": _plain(title, 100),
        "text": _plain(text, MAX_CONFIRM_TEXT),
        "confirm": _plain(confirm, 30),
        "deny": _plain(deny, 30),
        "style": style,
    }


def _full_button(part: str, request_id: str, label: str) -> Json:
    return _button(label, FULL, f"{part}|{request_id}")


# -- the card ----------------------------------------------------------------------------------


def card_text(record: RequestRecord) -> str:
    """The message's ``text``: what notifications and screen readers say. Slack parses it as
    mrkdwn (a notification would ping ``<!channel>``), so it is escaped like the blocks."""
    view = card_view(record)
    if view.open:
        return clip_md(f"{view.badge} {view.risk.value.upper()} approval needed: {view.title}", 300)
    return clip_md(f"{view.status}: {view.title}", 300)


def card_blocks(
    record: RequestRecord, *, notice: str = "", buttons: bool = True
) -> list[dict[str, Any]]:
    """The approval card for ``record`` in its current state (at most 14 blocks).

    ``notice`` is a line shown above the card (e.g. "Escalated to you"); ``buttons=False`` leaves
    the buttons out even while the request is pending.
    """
    view = card_view(record)
    rid = view.request_id
    blocks: list[Json] = []
    header = f"{view.badge} {view.risk.value.upper()} · {view.title}"
    blocks.append(_header(header))
    if notice:
        blocks.append(_section(clip_md(notice, 1000)))
    if len(header) > MAX_HEADER:
        blocks.append(_section("*Summary:* " + clip_md(view.title, SHOW_REASON)))
    if view.dry_run:
        blocks.append(
            _section(
                ":test_tube: *DRY RUN* - the agent will simulate this action; "
                "nothing is changed if you approve."
            )
        )
    blocks.append(_section(fields=_facts(view)))
    blocks.append(_section(_policy_line(view)))
    if view.user_request or view.context:
        blocks.append(_context_section(view))
    if view.reasoning:
        blocks.append(_long_section("reasoning", rid, "*Reasoning*\n", view.reasoning,
                                    SHOW_REASONING, "Full reasoning"))  # fmt: skip
    blocks.append(_params_section(view))
    if view.plan:
        blocks.append(_plan_section(view))
    blocks.append(_status_section(view))
    if view.open and buttons:
        blocks.append(_actions(_decision_buttons(view), block_id="hitl_actions"))
    footer = f"Request `{esc(rid)}` · requested {slack_date(view.created_at)}"
    if view.policy_version:
        footer += f" · policy `{clip_md(view.policy_version, 80)}`"
    blocks.append(_context(footer))
    return blocks


def notice_blocks(text: str, mentions: str = "") -> list[Json]:
    """A one-section message (thread replies, ephemeral answers): ``text`` escaped, then
    ``mentions`` (hitl's own ``<@U...>``, kept live)."""
    if not mentions:
        return [_section(clip_md(text, MAX_TEXT))]
    return [_section(f"{clip_md(text, MAX_TEXT - len(mentions) - 1)} {mentions}")]


def notice_text(text: str, mentions: str = "") -> str:
    """The top-level ``text`` of a notice: ``text`` escaped, then the live ``mentions``."""
    return f"{esc(text)} {mentions}".strip()


def _facts(view: CardView) -> list[Json]:
    def fact(name: str, value: str) -> Json:
        return _md(clip(f"*{name}*\n{value}", MAX_FIELD))

    facts = [
        fact("Action", f"`{clip_md(view.action, 140)}`"),
        fact("Agent", clip_md(view.agent_id or "-", 140)),
        fact("On behalf of", clip_md(view.requested_by or "-", 140)),
        fact("Session", clip_md(view.session_id or "-", 140)),
        fact("Confidence", view.confidence or "not given"),
        fact("Approvals", _approvals(view)),
        fact("Deadline", slack_date(view.deadline) if view.deadline else "none"),
        fact("Escalation", view.escalation),
    ]
    return facts


def _approvals(view: CardView) -> str:
    text = f"{len(view.approvers)} of {view.approvals_needed}"
    if view.roles:
        text += f" ({clip_md(' or '.join(view.roles), 120)})"
    return text


def _policy_line(view: CardView) -> str:
    rule = f"`{clip_md(view.rule, 120)}`" if view.rule else "no rule"
    reason = clip_md(view.rule_reason, SHOW_REASON) if view.rule_reason else "no reason given"
    return f"*Policy:* {rule} - {reason}"


def _long_section(part: str, rid: str, prefix: str, text: str, limit: int, label: str) -> Json:
    shown = clip_md(text, limit)
    accessory = _full_button(part, rid, label) if was_clipped(text, limit) else None
    return _section(prefix + shown, accessory=accessory)


def _context_section(view: CardView) -> Json:
    lines: list[str] = []
    clipped = False
    if view.user_request:
        quoted = clip_md(view.user_request, 400).replace("\n", "\n>")
        clipped = was_clipped(view.user_request, 400)
        lines.append(f"*User request*\n>{quoted}")
    if view.context:
        lines.append("*Context*")
        for key, value in view.context.items():
            text = format_value(value)
            clipped = clipped or was_clipped(text, 200) or len(str(key)) > 60
            lines.append(f"• {clip_md(str(key), 60)}: {clip_md(text, 200)}")
    text = "\n".join(lines)
    clipped = clipped or len(text) > SHOW_CONTEXT
    shown = _cut_lines(text, SHOW_CONTEXT)
    accessory = _full_button("context", view.request_id, "Full context") if clipped else None
    return _section(shown, accessory=accessory)


def _cut_lines(text: str, limit: int) -> str:
    """``text`` (already escaped) cut at a line boundary within ``limit``, marked when cut."""
    if len(text) <= limit:
        return text
    kept: list[str] = []
    size = 0
    for line in text.split("\n"):
        if size + len(line) + 1 > limit - 2:
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept) + "\n…"


def _params_section(view: CardView) -> Json:
    params = view.params
    if not params:
        return _section("*Parameters*\nnone")
    lines: list[str] = []
    size = 0
    clipped = False
    for name, value in params.items():
        line = f"• `{clip_md(name, 60)}`: {clip_md(format_value(value), SHOW_VALUE)}"
        if len(lines) >= SHOW_PARAMS_LINES or size + len(line) > SHOW_PARAMS_CHARS:
            clipped = True
            break
        clipped = clipped or was_clipped(format_value(value), SHOW_VALUE) or len(name) > 60
        lines.append(line)
        size += len(line) + 1
    more = len(params) - len(lines)
    if more:
        lines.append(f"_… and {more} more_")
    title = "*Parameters*" + (" (modified)" if view.changes and not view.open else "")
    if view.changes and view.open:
        title = "*Parameters* (modified by " + clip_md(", ".join(view.modified_by), 200) + ")"
    label = f"All {len(params)} parameters" if more else "Full values"
    accessory = _full_button("params", view.request_id, label) if clipped else None
    return _section(title + "\n" + "\n".join(lines), accessory=accessory)


def _plan_section(view: CardView) -> Json:
    lines: list[str] = []
    size = 0
    clipped = False
    for n, step in enumerate(view.plan, start=1):
        action = f" `{clip_md(step.action, 60)}`" if step.action else ""
        line = f"{n}.{action} {clip_md(step.description, 200)}".rstrip()
        if len(lines) >= SHOW_PLAN_STEPS or size + len(line) > SHOW_PLAN_CHARS:
            clipped = True
            break
        clipped = clipped or len(step.description) > 200 or bool(step.params)
        lines.append(line)
        size += len(line) + 1
    more = len(view.plan) - len(lines)
    if more:
        lines.append(f"_… and {more} more steps_")
    title = f"*Plan* ({len(view.plan)} steps; approving approves the whole plan)"
    accessory = _full_button("plan", view.request_id, "Full plan") if clipped else None
    return _section(title + "\n" + "\n".join(lines), accessory=accessory)


def _status_section(view: CardView) -> Json:
    lines = [f"*{clip_md(view.status, 600)}*"]
    if view.reason:
        lines.append("Reason: " + clip_md(view.reason, SHOW_REASON))
    clipped = was_clipped(view.reason, SHOW_REASON)
    if view.changes:
        lines.append("Changed parameters (before → after):")
        for change in view.changes[:SHOW_CHANGES]:
            before = "(unset)" if change.before is None else format_value(change.before)
            after = "(unset)" if change.after is None else format_value(change.after)
            lines.append(
                f"• `{clip_md(change.name, 60)}`: {clip_md(before, 80)} → {clip_md(after, 80)}"
            )
            clipped = clipped or len(before) > 80 or len(after) > 80
        if len(view.changes) > SHOW_CHANGES:
            lines.append(f"_… and {len(view.changes) - SHOW_CHANGES} more_")
            clipped = True
    accessory = _full_button("changes", view.request_id, "All changes") if clipped else None
    return _section(_cut_lines("\n".join(lines), MAX_TEXT), accessory=accessory)


def _decision_buttons(view: CardView, *, details: bool = False) -> list[Json]:
    rid = view.request_id
    confirm = None
    if view.critical:
        confirm = _confirm(
            "Approve a critical action?",
            f"{view.title} - this is CRITICAL risk and may not be reversible.",
            "Approve",
            "Cancel",
            "danger",
        )
    buttons = [_button("Approve", APPROVE, rid, style="primary", confirm=confirm)]
    if view.params or view.plan:
        buttons.append(_button("Modify", MODIFY, rid))
    buttons.append(_button("Reject", REJECT, rid, style="danger"))
    if details:
        buttons.append(_button("Details", SHOW, rid))
    return buttons


# -- /hitl pending -----------------------------------------------------------------------------


def pending_blocks(
    records: Sequence[RequestRecord], *, offset: int, total: int, page_size: int
) -> list[Json]:
    """One page of ``/hitl pending``: each request with its buttons, and paging buttons."""
    if not records:
        return notice_blocks("Nothing is waiting for you. :tada:")
    blocks: list[Json] = [
        _section(
            f"*{total} pending request{'s' if total != 1 else ''} you may decide* "
            f"(showing {offset + 1}-{offset + len(records)})"
        )
    ]
    for record in records:
        view = card_view(record)
        due = f" · due {slack_date(view.deadline)}" if view.deadline else ""
        blocks.append({"type": "divider"})
        blocks.append(
            _section(
                f"{view.badge} *{clip_md(view.title, 300)}*\n`{esc(view.request_id)}` · "
                f"{view.risk.value} · {clip_md(view.status, 300)}{due}"
            )
        )
        blocks.append(_actions(_decision_buttons(view, details=True)))
    nav: list[Json] = []
    if offset > 0:
        nav.append(_button("◂ Previous", PAGE, str(max(0, offset - page_size))))
    if offset + len(records) < total:
        nav.append(_button("Next ▸", PAGE, str(offset + page_size)))
    if nav:
        blocks.append(_actions(nav, block_id="hitl_nav"))
    return blocks


def decided_line(record: RequestRecord) -> str:
    """``Approved by Bob Brown at 2025-03-04 10:00Z`` (or the wait) for short answers."""
    view = card_view(record)
    if view.outcome is not None:
        names = ", ".join(view.decided_by)
        when = format_time(view.decided_at or 0.0)
        return f"{outcome_words(view.outcome)}{' by ' + names if names else ''} at {when}"
    return view.status


# -- digests -----------------------------------------------------------------------------------


def digest_text(digest: Digest) -> str:
    n = len(digest.items)
    return clip_md(f"{n} request{'s' if n != 1 else ''} to review in {digest.dest}", 300)


def _item_option(item: DigestItem) -> Json:
    two = f" · needs {item.approvals}" if item.approvals > 1 else ""
    return {
        "text": _plain(f"{RISK_EMOJI[item.risk]} {item.title}", MAX_OPTION),
        "value": item.request_id,
        "description": _plain(f"{item.risk.value} · {item.action}{two} · {item.request_id}", 75),
    }


def digest_blocks(digest: Digest, records: dict[str, RequestRecord | None]) -> list[Json]:
    """A digest: one checkbox per waiting request, "Approve selected", "Approve all N" and
    "Reject all"; requests decided since are listed with their outcome (at most 16 blocks)."""
    waiting = [
        i
        for i in digest.items
        if (r := records.get(i.request_id)) is not None and r.state is State.PENDING
    ]
    done = [i for i in digest.items if i not in waiting]
    n = len(digest.items)
    blocks: list[Json] = [
        _header(f"📋 {n} request{'s' if n != 1 else ''} to review"),
        _section(
            f"Gathered for *{clip_md(digest.dest, 200)}* so they do not bury the channel. Tick "
            "some and *Approve selected*, or act on all of them at once. Each one is still "
            "checked, decided and audited on its own."
        ),
    ]
    shown = waiting[:DIGEST_SHOWN]
    for k in range(0, len(shown), 10):
        group = {
            "type": "checkboxes",
            "action_id": DIGEST_PICK,
            "options": [_item_option(i) for i in shown[k : k + 10]],
        }
        blocks.append(_actions([group], block_id=f"pick:{k // 10}"))
    if len(waiting) > len(shown):
        more = len(waiting) - len(shown)
        blocks.append(_context(f"… and {more} more: *Approve all* and *Reject all* include them."))
    if done:
        lines = []
        for item in done:
            record = records.get(item.request_id)
            said = decided_line(record) if record is not None else "no longer exists"
            lines.append(f"• {clip_md(item.title, 80)} (`{esc(item.request_id)}`): {esc(said)}")
        blocks.append(_section(_cut_lines("\n".join(lines), MAX_TEXT)))
    if waiting:
        total = len(waiting)
        confirm = _confirm(
            f"Approve all {total}?",
            f"Each of the {total} requests is approved in your name (if you may decide it).",
            "Approve all",
            "Cancel",
            "primary",
        )
        buttons = [
            _button("Approve selected", DIGEST_SELECTED, digest.id),
            _button(f"Approve all {total}", DIGEST_ALL, digest.id, "primary", confirm),
            _button("Reject all", DIGEST_REJECT, digest.id, "danger"),
        ]
        blocks.append(_actions(buttons, block_id="hitl_digest_actions"))
    else:
        blocks.append(_section("*Every request in this digest has been decided.*"))
    blocks.append(_context(f"Digest `{esc(digest.id)}` · {slack_date(digest.created_at)}"))
    return blocks
