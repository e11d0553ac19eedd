"""With credentials configured, ``POST /api/messages`` takes only activities the Bot Framework
signed: a missing, malformed or wrongly signed token is a 401 and nothing happens.

There is no internet here, so Microsoft's signing keys are stood in for: the key set the SDK
would download from login.botframework.com is put in its cache, holding a key of the test's.
A token signed with that key is accepted (so the refusals below are about the signature, not
about an SDK that refuses everything); one signed with another key under the same key id is not.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from botframework.connector.auth import AuthenticationConstants, JwtTokenExtractor
from botframework.connector.auth.jwt_token_extractor import _OpenIdMetadata
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from hitl.config import Settings
from hitl.handlers import Authority
from hitl.queue.conversations import ConversationBook
from hitl.queue.store import Store
from tests.bot.slack_server import MockSlack
from tests.bot.teams.conftest import TENANT, TeamsHarness, start_teams, teams_settings
from tests.bot.teams.connector import MockConnector

APP_ID = "00000000-0000-4000-8000-0000000a9910"
KID = "bf-test-key"
BOT_FRAMEWORK = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(key: Any, service_url: str, **claims: Any) -> str:
    now = datetime.datetime.now(datetime.UTC)
    body = {"iss": AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER, "aud": APP_ID,
            "serviceurl": service_url, "nbf": now - datetime.timedelta(minutes=1),
            "exp": now + datetime.timedelta(minutes=10), **claims}  # fmt: skip
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": KID})


@pytest.fixture
def bot_framework_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Bot Framework's key set, as the SDK caches it after downloading it."""
    metadata = _OpenIdMetadata(AuthenticationConstants.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL)
    jwk = json.loads(RSAAlgorithm.to_jwk(BOT_FRAMEWORK.public_key()))
    metadata.keys = [{**jwk, "kid": KID, "endorsements": ["msteams"]}]
    metadata.last_updated = datetime.datetime.now()
    monkeypatch.setitem(JwtTokenExtractor.metadataCache, metadata.url, metadata)


@pytest.fixture
async def secured(
    settings: Settings,
    store: Store,
    mock_slack: MockSlack,
    connector: MockConnector,
    authority: Authority,
    bot_framework_keys: None,
) -> AsyncIterator[TeamsHarness]:
    """The service with Teams credentials configured (single tenant, a client secret)."""
    teams = teams_settings(auth_disabled=False, app_id=APP_ID, tenant_id=TENANT,
                           app_password="s3cret")  # fmt: skip
    h, runner = await start_teams(settings, store, mock_slack, connector, authority, teams)
    try:
        yield h
    finally:
        await h.http.close()
        await runner.cleanup()


def install(h: TeamsHarness) -> dict[str, Any]:
    return h.activity("installationUpdate", "bob", "a:bob", action="add")


def stored(h: TeamsHarness) -> str | None:
    return ConversationBook(h.store).conversation_of(user="9a6b1c2d-0000-4000-8000-000000000b0b")


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "forged"],
)  # fmt: skip
async def test_unsigned_or_wrongly_signed_requests_get_401(
    secured: TeamsHarness, authorization: str
) -> None:
    """No token, a malformed one, or one signed with another key: 401, nothing stored."""
    body = install(secured)
    if authorization == "forged":
        authorization = "Bearer " + token(ATTACKER, secured.connector.url)
    headers = {"Authorization": authorization} if authorization else {}
    status, answer = await secured.post(body, headers)
    assert (401, {"error": "unauthorized"}) == (status, answer)
    assert stored(secured) is None


async def test_a_token_for_another_bot_gets_401(secured: TeamsHarness) -> None:
    """A genuine Bot Framework token meant for another app id is refused too."""
    forged = token(BOT_FRAMEWORK, secured.connector.url, aud="another-bot")
    status, _ = await secured.post(install(secured), {"Authorization": f"Bearer {forged}"})
    assert 401 == status
    assert stored(secured) is None


async def test_a_signed_request_is_accepted(secured: TeamsHarness) -> None:
    """The control: the same activity with a token the Bot Framework signed is handled."""
    good = token(BOT_FRAMEWORK, secured.connector.url)
    status, _ = await secured.post(install(secured), {"Authorization": f"Bearer {good}"})
    assert 201 == status
    assert "a:bob" == stored(secured)


async def test_another_tenant_is_ignored(secured: TeamsHarness) -> None:
    """A signed activity from another tenant (the app is single-tenant) registers nothing."""
    good = token(BOT_FRAMEWORK, secured.connector.url)
    body = install(secured)
    body["conversation"]["tenantId"] = "another-tenant"
    body["channelData"]["tenant"]["id"] = "another-tenant"
    status, _ = await secured.post(body, {"Authorization": f"Bearer {good}"})
    assert 201 == status
    assert stored(secured) is None
