"""Governance metrics against a scripted set of decisions with known latencies (a manual clock),
through ``stats``, ``/metrics`` (parsed with Prometheus' own text parser) and ``hitl stats``."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from hitl.config import Settings
from hitl.errors import AlreadyDecided, InvalidRequest
from hitl.handlers import Decider, OpenAuthority
from hitl.handlers.labels import label
from hitl.handlers.metrics import stats, stats_lines
from hitl.handlers.timeouts import escalate, mark_seen
from hitl.models import (
    ApprovalRequest,
    EscalationStep,
    Reviewer,
    Risk,
    Verdict,
    VerdictKind,
)
from hitl.policies import GovernanceConfig
from hitl.queue.intake import IntakeConsumer
from hitl.queue.scheduler import ManualClock
from hitl.queue.store import Store
from tests.chains import T0
from tests.scenarios.helpers import drain, xadd_raw

BOB = Reviewer(user_id="bob", display_name="Bob", channel="web")
CAROL = Reviewer(user_id="carol", display_name="Carol", channel="slack")

VERDICTS = {
    "a1": Verdict(kind=VerdictKind.AUTO_APPROVE, risk=Risk.LOW),
    "h1": Verdict(kind=VerdictKind.REVIEW, risk=Risk.LOW),
    "h2": Verdict(kind=VerdictKind.REVIEW, risk=Risk.HIGH),
    "h3": Verdict(kind=VerdictKind.REVIEW, risk=Risk.HIGH),
    "h4": Verdict(
        kind=VerdictKind.REVIEW,
        risk=Risk.MEDIUM,
        escalation=[EscalationStep(after_s=50, timeout=True)],
    ),
}
SESSIONS = {"a1": "w0", "h1": "w1", "h2": "w1", "h3": "w2", "h4": "w3"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(r: redis.Redis, settings: Settings, clock: ManualClock) -> Store:
    return Store(r, signer=settings.signing_keys(), clock=clock)


@pytest.fixture
def scripted(store: Store, r: redis.Redis, clock: ManualClock) -> Store:
    """Five requests at T0: one approved by policy; h1 (low) seen at +10, approved by bob at
    +30; h2 (high) seen at +5, rejected by bob at +60 (later labelled incorrect); h3 (high) seen
    at +100, modified by carol at +120; h4 (medium) times out at +50 and bob answers late at
    +70."""

    def classify(request: ApprovalRequest) -> Verdict:
        assert request.id is not None
        return VERDICTS[request.id]

    intake = IntakeConsumer(store, classify, block_ms=0)
    intake.ensure_group()
    for rid in VERDICTS:
        xadd_raw(
            r,
            json.dumps(
                {"id": rid, "action": "refund", "params": {"amount": 100},
                 "requested_by": "alice", "session_id": SESSIONS[rid]}
            ),
        )  # fmt: skip
    drain(intake)
    intake.close()
    decider = Decider(store, OpenAuthority(classify))  # a modification keeps its verdict

    def at(offset: float) -> None:
        clock.set(T0 + offset)

    at(5)
    mark_seen(store, "h2")
    at(10)
    mark_seen(store, "h1")
    at(30)
    decider.approve("h1", BOB)
    at(50)
    escalate(store, "h4", level=1)
    at(60)
    decider.reject("h2", BOB, "wrong customer")
    at(70)
    with pytest.raises(AlreadyDecided):
        decider.approve("h4", BOB)
    at(100)
    mark_seen(store, "h3")
    at(120)
    decider.modify("h3", CAROL, {"amount": 50})
    at(200)
    label(store, "h2", "incorrect", BOB, note="the customer was owed it")
    label(store, "h1", "correct", BOB)
    return store


def test_rates_and_counts(scripted: Store) -> None:
    """Escalation, auto-approval, approval and modification rates; timeouts, late answers."""
    s = stats(scripted)
    assert {
        "decisions": 5,
        "auto": 1,
        "needed_a_human": 4,
        "escalation_rate": 0.8,
        "auto_approval_rate": 0.2,
        "approval_rate": 0.6667,
        "modification_rate": 0.5,
        "timeouts": 1,
        "expired": 1,
        "late_answers": 1,
        "false_positive_rate": 1.0,
        "false_negative_rate": 0.0,
        "labels": {"correct": 1, "incorrect": 1},
    } == {k: s[k] for k in (
        "decisions", "auto", "needed_a_human", "escalation_rate", "auto_approval_rate",
        "approval_rate", "modification_rate", "timeouts", "expired", "late_answers",
        "false_positive_rate", "false_negative_rate", "labels")}  # fmt: skip


def test_review_latency_overall_and_per_risk(scripted: Store) -> None:
    """Decision latencies 30 (low), 50 (medium, timed out), 60 and 120 (high): nearest-rank
    p50/p95 overall and per risk."""
    s = stats(scripted)
    assert (60.0, 120.0) == (s["latency"]["decision_p50_s"], s["latency"]["decision_p95_s"])
    by = s["latency_by_risk"]
    assert (30.0, 50.0, 120.0, None) == (
        by["low"]["decision_p50_s"],
        by["medium"]["decision_p50_s"],
        by["high"]["decision_p95_s"],
        by["critical"]["decision_p50_s"],
    )
    assert (10.0, 100.0) == (s["latency"]["first_seen_p50_s"], by["high"]["first_seen_p50_s"])


def test_per_reviewer_figures(scripted: Store) -> None:
    """Bob: an approval after 30s (20s after it was seen) and a rejection after 60s (55s after),
    one late answer; Carol: one modification after 120s (20s after it was seen)."""
    s = stats(scripted)
    by = {r["reviewer"]: r for r in s["reviewers"]}
    assert {
        "answers": 2, "approvals": 1, "rejections": 1, "modifications": 0,
        "approval_rate": 0.5, "latency_p50_s": 60.0, "latency_p95_s": 60.0,
        "median_decide_s": 37.5, "late_answers": 1, "flags": [],
        "canaries": 0, "canaries_caught": 0, "canary_catch_rate": None,
    } == {k: v for k, v in by["bob"].items() if k not in ("reviewer", "name")}  # fmt: skip
    assert (1, 1.0, 120.0, 20.0) == (
        by["carol"]["modifications"],
        by["carol"]["approval_rate"],
        by["carol"]["latency_p50_s"],
        by["carol"]["median_decide_s"],
    )


def test_human_time_per_workflow(scripted: Store) -> None:
    """w1: 20s (h1) + 55s (h2); w2: 20s (h3); the timed-out w3 was never seen."""
    assert {"workflows": 2, "mean_s": 47.5, "p50_s": 75.0, "p95_s": 75.0} == stats(scripted)[
        "human_time_per_workflow"
    ]


def test_rubber_stamp_flags(scripted: Store) -> None:
    """A median time to decide under the limit, or an approval rate over it, flags a reviewer
    once they have enough answers."""
    fast = GovernanceConfig.model_validate({"rubber_stamp": {"min_decisions": 2, "min_median": 40}})
    s = stats(scripted, governance=fast)
    assert ["bob"] == [f["reviewer"] for f in s["rubber_stamps"]]
    assert "median 37.5s" in s["rubber_stamps"][0]["flags"][0]
    yes_man = GovernanceConfig.model_validate(
        {"rubber_stamp": {"min_decisions": 1, "max_approval_rate": 0.9, "min_median": 1}}
    )
    flagged = stats(scripted, governance=yes_man)["rubber_stamps"]
    assert [("carol", "approves 100% of their last 1 answers (limit 90%)")] == [
        (f["reviewer"], f["flags"][0]) for f in flagged
    ]
    assert [] == stats(scripted)["rubber_stamps"]  # the defaults need 20 answers


def test_labels_only_on_decided_requests(store: Store, scripted: Store) -> None:
    """A label on a pending request, or a label that is not correct/incorrect, is refused."""
    with pytest.raises(InvalidRequest, match="correct or incorrect"):
        label(store, "h1", "maybe", BOB)
    xadd_raw(store.redis, json.dumps({"id": "open", "action": "refund", "params": {}}))  # type: ignore[arg-type]
    intake = IntakeConsumer(store, OpenAuthority().evaluate, block_ms=0)
    drain(intake)
    intake.close()
    with pytest.raises(InvalidRequest, match="still pending"):
        label(store, "open", "correct", BOB)


def test_text_lines_name_the_figures(scripted: Store) -> None:
    """``hitl stats``'s text carries every figure."""
    text = "\n".join(stats_lines(stats(scripted)))
    for words in (
        "escalation rate 80.0%",
        "approval rate (decided by people): 66.7%",
        "auto-approval rate 20.0%",
        "modification rate 50.0%",
        "timeouts: 1; late answers: 1",
        "false-positive rate (rejections labelled incorrect): 100.0%",
        "Bob (bob): 2 answers, approval rate 50.0%",
        "human time per workflow: 2 workflows, mean 47.5s",
    ):
        assert words in text, words


def _metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_endpoint_in_prometheus_format(scripted: Store, settings: Settings) -> None:
    """``GET /metrics`` answers the same figures in the Prometheus text format."""
    from hitl.service import Service
    from tests.api_server import ApiServer

    service = Service(settings, store=scripted, authority=OpenAuthority())
    with ApiServer(service) as server:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
        conn.close()
    assert (200, True) == (
        response.status,
        response.getheader("Content-Type", "").startswith("text/plain"),
    )
    m = _metrics(text)

    def latency(q: str, risk: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (
            "hitl_review_latency_seconds",
            (("quantile", q), ("risk", risk), ("stage", "decision")),
        )

    expected: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {
        ("hitl_approval_rate", ()): 0.6667,
        ("hitl_escalation_rate", ()): 0.8,
        ("hitl_auto_approval_rate", ()): 0.2,
        ("hitl_modification_rate", ()): 0.5,
        ("hitl_false_positive_rate", ()): 1.0,
        ("hitl_timeouts", ()): 1.0,
        ("hitl_late_answers", ()): 1.0,
        ("hitl_decisions", ()): 5.0,
        latency("0.5", "all"): 60.0,
        latency("0.95", "high"): 120.0,
        ("hitl_reviewer_approval_rate", (("reviewer", "bob"),)): 0.5,
        ("hitl_reviewer_median_decide_seconds", (("reviewer", "carol"),)): 20.0,
        ("hitl_reviewer_rubber_stamp", (("reviewer", "bob"),)): 0.0,
        ("hitl_human_time_per_workflow_seconds", (("statistic", "mean"),)): 47.5,
    }
    assert expected == {k: m.get(k) for k in expected}


def test_rubber_stamps_are_reported_to_compliance_once(scripted: Store, r: redis.Redis) -> None:
    """A flagged reviewer is announced to the policy's compliance destination and audited;
    the next check the same day tells nobody again. Without a destination, nothing is sent."""
    from hitl.handlers.metrics import report_rubber_stamps
    from hitl.queue.scheduler import StreamSink
    from tests.scenarios.helpers import audit_entries

    sink = StreamSink(scripted)
    quiet = GovernanceConfig.model_validate(
        {"rubber_stamp": {"min_decisions": 2, "min_median": 40}}
    )
    assert [] == report_rubber_stamps(scripted, quiet, sink)
    loud = quiet.model_copy(update={"compliance": quiet.model_validate(
        {"compliance": "channel:#compliance"}).compliance})  # fmt: skip
    assert ["bob"] == report_rubber_stamps(scripted, loud, sink)
    assert [] == report_rubber_stamps(scripted, loud, sink)
    [(_, notice)] = sink.read()
    assert ("alert", "channel", "#compliance", True) == (
        notice.kind,
        notice.target.kind if notice.target else None,
        notice.target.target if notice.target else None,
        "possible rubber-stamping by Bob (bob)" in notice.text,
    )
    flagged = [e for e in audit_entries(r) if e["kind"] == "rubber_stamp_flagged"]
    assert [("bob", True)] == [(e["details"]["reviewer"], e["details"]["alert"]) for e in flagged]


def test_grafana_dashboard_uses_only_exported_metrics(scripted: Store) -> None:
    """Every metric the sample dashboard queries is one that /metrics exports."""
    import re
    from pathlib import Path

    from hitl.bot.prometheus import figures_metrics

    dashboard = json.loads(
        (Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text()
    )
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"hitl_\w+", target["expr"])
    }
    exported = {family.name for family in figures_metrics(stats(scripted))}
    assert set() == queried - exported
