"""Benchmark: what AdminNetworkPolicies cost the agent's planning (nftables mode), no kernel involved.

Prints one JSON document. Needs no root: it times netpol.nftables.Planner.update, the pure part of a
sync, on one node of a cluster of --pods pods in 50 namespaces (5 teams), with --anps
AdminNetworkPolicies (each: a team's pods as subject, Deny from the next team, Pass from an app, an
egress Allow to 10.0.0.0/8 on UDP 53) and a BaselineAdminNetworkPolicy, against the same cluster
without them.

    python bench/netpol_admin_plan.py                    # 5000 pods, 10 ANPs, 5 runs each
    python bench/netpol_admin_plan.py --pods 1000 --anps 50 --runs 3

(a) steady: a sync in which nothing changed (the admin part is reused);
(b) anp_changed: one ANP's priority changed (the admin part is planned again whole);
(c) pod_changed: one pod's labels changed (so is it: the admin tiers have no incremental index yet).
Each is the median of --runs runs, in milliseconds, with the size of the nft delta it leads to.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netpol.admin import AdminPolicy, parse_admin_policy
from netpol.model import Namespace, Pod
from netpol.nftables import Planner, delta_transaction

NODE = "node-0"


def cluster(count: int) -> tuple[list[Pod], list[Namespace]]:
    pods = [Pod(f"ns{i % 50}", f"p{i}", {"app": f"a{i % 20}"},
                (ipaddress.ip_address(f"10.{1 + i // 60000}.{(i // 250) % 240}.{i % 250 + 1}"),), f"node-{i % 10}")
            for i in range(count)]
    namespaces = [Namespace(f"ns{i}", {"team": f"t{i % 5}", "kubernetes.io/metadata.name": f"ns{i}"})
                  for i in range(50)]
    return pods, namespaces


def anp(k: int, priority: int) -> dict[str, Any]:
    return {"kind": "AdminNetworkPolicy", "metadata": {"name": f"anp-{k}"}, "spec": {
        "priority": priority,
        "subject": {"namespaces": {"matchLabels": {"team": f"t{k % 5}"}}},
        "ingress": [
            {"action": "Deny", "from": [{"namespaces": {"matchLabels": {"team": f"t{(k + 1) % 5}"}}}]},
            {"action": "Pass", "from": [{"pods": {"namespaceSelector": {},
                                                  "podSelector": {"matchLabels": {"app": f"a{k % 20}"}}}}]},
        ],
        "egress": [{"action": "Allow", "to": [{"networks": ["10.0.0.0/8"]}],
                    "ports": [{"portNumber": {"protocol": "UDP", "port": 53}}]}],
    }}


def admin_policies(count: int, bumped: int | None = None) -> list[AdminPolicy]:
    out = [parse_admin_policy(anp(k, k + (500 if k == bumped else 0))) for k in range(count)]
    out.append(parse_admin_policy({"kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "default"}, "spec": {
        "subject": {"namespaces": {}}, "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}}))
    return out


def timed(planner: Planner, pods: list[Pod], namespaces: list[Namespace], admin: list[AdminPolicy],
          before: Any) -> tuple[float, int, Any]:
    start = time.perf_counter()
    plan = planner.update([], pods, namespaces, admin)
    elapsed = time.perf_counter() - start
    return elapsed * 1000, len(delta_transaction(before, plan)), plan


def scenario(count: int, anps: int, runs: int) -> dict[str, Any]:
    pods, namespaces = cluster(count)
    admin = admin_policies(anps) if anps else []
    result: dict[str, Any] = {}
    for name in ("steady", "anp_changed", "pod_changed"):
        times, sizes = [], []
        for run in range(runs):
            planner = Planner(NODE)
            before = planner.update([], pods, namespaces, admin)
            now_pods, now_admin = pods, admin
            if name == "anp_changed" and anps:
                now_admin = admin_policies(anps, bumped=run % anps)
            elif name == "pod_changed":
                changed = pods[run]
                now_pods = [*pods[:run], Pod(changed.namespace, changed.name, {"app": "moved"}, changed.ips,
                                             changed.node), *pods[run + 1:]]
            ms, size, _ = timed(planner, now_pods, namespaces, now_admin, before)
            times.append(ms)
            sizes.append(size)
        result[name] = {"median_ms": round(statistics.median(times), 2), "delta_bytes": int(statistics.median(sizes))}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--anps", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.runs < 3:
        parser.error("--runs must be at least 3 (medians of fewer say little)")
    print(json.dumps({"pods": args.pods, "anps": args.anps, "runs": args.runs,
                      "without_admin": scenario(args.pods, 0, args.runs),
                      "with_admin": scenario(args.pods, args.anps, args.runs)}, indent=2))


if __name__ == "__main__":
    main()
