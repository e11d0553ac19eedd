"""The inbox end to end in real headless Chromium (Debian's ``chromium``, driven by Playwright
with ``executable_path``; nothing is downloaded): sign in with a one-time link, approve one
request, modify one after the browser refused a value, reject one with a reason, watch a
decision made elsewhere arrive without a reload; the blocked agents receive the decisions.
Screenshots of the inbox, a detail page and the stats page go to ``tests/artifacts/``."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from hitl.client import Client
from hitl.handlers.sessions import issue_link
from hitl.models import Decision, Outcome, State
from hitl.queue.intake import IntakeConsumer
from hitl.queue.sessions import WebRecords
from hitl.queue.store import Store
from tests.api_server import ApiServer
from tests.conftest import KEYRING
from tests.scenarios.helpers import drain, run_in_thread

CHROMIUM = os.environ.get("HITL_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"Debian's chromium is not installed at {CHROMIUM}: run `make browser` "
    "(apt-get install chromium) to run the inbox's browser tests",
)

SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "amount": {"type": "number", "minimum": 0, "maximum": 1000},
    },
    "required": ["order_id", "amount"],
}


@pytest.fixture
def page() -> Iterator[Any]:
    """A phone-sized page of headless Chromium."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        context = browser.new_context(viewport={"width": 412, "height": 915})
        context.set_default_timeout(15_000)
        yield context.new_page()
        context.close()
        browser.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"inbox-{name}.png"), full_page=True)


def test_review_in_the_browser(
    page: Any, api_env: ApiServer, pintake: IntakeConsumer, r: redis.Redis, store: Store
) -> None:
    """Bob signs in, approves, modifies after a validation error, rejects with a reason, and
    sees Frank's decision (made through the API) arrive live; each agent gets its decision."""
    from playwright.sync_api import expect

    with Client(agent_id="support-bot") as agent:
        for rid, amount in (
            ("r-approve", 120),
            ("r-modify", 250),
            ("r-reject", 400),
            ("r-live", 180),
        ):
            agent.submit(
                "refund",
                {"order_id": f"A-{amount}", "amount": amount},
                id=rid,
                summary=f"Refund ${amount} for order A-{amount}",
                reasoning="The parcel arrived 9 days late.",
                context={"user_request": "Where is my refund?", "ticket": "T-9"},
                requested_by="support-user",
                param_schema=SCHEMA,
            )  # fmt: skip
        drain(pintake)
        with contextlib.ExitStack() as stack:
            waits = {
                rid: stack.enter_context(run_in_thread(lambda rid=rid: agent.wait(rid, 90), 90))
                for rid in ("r-approve", "r-modify", "r-reject", "r-live")
            }
            _review(page, api_env, expect)
    assert [None] * 4 == [w.error for w in waits.values()]
    outcomes: dict[str, Decision] = {rid: w.value for rid, w in waits.items()}
    assert {
        "r-approve": (Outcome.APPROVED, 120, "web"),
        "r-modify": (Outcome.APPROVED, 150, "web"),
        "r-reject": (Outcome.REJECTED, 400, "web"),
        "r-live": (Outcome.APPROVED, 180, "api"),
    } == {
        rid: (d.outcome, d.params["amount"], d.reviewers[0].channel) for rid, d in outcomes.items()
    }
    assert "would rather have photos" == outcomes["r-reject"].reason
    assert all(store.get(rid).state is not State.PENDING for rid in outcomes)


def _review(page: Any, api: ApiServer, expect: Any) -> None:
    link = issue_link(WebRecords(api.service.store), KEYRING, api.api.directory, "bob", actor="t")
    page.goto(f"{api.url}/inbox/login/link?t={link}")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Pending")).to_be_visible()
    expect(page.locator(".row")).to_have_count(4)
    _shot(page, "list")

    # Approve, with the keyboard: the first Tab reaches the skip link, Enter in a field submits.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_role("link", name="Refund $120 for order A-120").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("The parcel arrived 9 days late.")).to_be_visible()
    _shot(page, "detail")
    page.get_by_label("Comment (optional)").fill("late parcel, policy says refund")
    page.get_by_label("Comment (optional)").press("Enter")
    expect(page.locator("#status")).to_contain_text("Approved by Bob Brown")

    # Modify: the browser refuses 5000 (maximum 1000) and posts nothing; 150 goes through.
    page.goto(f"{api.url}/inbox/r/r-modify")
    page.get_by_text("Modify the parameters, then approve").click()
    page.get_by_label("amount").fill("5000")
    page.get_by_role("button", name="Approve with these values").click()
    expect(page.locator(".field-error").filter(has_text="must be at most 1000")).to_be_visible()
    assert State.PENDING == api.service.store.get("r-modify").state
    page.get_by_label("amount").fill("150")
    page.get_by_role("button", name="Approve with these values").click()
    expect(page.locator("#status")).to_contain_text("Approved by Bob Brown")
    expect(page.locator("tr.changed")).to_contain_text("250")

    # Reject with a reason.
    page.goto(f"{api.url}/inbox/r/r-reject")
    page.get_by_label("Why reject (required)").fill("would rather have photos")
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#status")).to_contain_text("Rejected by Bob Brown")

    # Live: Frank approves r-live through the API while bob looks at the list and its page.
    page.goto(f"{api.url}/inbox")
    expect(page.locator('.row[data-request="r-live"]')).to_have_count(1)
    page.goto(f"{api.url}/inbox/r/r-live")
    expect(page.locator("#status")).to_contain_text("Waiting")
    page.wait_for_function("document.body.dataset.live !== undefined")
    status, _, _ = api.call("POST", "/requests/r-live/approve", api.token("frank"), {})
    assert 200 == status
    expect(page.locator("#status")).to_contain_text("Approved by Frank Foster")
    expect(page.locator("#notice")).to_contain_text("approved")

    page.goto(f"{api.url}/inbox/stats")
    expect(page.get_by_role("heading", name="Stats")).to_be_visible()
    expect(page.locator("svg.chart").first).to_be_visible()
    _shot(page, "stats")
    page.goto(f"{api.url}/inbox/history?q=photos")
    expect(page.locator(".row")).to_have_count(1)
