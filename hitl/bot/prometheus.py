"""``GET /metrics``: the governance figures (:mod:`hitl.handlers.metrics`) for Prometheus.

Each scrape computes the figures over the last decisions (``HITL_METRICS_LAST``, default 1000)
and writes them in the Prometheus text format with ``prometheus-client``; windowed rates and
quantiles are gauges (they can go down), counts in the window too::

    mount_metrics(service)          # beside /healthz; scrape http://HOST:PORT/metrics

The figures name reviewers (per-reviewer approval rates): serve ``/metrics`` to your monitoring
network only, as you would ``/healthz``. A sample Grafana dashboard is docs/grafana-dashboard.json.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hitl.errors import ConfigError, StoreUnavailable
from hitl.handlers import Authority
from hitl.handlers.metrics import governance_of, stats
from hitl.queue.store import Store

__all__ = ["figures_metrics", "mount_metrics"]

_RATES = {
    "approval_rate": "Approved / decided by people, over the window",
    "escalation_rate": "Requests that needed a human / decided requests",
    "auto_approval_rate": "Approved by the policy alone / decided requests",
    "modification_rate": "Approvals with modified params / approvals by people",
    "false_positive_rate": "Rejections labelled incorrect / labelled rejections",
}
_COUNTS = {
    "decisions": "Decided requests in the window",
    "needed_a_human": "Decided requests that needed a human",
    "timeouts": "Requests that reached the end of their escalation chain",
    "late_answers": "Answers refused because the request had timed out",
    "pending": "Requests pending now",
}

_QUANTILE = {"50": "0.5", "95": "0.95"}


class _Service(Protocol):
    @property
    def app(self) -> web.Application: ...
    @property
    def store(self) -> Store: ...
    @property
    def authority(self) -> Authority: ...


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"hitl_{name}", doc, labels=labels)


def figures_metrics(figures: dict[str, Any]) -> Iterator[Metric]:
    """The figures of :func:`hitl.handlers.metrics.stats` as metric families."""
    for name, doc in _RATES.items():
        if figures[name] is not None:
            g = _gauge(name, doc)
            g.add_metric([], figures[name])
            yield g
    for name, doc in _COUNTS.items():
        g = _gauge(name if name != "pending" else "pending_requests", doc)
        g.add_metric([], figures[name])
        yield g
    pending = _gauge("pending_by_risk", "Requests pending now, by risk", ["risk"])
    for risk, count in figures["pending_by_risk"].items():
        pending.add_metric([risk], count)
    yield pending
    latency = _gauge(
        "review_latency_seconds",
        "Request -> decision (stage=decision) or first seen (stage=first_seen), by risk",
        ["risk", "stage", "quantile"],
    )
    rows = [("all", figures["latency"]), *figures["latency_by_risk"].items()]
    for risk, by in rows:
        for stage in ("decision", "first_seen"):
            for q in ("50", "95"):
                value = by[f"{stage}_p{q}_s"]
                if value is not None:
                    latency.add_metric([risk, stage, _QUANTILE[q]], value)
    yield latency
    work = figures["human_time_per_workflow"]
    human = _gauge(
        "human_time_per_workflow_seconds", "Summed review time per workflow", ["statistic"]
    )
    for stat in ("mean", "p50", "p95"):
        if work[f"{stat}_s"] is not None:
            human.add_metric([stat], work[f"{stat}_s"])
    yield human
    answers = _gauge("reviewer_answers", "Answers per reviewer in the window", ["reviewer"])
    rate = _gauge("reviewer_approval_rate", "Approvals / answers per reviewer", ["reviewer"])
    lat = _gauge(
        "reviewer_latency_seconds", "Request -> answer per reviewer", ["reviewer", "quantile"]
    )
    decide = _gauge(
        "reviewer_median_decide_seconds", "Median first seen -> answer per reviewer", ["reviewer"]
    )
    canary = _gauge(
        "reviewer_canary_catch_rate", "Canary requests rejected / answered", ["reviewer"]
    )
    flagged = _gauge(
        "reviewer_rubber_stamp", "1 when flagged as possible rubber-stamping", ["reviewer"]
    )
    for r in figures["reviewers"]:
        who = [r["reviewer"]]
        answers.add_metric(who, r["answers"])
        if r["approval_rate"] is not None:
            rate.add_metric(who, r["approval_rate"])
        for q in ("50", "95"):
            if r[f"latency_p{q}_s"] is not None:
                lat.add_metric([*who, _QUANTILE[q]], r[f"latency_p{q}_s"])
        if r["median_decide_s"] is not None:
            decide.add_metric(who, r["median_decide_s"])
        flagged.add_metric(who, 1 if r["flags"] else 0)
        if r["canary_catch_rate"] is not None:
            canary.add_metric(who, r["canary_catch_rate"])
    yield from (answers, rate, lat, decide, flagged, canary)


class _Collector:
    def __init__(self, figures: dict[str, Any]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        return figures_metrics(self.figures)


def _window() -> int:
    raw = os.environ.get("HITL_METRICS_LAST", "1000")
    if not raw.isdigit() or not 1 <= int(raw) <= 100_000:
        raise ConfigError(f"HITL_METRICS_LAST must be 1 to 100000 decisions, got {raw!r}")
    return int(raw)


def mount_metrics(service: _Service) -> None:
    """Add ``GET /metrics`` to the service's application."""
    last = _window()

    async def metrics(_: web.Request) -> web.Response:
        governance = governance_of(service.authority)
        try:
            figures = await asyncio.to_thread(stats, service.store, last, governance=governance)
        except StoreUnavailable as exc:
            return web.Response(status=503, text=f"# {exc}\n")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(figures))
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    service.app.router.add_get("/metrics", metrics)
