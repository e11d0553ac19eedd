"""Deciding in the inbox: the API's handlers behind every form, the chat rules, refusals that
change nothing and are audited, and the decision delivered to the waiting agent."""

from __future__ import annotations

import json

import redis

from hitl.models import State
from hitl.queue.keys import Keys
from hitl.queue.store import Store
from tests.api_server import ApiServer
from tests.bot.inbox.client import Browser
from tests.bot.inbox.conftest import Refund, SignedIn
from tests.scenarios.helpers import audit_entries, audit_kinds


def _delivered(r: redis.Redis, rid: str) -> dict[str, object]:
    """What the blocked agent's BLPOP receives."""
    raw = r.lindex(Keys().decision(rid), 0)
    assert raw is not None, f"no decision delivered for {rid}"
    return json.loads(raw)  # type: ignore[no-any-return]


def test_approve_delivers_a_signed_decision_recorded_as_web(
    signed_in: SignedIn, refund: Refund, r: redis.Redis, store: Store
) -> None:
    """Bob approves in the browser: the agent gets the decision, bob on channel web."""
    refund("r-1")
    bob = signed_in("bob")
    status, _ = bob.post(
        "/inbox/r/r-1/approve", {"reason": "late parcel"}, csrf_from="/inbox/r/r-1"
    )
    decision = _delivered(r, "r-1")
    assert (303, "approved") == (status, decision["outcome"])
    assert [("bob", "web")] == [(x["user_id"], x["channel"]) for x in decision["reviewers"]]
    assert decision["signature"]
    assert "approve" == bob.last_headers["Location"].rsplit("done=", 1)[1]


def test_reject_needs_a_reason(signed_in: SignedIn, refund: Refund, store: Store) -> None:
    """A blank reason is refused with the handlers' words; with a reason the request ends."""
    refund("r-1")
    bob = signed_in("bob")
    status, page = bob.post("/inbox/r/r-1/reject", {"reason": "  "}, csrf_from="/inbox/r/r-1")
    assert (400, True, State.PENDING) == (status, "needs a reason" in page, store.get("r-1").state)
    status, _ = bob.post("/inbox/r/r-1/reject", {"reason": "ask for photos"}, csrf_from="/inbox")
    record = store.get("r-1")
    assert (303, State.REJECTED) == (status, record.state)
    assert record.decision is not None and "ask for photos" == record.decision.reason


def test_modify_checks_the_values_then_approves(
    signed_in: SignedIn, refund: Refund, r: redis.Redis, store: Store
) -> None:
    """A value the schema refuses is shown beside its field and nothing changes; a good one is
    approved as modified and delivered with the original params."""
    refund("r-1")
    bob = signed_in("bob")
    status, page = bob.post(
        "/inbox/r/r-1/modify", {"p.amount": "5000", "p.order_id": "A-1"}, csrf_from="/inbox"
    )
    assert (400, State.PENDING) == (status, store.get("r-1").state)
    assert "5000" in page and "maximum" in page
    status, page = bob.post(
        "/inbox/r/r-1/modify", {"p.amount": "lots", "p.order_id": "A-1"}, csrf_from="/inbox"
    )
    assert (400, True) == (status, "is not a number" in page)
    status, _ = bob.post(
        "/inbox/r/r-1/modify",
        {"p.amount": "150", "p.order_id": "A-1", "reason": "half"},
        csrf_from="/inbox",
    )
    decision = _delivered(r, "r-1")
    assert (303, "approved", True) == (status, decision["outcome"], decision["modified"])
    assert (150, 250) == (decision["params"]["amount"], decision["original_params"]["amount"])


def test_no_session_changes_nothing_and_is_audited(
    api: ApiServer, refund: Refund, r: redis.Redis, store: Store
) -> None:
    """A form posted without a session: 401, the request stays pending, the refusal audited."""
    refund("r-1")
    for verb in ("approve", "reject", "modify"):
        status, _ = Browser(api.url).request(
            "POST", f"/inbox/r/r-1/{verb}", {"reason": "x", "csrf": "x"}
        )
        assert 401 == status
    assert State.PENDING == store.get("r-1").state
    refusals = [e["details"] for e in audit_entries(r) if e["kind"] == "web_refused"]
    assert [("no_session", "approve"), ("no_session", "reject"), ("no_session", "modify")] == [
        (d["reason"], d["attempt"]) for d in refusals
    ]


def test_wrong_csrf_changes_nothing_and_is_audited(
    signed_in: SignedIn, refund: Refund, r: redis.Redis, store: Store
) -> None:
    """A signed-in reviewer's browser posting a form another site forged (no right token):
    403, nothing changes, the refusal is audited."""
    refund("r-1")
    bob = signed_in("bob")
    status, _ = bob.request("POST", "/inbox/r/r-1/approve", {"csrf": "guessed"})
    status2, _ = bob.request("POST", "/inbox/r/r-1/approve", {})
    assert (403, 403, State.PENDING) == (status, status2, store.get("r-1").state)
    assert ["bad_csrf", "bad_csrf"] == [
        e["details"]["reason"] for e in audit_entries(r) if e["kind"] == "web_refused"
    ]


def test_reviewer_without_the_role_changes_nothing_and_is_audited(
    signed_in: SignedIn, refund: Refund, r: redis.Redis, store: Store
) -> None:
    """Alice (standard) may not approve a refund over $100: refused as in chat, audited."""
    refund("r-1")
    alice = signed_in("alice")
    status, page = alice.post("/inbox/r/r-1/approve", {}, csrf_from="/inbox/r/r-1")
    assert (403, State.PENDING) == (status, store.get("r-1").state)
    assert "manager" in page
    refused = [e for e in audit_entries(r) if e["kind"] == "refused"]
    assert [("alice", "web")] == [(e["actor"], e["details"]["channel"]) for e in refused]


def test_second_answer_is_told_who_decided(
    signed_in: SignedIn, refund: Refund, store: Store
) -> None:
    """After bob approves, frank's click says who decided and when (409), as in chat."""
    refund("r-1")
    signed_in("bob").post("/inbox/r/r-1/approve", {})
    status, page = signed_in("frank").post("/inbox/r/r-1/approve", {})
    assert (409, True) == (status, "already approved by Bob Brown" in page)


def test_detail_page_shows_the_whole_request(
    signed_in: SignedIn, refund: Refund, r: redis.Redis
) -> None:
    """Reasoning, the user's request, context, params, plan, rule and the audit trail."""
    refund("r-1", plan=["look up the order", {"description": "refund", "action": "refund"}])
    status, page = signed_in("bob").get("/inbox/r/r-1")
    assert 200 == status
    for text in (
        "The parcel arrived 9 days late.",
        "Refund my order please",
        "T-9",
        "refund-over-100",
        "look up the order",
        "<td>submitted</td>",  # the audit trail's first entry
        "oncall:managers",
    ):
        assert text in page, text
    assert all(f"<td>{kind}</td>" in page for kind in audit_kinds(r, "r-1"))


def test_pending_filters_and_paging(signed_in: SignedIn, refund: Refund) -> None:
    """Risk, agent, action, destination and 'mine' filter the list; pages link onwards."""
    for i in range(3):
        refund(f"r-{i}", agent_id="support-bot")
    refund("other", agent_id="billing-bot")
    bob = signed_in("bob")

    def ids(query: str) -> set[str]:
        status, page = bob.get("/inbox?" + query)
        assert 200 == status, page
        return {rid for rid in ("r-0", "r-1", "r-2", "other") if f'data-request="{rid}"' in page}

    assert {"other"} == ids("agent_id=billing-bot")
    assert {"r-0", "r-1", "r-2", "other"} == ids(
        "risk=high&action=refund&destination=oncall:managers"
    )
    assert set() == ids("risk=low")
    assert set() == ids("min_age_s=86400")
    assert {"r-0", "r-1", "r-2", "other"} == ids("mine=1")
    assert set() == {
        rid
        for rid in ("r-0", "r-1")
        if f'data-request="{rid}"' in signed_in("alice").get("/inbox?mine=1")[1]
    }
    first, second = ids("limit=2"), ids("limit=2&offset=2")
    assert (2, 2, set()) == (len(first), len(second), first & second)
    assert 400 == bob.get("/inbox?risk=extreme")[0]


def test_history_search(signed_in: SignedIn, refund: Refund) -> None:
    """Decided requests are listed newest first and found by reason or reviewer."""
    refund("r-1")
    refund("r-2")
    bob = signed_in("bob")
    bob.post("/inbox/r/r-1/approve", {})
    bob.post("/inbox/r/r-2/reject", {"reason": "duplicate ticket"})
    _, page = bob.get("/inbox/history?q=duplicate")
    assert ('data-request="r-2"' in page, 'data-request="r-1"' in page) == (True, False)
    _, page = bob.get("/inbox/history")
    assert page.index('data-request="r-2"') < page.index('data-request="r-1"')


def test_unknown_request_is_404(signed_in: SignedIn) -> None:
    """A detail page for an id that does not exist says so."""
    assert 404 == signed_in("bob").get("/inbox/r/nope")[0]


def test_oversized_form_is_refused(signed_in: SignedIn, refund: Refund, store: Store) -> None:
    """A form body over 64 KiB is refused before it is read; nothing changes."""
    refund("r-1")
    status, _ = signed_in("bob").post("/inbox/r/r-1/reject", {"reason": "x" * 70_000})
    assert (413, State.PENDING) == (status, store.get("r-1").state)


def test_filter_form_as_a_browser_submits_it(signed_in: SignedIn, refund: Refund) -> None:
    """The filter form sends every field, empty ones included: empty means 'any'."""
    refund("r-1")
    status, page = signed_in("bob").get(
        "/inbox?risk=&agent_id=&action=&destination=&min_age_s=&limit="
    )
    assert (200, True) == (status, 'data-request="r-1"' in page)


def test_stats_page_charts_the_figures(signed_in: SignedIn, refund: Refund) -> None:
    """After bob's answers, /inbox/stats shows the rates, a chart and his row."""
    refund("r-1")
    refund("r-2")
    bob = signed_in("bob")
    bob.post("/inbox/r/r-1/approve", {})
    bob.post("/inbox/r/r-2/reject", {"reason": "duplicate"})
    status, page = bob.get("/inbox/stats")
    assert 200 == status
    for text in ("50.0%", "approval rate (people)", '<svg class="chart"', "Bob Brown"):
        assert text in page, text
