"""What hitl reads from Slack's payloads, as pydantic models (the boundary is checked once).

Slack sends far more than this; unknown fields are ignored, missing ones that matter fail the
validation, and the listener answers with a clear message instead of a ``KeyError``::

    click = BlockAction.model_validate(body)
    click.user.id, click.action.value, click.channel_id, click.message_ts
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActionItem",
    "BlockAction",
    "CardMeta",
    "SlackUser",
    "SlashCommand",
    "ViewSubmission",
]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SlackUser(_Loose):
    id: str
    username: str = ""
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or self.username


class ActionItem(_Loose):
    action_id: str
    value: str = ""
    block_id: str = ""


class _Ref(_Loose):
    id: str = ""


class _Container(_Loose):
    type: str = ""
    message_ts: str = ""
    channel_id: str = ""
    is_ephemeral: bool = False


class _Message(_Loose):
    ts: str = ""


class _State(_Loose):
    values: dict[str, dict[str, dict[str, Any]]] = Field(default_factory=dict)


class BlockAction(_Loose):
    """A ``block_actions`` payload: a button click on a card or an ephemeral list."""

    user: SlackUser
    actions: list[ActionItem] = Field(min_length=1)
    trigger_id: str = ""
    response_url: str = ""
    channel: _Ref | None = None
    container: _Container = Field(default_factory=_Container)
    message: _Message | None = None
    state: _State = Field(default_factory=_State)
    """The message's inputs at the time of the click (the digest's ticked checkboxes)."""

    def selected(self, action_id: str) -> list[str]:
        """Values of every ticked option of the checkbox groups named ``action_id``."""
        out: list[str] = []
        for block in self.state.values.values():
            element = block.get(action_id) or {}
            for option in element.get("selected_options") or []:
                if isinstance(option, dict) and option.get("value"):
                    out.append(str(option["value"]))
        return out

    @property
    def action(self) -> ActionItem:
        return self.actions[0]

    @property
    def channel_id(self) -> str:
        if self.channel is not None and self.channel.id:
            return self.channel.id
        return self.container.channel_id

    @property
    def message_ts(self) -> str:
        if self.message is not None and self.message.ts:
            return self.message.ts
        return self.container.message_ts


class _View(_Loose):
    id: str = ""
    callback_id: str = ""
    private_metadata: str = ""
    state: _State = Field(default_factory=_State)


class ViewSubmission(_Loose):
    """A ``view_submission`` payload: the Reject or Modify modal was submitted."""

    user: SlackUser
    view: _View

    @property
    def values(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self.view.state.values

    @property
    def meta(self) -> CardMeta:
        return CardMeta.loads(self.view.private_metadata)


class SlashCommand(_Loose):
    """A slash command (form fields)."""

    user_id: str
    user_name: str = ""
    command: str = "/hitl"
    text: str = ""
    channel_id: str = ""
    response_url: str = ""
    trigger_id: str = ""


class CardMeta(_Loose):
    """What a modal carries in ``private_metadata``: the request and where the click came from."""

    id: str
    channel: str = ""
    ts: str = ""
    params_hash: str = ""
    """A hash of the params the form was built from (a concurrent modification is noticed)."""
    digest_id: str = ""
    """For the "Reject all" form of a digest: which digest."""

    def dumps(self) -> str:
        return json.dumps(self.model_dump(exclude_defaults=True), separators=(",", ":"))

    @classmethod
    def loads(cls, text: str) -> CardMeta:
        return cls.model_validate_json(text or "{}")
