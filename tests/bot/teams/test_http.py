"""Teams over HTTP: ``POST /api/messages`` on the service's aiohttp app, a local stand-in for the
Bot Framework connector, and the Slack scenarios repeated in Teams."""

from __future__ import annotations

from hitl.models import State
from tests.bot.teams.conftest import APPROVALS, TeamsHarness


async def test_a_card_is_posted_in_slack_and_teams_and_approved_in_teams(
    teams: TeamsHarness,
) -> None:
    """A request is posted to #approvals in both; alice approves in Teams; the invoke answers
    with the decided card and every copy (Slack's too) is updated."""
    record = await teams.submit_and_post()
    conversation, message = teams.teams_card(record)
    assert APPROVALS == conversation
    posted = teams.connector.sent(APPROVALS)[-1]
    assert "approve" in str(posted.cards[0])
    answer = await teams.click("alice", "approve", record.id, message=message)
    assert ("application/vnd.microsoft.card.adaptive", 200) == (
        answer["type"],
        answer["statusCode"],
    )
    assert "Approved by Alice Adams" in str(answer["value"])
    assert State.APPROVED == teams.store.get(record.id).state
    await teams.connector.wait_for(
        lambda: teams.connector.updated(APPROVALS, message), what="the Teams copy updated"
    )
