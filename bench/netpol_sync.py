"""Benchmark: the network-policy agent's sync for P pods x N policies, and one policy changed.

Prints one JSON document. Needs root: the rules are loaded into a throwaway network namespace
(ksim-test-<random>.np, deleted afterwards); the root namespace is never touched.

    python bench/netpol_sync.py                      # 1000 pods x 1000 policies, 3 runs
    python bench/netpol_sync.py --pods 200 --policies 100 --runs 5

Each measurement is what one sync of the agent does (netpol/server.py NetpolAgent.sync): parse the
objects, build the ClusterView, render the node's table, one `nft -f` replacing it.
(a) full: the first sync with every object present;
(b) change: the same after one policy's peers changed (the agent re-renders the whole table today).
Half the pods are on the measured node; every policy selects pods by an app label and allows from
another app in its namespace and from an ipBlock, on a numeric and a named port.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import uuid
from typing import Any

from netpol.decide import ClusterView
from netpol.model import parse_namespace, parse_pod, parse_policy
from netpol.nftables import render

NODE = "node-a"
APPS = 50


def objects(pods: int, policies: int, changed: bool = False) -> tuple[list[Any], list[Any], list[Any]]:
    namespaces = [{"metadata": {"name": f"ns{i}", "labels": {"team": f"t{i % 5}"}}} for i in range(10)]
    pod_objs = [{
        "metadata": {"namespace": f"ns{i % 10}", "name": f"p{i}", "labels": {"app": f"a{i % APPS}"}},
        "spec": {"nodeName": NODE if i % 2 == 0 else "node-b",
                 "containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": f"10.{244 + i // 60000}.{i // 250 % 240}.{i % 250 + 2}"},
    } for i in range(pods)]
    policy_objs = []
    for i in range(policies):
        peer_app = f"a{(i + 1) % APPS}" if not (changed and i == 0) else f"a{(i + 2) % APPS}"
        policy_objs.append({
            "metadata": {"namespace": f"ns{i % 10}", "name": f"pol{i}"},
            "spec": {
                "podSelector": {"matchLabels": {"app": f"a{i % APPS}"}},
                "ingress": [{
                    "from": [{"podSelector": {"matchLabels": {"app": peer_app}}},
                             {"ipBlock": {"cidr": f"192.168.{i % 250}.0/24", "except": [f"192.168.{i % 250}.128/25"]}}],
                    "ports": [{"port": 80}, {"port": "http"}],
                }],
            },
        })
    return namespaces, pod_objs, policy_objs


def one_sync(node_ns: str, namespaces: list[Any], pods: list[Any], policies: list[Any]) -> dict[str, float]:
    start = time.perf_counter()
    view = ClusterView(
        policies=[parse_policy(p) for p in policies],
        pods=[p for p in (parse_pod(o) for o in pods) if p is not None],
        namespaces=[parse_namespace(o) for o in namespaces],
    )
    text = render(view, NODE)
    rendered = time.perf_counter()
    loaded = subprocess.run(["ip", "netns", "exec", node_ns, "nft", "-f", "-"], input=text, text=True,
                            capture_output=True, check=False)
    if loaded.returncode != 0:
        raise SystemExit(f"nft refused the table: {loaded.stderr[:2000]}")
    done = time.perf_counter()
    return {"total_ms": (done - start) * 1000, "render_ms": (rendered - start) * 1000,
            "nft_ms": (done - rendered) * 1000, "bytes": len(text)}


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    node_ns = f"ksim-test-{uuid.uuid4().hex[:8]}.np"
    subprocess.run(["ip", "netns", "add", node_ns], check=True)
    try:
        base = objects(args.pods, args.policies)
        after = objects(args.pods, args.policies, changed=True)
        full, change = [], []
        for _ in range(args.runs):
            subprocess.run(["ip", "netns", "exec", node_ns, "nft", "flush", "ruleset"], check=True)
            full.append(one_sync(node_ns, *base))
            change.append(one_sync(node_ns, *after))
        print(json.dumps({
            "pods": args.pods, "policies": args.policies, "runs": args.runs,
            "full_sync": median(full), "one_policy_changed": median(change),
        }, indent=2))
    finally:
        subprocess.run(["ip", "netns", "delete", node_ns], check=False)


if __name__ == "__main__":
    main()
