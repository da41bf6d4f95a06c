"""`kubesim graph` off the cluster: building the model and rendering each format for a large cluster's
facts; prints JSON (median of --runs runs, seconds) and the size of each output.

    .venv/bin/python bench/graph.py [--nodes 20] [--pods-per-node 50] [--services 200] [--runs 5]

The facts are made up in the shape kubesim.graph.facts gathers (vxlan mode, so the tunnel mesh is
drawn too: N(N-1)/2 edges), with each Service pointing at five pods. Gathering itself is one API
list per kind and not measured here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from kubesim.graph import build, render


def facts(nodes: int, pods_per_node: int, services: int) -> dict[str, Any]:
    node_names = [f"worker-{i}" for i in range(nodes)]
    pods = [{"namespace": "default", "name": f"web-{n}-{j:03d}-7d9f8c6b5", "node": node_names[n],
             "ip": f"10.244.{n}.{j + 2}", "uid": f"uid-{n}-{j}", "phase": "Running"}
            for n in range(nodes) for j in range(pods_per_node)]
    return {
        "cluster": "bench", "mode": "vxlan",
        "network": {"nodeCIDR": "172.18.0.0/16", "hostAddress": "172.18.0.1", "hostLink": "ksim-bench0"},
        "nodes": [{"name": name, "role": "worker", "address": f"172.18.1.{i + 2}", "podCIDR": f"10.244.{i}.0/24"}
                  for i, name in enumerate(node_names)],
        "pods": pods,
        "services": [{"namespace": "default", "name": f"svc-{s}", "clusterIP": f"10.96.{s // 250}.{s % 250 + 2}",
                      "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}],
                      "endpoints": [{"ip": pods[(s * 5 + k) % len(pods)]["ip"], "ready": True,
                                     "pod": f"default/{pods[(s * 5 + k) % len(pods)]['name']}"} for k in range(5)]}
                     for s in range(services)],
    }


def median_seconds(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods-per-node", type=int, default=50)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.runs < 3:
        parser.error("--runs: at least 3 (the median of fewer is not a measurement)")
    data = facts(args.nodes, args.pods_per_node, args.services)
    graph = build(data)
    result: dict[str, Any] = {
        "nodes": args.nodes, "pods": len(data["pods"]), "services": args.services,
        "vertices": len(graph.vertices), "edges": len(graph.edges), "runs": args.runs,
        "build_s": median_seconds(lambda: build(data), args.runs),
    }
    for fmt in ("mermaid", "dot", "html"):
        result[f"{fmt}_s"] = median_seconds(lambda fmt=fmt: render(graph, fmt), args.runs)
        result[f"{fmt}_bytes"] = len(render(graph, fmt).encode())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
