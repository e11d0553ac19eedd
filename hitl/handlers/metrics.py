"""Governance metrics from recorded data: the article's "Human In The Loop Metrics".

Computed over the requests of the last ``last`` decisions (``hitl:decisions``), plus what is
pending now, the labels put on decisions (:mod:`hitl.handlers.labels`) and the late answers in
the audit chain. ``hitl stats``, ``/hitl stats``, the inbox's ``/inbox/stats`` page and
``/metrics`` all show this one computation::

    figures = stats(store, last=1000, governance=policy.config.governance)
    figures["approval_rate"], figures["latency_by_risk"]["high"]["decision_p95_s"]
    figures["reviewers"][0]["flags"]       # ["approves 100% of 50 decisions (limit 98%)"]

Definitions (also in docs/inbox.md):

* approval rate: approved / decided by people (approved or rejected by a reviewer);
* escalation rate: requests that needed a human / all decided requests; auto-approval rate:
  approved by the policy alone / all decided requests;
* modification rate: approvals with modified params / approvals by people;
* review latency: request -> first seen and request -> decision, p50/p95, overall and per risk;
* per reviewer: their approvals and rejections, approval rate, latency (request -> their
  answer), and median time to decide (first seen -> their answer);
* late answers: answers refused because the request had already timed out; timeouts: requests
  that reached the end of their escalation chain;
* human time per workflow: per workflow (the agent's ``session_id``, else the agent, else the
  request), the summed time people had its requests in front of them (first seen -> decision);
* false-positive rate: rejections labelled ``incorrect`` / labelled rejections;
* canary catch rate: per reviewer, canary requests they rejected / canaries they answered
  (:mod:`hitl.handlers.canaries`; canaries are in no other figure: their decisions are not in
  the decision stream);
* rubber-stamping: over a reviewer's last ``window`` answers, an approval rate above
  ``max_approval_rate`` or a median time to decide below ``min_median`` (policy ``governance``).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hitl.models import Destination, Outcome, RequestRecord, Risk, State, VerdictKind
from hitl.policies import GovernanceConfig, format_duration
from hitl.queue.audit import AuditEvent
from hitl.queue.keys import AUDIT_CHAINS
from hitl.queue.scheduler import Notification, NotificationSink
from hitl.queue.store import Store

from .canaries import Catches, catches
from .labels import labels
from .queries import answerers, recent_decided
from .timeouts import latency_stats, percentile, review_latency, seen_at

__all__ = ["ReviewerFigures", "governance_of", "report_rubber_stamps", "stats", "stats_lines"]

_HUMAN_OUTCOMES = {Outcome.APPROVED, Outcome.REJECTED}
LATE_SCAN = 20_000
"""How many of the newest audit entries are searched for late answers."""


def governance_of(authority: object) -> GovernanceConfig:
    """The policy's ``governance`` section (the defaults when the authority has no policy)."""
    from hitl.policies import PolicyConfig

    config = getattr(authority, "config", None)  # Policy, or the service's reloading holder
    return config.governance if isinstance(config, PolicyConfig) else GovernanceConfig()


@dataclass
class _Answer:
    reviewer: str
    name: str
    approved: bool
    modified: bool
    at: float
    latency_s: float
    decide_s: float


@dataclass
class ReviewerFigures:
    """One reviewer's answers in the window."""

    reviewer: str
    name: str
    answers: list[_Answer] = field(default_factory=list)
    late: int = 0
    flags: list[str] = field(default_factory=list)
    canaries: Catches = field(default_factory=Catches)

    def as_json(self) -> dict[str, Any]:
        approvals = sum(1 for a in self.answers if a.approved)
        latencies = [a.latency_s for a in self.answers]
        decide = [a.decide_s for a in self.answers]
        return {
            "reviewer": self.reviewer,
            "name": self.name,
            "answers": len(self.answers),
            "approvals": approvals,
            "rejections": len(self.answers) - approvals,
            "modifications": sum(1 for a in self.answers if a.modified),
            "approval_rate": _rate(approvals, len(self.answers)),
            "latency_p50_s": percentile(latencies, 0.5),
            "latency_p95_s": percentile(latencies, 0.95),
            "median_decide_s": statistics.median(decide) if decide else None,
            "late_answers": self.late,
            "canaries": self.canaries.answered,
            "canaries_caught": self.canaries.caught,
            "canary_catch_rate": self.canaries.rate,
            "flags": list(self.flags),
        }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _answers(store: Store, record: RequestRecord) -> list[_Answer]:
    """Each reviewer's answer to a request decided by people: approvals (votes) and the
    rejection, with how long after the request and after it was first seen."""
    decision = record.decision
    if decision is None or decision.outcome not in _HUMAN_OUTCOMES:
        return []
    seen = seen_at(store, record.id)
    modified = {r.user_id for r in record.modified_by}
    out = []
    for who in answerers(record):
        at = who.at or decision.decided_at
        since = seen if seen is not None and seen <= at else record.created_at
        out.append(
            _Answer(
                reviewer=who.user_id,
                name=who.display_name or who.user_id,
                approved=decision.approved,
                modified=who.user_id in modified,
                at=at,
                latency_s=max(0.0, at - record.created_at),
                decide_s=max(0.0, at - since),
            )
        )
    return out


def _late_answers(store: Store) -> dict[str, int]:
    """Late answers by reviewer, from the newest audit entries."""
    raw: list[Any] = []
    for chain in range(AUDIT_CHAINS):
        raw.extend(store.redis.xrevrange(store.keys.audit(chain), count=LATE_SCAN) or [])
    late: dict[str, int] = defaultdict(int)
    for _id, fields in raw:
        try:
            entry = json.loads((fields or {}).get("e", ""))
        except (json.JSONDecodeError, TypeError):
            continue
        details = entry.get("details") if isinstance(entry, dict) else None
        if entry.get("kind") == "refused" and isinstance(details, dict) and details.get("late"):
            late[str(entry.get("actor", ""))] += 1
    return late


def _flags(figures: ReviewerFigures, config: GovernanceConfig) -> list[str]:
    rule = config.rubber_stamp
    recent = sorted(figures.answers, key=lambda a: a.at)[-rule.window :]
    if len(recent) < rule.min_decisions:
        return []
    out = []
    approvals = sum(1 for a in recent if a.approved)
    if approvals / len(recent) > rule.max_approval_rate:
        out.append(
            f"approves {approvals / len(recent):.0%} of their last {len(recent)} answers "
            f"(limit {rule.max_approval_rate:.0%})"
        )
    median = statistics.median(a.decide_s for a in recent)
    if median < rule.min_median:
        out.append(
            f"decides in a median {median:.1f}s of their last {len(recent)} answers "
            f"(limit {format_duration(rule.min_median)})"
        )
    return out


def _workflow(record: RequestRecord) -> str:
    request = record.request
    return request.session_id or request.agent_id or record.id


def _human_time(store: Store, human: Iterable[RequestRecord]) -> dict[str, Any]:
    per: dict[str, float] = defaultdict(float)
    for record in human:
        latency = review_latency(store, record)
        if latency.decided_at is None or latency.first_seen_at is None:
            continue
        per[_workflow(record)] += max(0.0, latency.decided_at - latency.first_seen_at)
    totals = list(per.values())
    return {
        "workflows": len(totals),
        "mean_s": round(statistics.fmean(totals), 3) if totals else None,
        "p50_s": percentile(totals, 0.5),
        "p95_s": percentile(totals, 0.95),
    }


def stats(
    store: Store, last: int = 1000, *, governance: GovernanceConfig | None = None
) -> dict[str, Any]:
    """Every governance figure over the last ``last`` decisions (see the module docstring)."""
    config = governance or GovernanceConfig()
    records = recent_decided(store, last)
    pending_records = store.pending(0, 0)
    human = [r for r in records if r.verdict.kind is VerdictKind.REVIEW]
    by_people = [r for r in human if r.decision and r.decision.outcome in _HUMAN_OUTCOMES]
    approved = [r for r in by_people if r.decision and r.decision.approved]
    rejected = [r for r in by_people if r.decision and not r.decision.approved]
    auto_approved = [
        r for r in records if r.decision and r.decision.outcome is Outcome.AUTO_APPROVED
    ]
    timeouts = [
        r
        for r in human
        if r.state is State.EXPIRED
        or (r.decision is not None and r.decision.outcome is Outcome.AUTO_APPROVED)
    ]
    by_risk: dict[str, int] = {}
    for r in pending_records:
        by_risk[r.verdict.risk.value] = by_risk.get(r.verdict.risk.value, 0) + 1
    latencies = {r.id: review_latency(store, r) for r in human}
    latency_by_risk = {
        risk.value: latency_stats([latencies[r.id] for r in human if r.verdict.risk is risk])
        for risk in Risk
    }
    late = _late_answers(store)
    reviewers: dict[str, ReviewerFigures] = {}
    for record in by_people:
        for answer in _answers(store, record):
            figures = reviewers.setdefault(
                answer.reviewer, ReviewerFigures(answer.reviewer, answer.name)
            )
            figures.answers.append(answer)
    for who, count in late.items():
        reviewers.setdefault(who, ReviewerFigures(who, who)).late = count
    canaries = catches(store)
    for who, caught in canaries.items():
        reviewers.setdefault(who, ReviewerFigures(who, who)).canaries = caught
    for figures in reviewers.values():
        figures.flags = _flags(figures, config)
    marks = labels(store, [r.id for r in records])
    labelled_rejections = [marks[r.id] for r in rejected if r.id in marks]
    wrong_rejections = sum(1 for m in labelled_rejections if m.label == "incorrect")
    labelled_approvals = [marks[r.id] for r in approved if r.id in marks]
    return {
        "decisions": len(records),
        "auto": len(records) - len(human),
        "needed_a_human": len(human),
        "escalation_rate": _rate(len(human), len(records)),
        "auto_approval_rate": _rate(len(auto_approved), len(records)),
        "approval_rate": _rate(len(approved), len(by_people)),
        "decided_by_people": len(by_people),
        "modification_rate": _rate(
            sum(1 for r in approved if r.decision and r.decision.modified), len(approved)
        ),
        "expired": sum(1 for r in human if r.state is State.EXPIRED),
        "timeouts": len(timeouts),
        "late_answers": sum(late.values()),
        "pending": len(pending_records),
        "pending_by_risk": by_risk,
        "latency": latency_stats(list(latencies.values())),
        "latency_by_risk": latency_by_risk,
        "human_time_per_workflow": _human_time(store, human),
        "labels": {
            "correct": sum(1 for m in marks.values() if m.label == "correct"),
            "incorrect": sum(1 for m in marks.values() if m.label == "incorrect"),
        },
        "false_positive_rate": _rate(wrong_rejections, len(labelled_rejections)),
        "false_negative_rate": _rate(
            sum(1 for m in labelled_approvals if m.label == "incorrect"), len(labelled_approvals)
        ),
        "canaries": {
            "answered": sum(c.answered for c in canaries.values()),
            "caught": sum(c.caught for c in canaries.values()),
        },
        "reviewers": [
            f.as_json()
            for f in sorted(reviewers.values(), key=lambda f: (-len(f.answers), f.reviewer))
        ],
        "rubber_stamps": [
            {"reviewer": f.reviewer, "name": f.name, "flags": f.flags}
            for f in sorted(reviewers.values(), key=lambda f: f.reviewer)
            if f.flags
        ],
    }


def stats_lines(figures: dict[str, Any]) -> list[str]:
    """The figures as plain lines (``hitl stats``, ``/hitl stats``)."""

    def secs(value: Any) -> str:
        return "-" if value is None else f"{value:.1f}s"

    def pct(value: Any) -> str:
        return "-" if value is None else f"{value * 100:.1f}%"

    lat = figures["latency"]
    work = figures["human_time_per_workflow"]
    lines = [
        f"last {figures['decisions']} decisions: {figures['auto']} by policy, "
        f"{figures['needed_a_human']} needed a human (escalation rate "
        f"{pct(figures['escalation_rate'])}), {figures['expired']} expired",
        f"approval rate (decided by people): {pct(figures['approval_rate'])}; auto-approval "
        f"rate {pct(figures['auto_approval_rate'])}; modification rate "
        f"{pct(figures['modification_rate'])}",
        f"review latency: first seen p50 {secs(lat['first_seen_p50_s'])} p95 "
        f"{secs(lat['first_seen_p95_s'])}; decision p50 {secs(lat['decision_p50_s'])} p95 "
        f"{secs(lat['decision_p95_s'])}",
    ]
    for risk, by in figures["latency_by_risk"].items():
        if by["decided"]:
            lines.append(
                f"  {risk}: {by['decided']} decided, p50 {secs(by['decision_p50_s'])} "
                f"p95 {secs(by['decision_p95_s'])}"
            )
    lines += [
        f"timeouts: {figures['timeouts']}; late answers: {figures['late_answers']}",
        f"human time per workflow: {work['workflows']} workflows, mean {secs(work['mean_s'])}, "
        f"p50 {secs(work['p50_s'])}",
        f"false-positive rate (rejections labelled incorrect): "
        f"{pct(figures['false_positive_rate'])} ({figures['labels']['incorrect']} incorrect, "
        f"{figures['labels']['correct']} correct labels)",
    ]
    for r in figures["reviewers"]:
        lines.append(
            f"  {r['name']} ({r['reviewer']}): {r['answers']} answers, approval rate "
            f"{pct(r['approval_rate'])}, latency p50 {secs(r['latency_p50_s'])}, median time "
            f"to decide {secs(r['median_decide_s'])}, {r['late_answers']} late"
        )
    for r in figures["reviewers"]:
        if r["canaries"]:
            lines.append(
                f"  {r['name']} ({r['reviewer']}): caught {r['canaries_caught']} of "
                f"{r['canaries']} canary requests ({pct(r['canary_catch_rate'])})"
            )
    for flag in figures["rubber_stamps"]:
        lines.append(
            f"RUBBER-STAMP? {flag['name']} ({flag['reviewer']}): {'; '.join(flag['flags'])}"
        )
    lines.append(f"pending now: {figures['pending']} {figures['pending_by_risk'] or ''}".rstrip())
    return lines


def report_rubber_stamps(
    store: Store,
    governance: GovernanceConfig,
    sink: NotificationSink,
    figures: dict[str, Any] | None = None,
) -> list[str]:
    """Tell the policy's compliance destination about each flagged reviewer, at most once a day
    per reviewer (the sink deduplicates by key), and audit it (``rubber_stamp_flagged``,
    ``alert: true``). Without ``governance.compliance`` the flags stay in the stats. Returns the
    reviewers reported now."""
    where = governance.compliance
    if where is None:
        return []
    figures = figures if figures is not None else stats(store, governance=governance)
    now = store.clock()
    reported = []
    for flag in figures["rubber_stamps"]:
        reviewer, reasons = flag["reviewer"], "; ".join(flag["flags"])
        notice = Notification(
            kind="alert",
            key=f"rubber-stamp:{reviewer}:{int(now // 86400)}",
            text=(
                f":mag: possible rubber-stamping by {flag['name']} ({reviewer}): {reasons}. "
                "Review their recent approvals (hitl stats, /inbox/stats)."
            ),
            target=Destination(kind=where.kind, target=where.target),
            thread=False,
            at=now,
        )
        if sink.send(notice):
            details = {"alert": True, "reviewer": reviewer, "flags": flag["flags"]}
            store.append_events([AuditEvent("rubber_stamp_flagged", None, "governance", details)])
            reported.append(reviewer)
    return reported
