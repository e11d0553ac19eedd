"""Policy evaluations per second on the shipped default policy (target: >= 20,000/s).

Run with ``make bench`` (or ``python -m bench.bench_policy``). A mix of requests that exercises
every path (autonomous tools, CEL conditions with ``now``, two-person rules, preferences, an
unsure agent, an unknown tool) is evaluated round-robin; the figure is the median of several
runs. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

from hitl.models import ApprovalRequest
from hitl.policies import Policy, default_policy

TARGET = 20_000

MIX: list[dict[str, object]] = [
    {"action": "list_instances"},
    {"action": "search_database", "params": {"query": "orders"}},
    {"action": "stop_instance", "params": {"instance_id": "i-1", "environment": "dev"}},
    {"action": "stop_instance", "params": {"instance_id": "i-2", "environment": "staging"}},
    {"action": "stop_instance", "params": {"instance_id": "i-3", "environment": "production"}},
    {"action": "stop_instance", "params": {"environment": "staging"}, "confidence": 0.3},
    {"action": "delete_volume", "params": {"volume_id": "vol-1"}},
    {"action": "modify_security_group", "params": {"group": "sg-1", "port": 22}},
    {"action": "refund", "params": {"order": "A-1", "amount": 120.0}, "confidence": 0.8},
    {"action": "refund", "params": {"order": "A-2", "amount": 20.0}, "confidence": 0.95},
    {"action": "create_draft_email", "params": {"to": "team@example.com"}, "confidence": 0.7},
    {"action": "update_task_status", "params": {"task": "T-1"}, "confidence": 0.6},
    {"action": "deploy_to_production", "params": {"version": "1.2.3"}},
    {"action": "launch_rocket", "params": {}, "risk": "high"},
]


def run_once(policy: Policy, requests: list[ApprovalRequest], n: int) -> float:
    """Evaluations per second for ``n`` evaluations, at a time that moves (as in service)."""
    base = datetime.datetime(2025, 3, 4, 17, 30, tzinfo=datetime.UTC)
    step = datetime.timedelta(seconds=1)
    count = len(requests)
    start = time.perf_counter()
    for i in range(n):
        policy.evaluate(requests[i % count], now=base + i * step)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50_000, help="evaluations per run")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    policy = default_policy()
    requests = [ApprovalRequest.model_validate(r) for r in MIX]
    run_once(policy, requests, 2_000)  # warm the per-action plans
    rates = [run_once(policy, requests, args.n) for _ in range(args.runs)]
    median = statistics.median(rates)
    print(f"policy evaluations/s (default policy, {len(MIX)}-request mix, {policy.version})")
    print(
        f"  median {median:,.0f}/s over {args.runs} runs of {args.n:,}  "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}); "
        f"{median / TARGET:.1f}x the {TARGET:,}/s target; "
        f"{1e6 / median:.1f} us per evaluation"
    )


if __name__ == "__main__":
    main()
