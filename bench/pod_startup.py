"""Pod start-up at scale on a whole cluster; prints JSON (issue #4's targets). As root:

    sudo .venv/bin/python -m bench.pod_startup --nodes 20 --pods-per-node 50 --runs 3

(as a module: run as a script, bench/ comes first on sys.path and bench/dns.py hides the dns package.)

Brings up a cluster of N worker nodes (plus the control plane) on its own address ranges, creates one
Deployment of N x M agnhost netexec replicas, and measures, from the Deployment's creation: the time
until every pod is Ready (target <= 60 s), each pod's start-up latency (its creation to its Ready
condition, as the pod startup SLI counts it; target p99 <= 5 s), and the memory of the node agents:
kubelet RSS per node and per pod, and the node runtime's (which serves the built-in workloads: the
per-pod memory of a built-in, target <= 1 MB). The cluster is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from control.client import DEPLOYMENTS, PODS, load_kubeconfig
from kubesim import cluster
from netsim.topology import parse_topology


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds of PID's children that ended (a sandbox's setup process, say), as its wait() counted them."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores, all processes and the kernel): what the cluster's
    processes share, so that a run's numbers can be read against how loaded the machine was."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3) if ordered else 0.0


async def run(kubeconfig: str, replicas: int, timeout: float) -> dict[str, Any]:
    client = load_kubeconfig(kubeconfig)
    created: dict[str, float] = {}
    bound_at: dict[str, float] = {}
    ready_at: dict[str, float] = {}
    try:
        listed = await client.list(PODS, namespace="default")
        rv = listed["metadata"]["resourceVersion"]
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "startup"},
                      "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "startup"}},
                               "template": {"metadata": {"labels": {"app": "startup"}}, "spec": {"containers": [{
                                   "name": "agnhost", "image": "registry.k8s.io/e2e-test-images/agnhost:2.47",
                                   "args": ["netexec", "--http-port=8080", "--udp-port=-1"]}]}}}}
        start = time.monotonic()
        await client.create(DEPLOYMENTS, deployment, namespace="default")
        async with client.watch(PODS, namespace="default", resource_version=rv,
                                timeout_seconds=int(timeout)) as events:
            async for event in events:
                pod = event.object
                name = pod["metadata"]["name"]
                now = time.monotonic()
                created.setdefault(name, now)
                if (pod.get("spec") or {}).get("nodeName"):
                    bound_at.setdefault(name, now)
                conditions = (pod.get("status") or {}).get("conditions") or []
                if name not in ready_at and any(c.get("type") == "Ready" and c.get("status") == "True"
                                                for c in conditions):
                    ready_at[name] = now
                if len(ready_at) >= replicas:
                    break
                if now - start > timeout:
                    break
        total = time.monotonic() - start
    finally:
        await client.close()
    latencies = [ready_at[n] - created[n] for n in ready_at]
    scheduling = [bound_at[n] - created[n] for n in ready_at if n in bound_at]
    on_node = [ready_at[n] - bound_at[n] for n in ready_at if n in bound_at]
    return {"pods_ready": len(ready_at), "all_ready_seconds": round(total, 2),
            # Where the time goes: creation -> bound (scheduler), bound -> Ready (kubelet and status).
            "scheduling_p50_s": pct(scheduling, 0.5), "scheduling_p99_s": pct(scheduling, 0.99),
            "bound_to_ready_p50_s": pct(on_node, 0.5), "bound_to_ready_p99_s": pct(on_node, 0.99),
            "startup_latency_p50_s": pct(latencies, 0.5), "startup_latency_p99_s": pct(latencies, 0.99),
            "startup_latency_max_s": pct(latencies, 1.0)}


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result of the same shape as each run's: numbers are the median over the runs, nested dicts
    likewise, anything else is the first run's (the shared machine is noisy, so one run proves little)."""
    merged: dict[str, Any] = {}
    for key, first in results[0].items():
        values = [r[key] for r in results]
        if isinstance(first, dict):
            merged[key] = median_of(values)
        elif isinstance(first, int) and not isinstance(first, bool):
            merged[key] = statistics.median_low(values)  # counts stay whole numbers
        elif isinstance(first, float):
            merged[key] = round(statistics.median(values), 3)
        else:
            merged[key] = first
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20, help="worker nodes")
    parser.add_argument("--pods-per-node", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--runs", type=int, default=1, help="whole runs (a fresh cluster each); prints medians")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    results = [measure_once(args) for _ in range(args.runs)]
    print(json.dumps({**median_of(results), "runs": args.runs}, indent=2))


def measure_once(args: argparse.Namespace) -> dict[str, Any]:
    topology = parse_topology({
        "name": "bench-startup",
        "network": {"nodeCIDR": "172.27.0.0/16", "clusterCIDR": "10.236.0.0/16", "serviceCIDR": "10.237.0.0/16"},
        "nodes": [{"name": "control-plane", "role": "control-plane"}]
        + [{"name": f"node-{i}", "capacity": {"pods": args.pods_per_node + 10}} for i in range(args.nodes)],
    })
    with tempfile.TemporaryDirectory() as state_dir:
        root = Path(state_dir)
        t0 = time.monotonic()
        result = cluster.up(topology, root=root)
        up_seconds = time.monotonic() - t0
        try:
            processes = {p.role: p.pid for p in result.state.processes()}
            kubelets = {role: pid for role, pid in processes.items() if role.startswith("kubelet-node-")}
            runtimes = {role: pid for role, pid in processes.items() if role.startswith("runtime-node-")}
            before = {role: rss_kb(pid) for role, pid in kubelets.items()}
            runtime_before = {role: rss_kb(pid) for role, pid in runtimes.items()}
            cpu_before = {role: cpu_seconds(pid) for role, pid in processes.items()}
            busy_before = machine_busy_seconds()
            children_before = {role: children_cpu_seconds(pid) for role, pid in processes.items()}
            measured = asyncio.run(run(str(root / topology.name / "kubeconfig"), args.nodes * args.pods_per_node,
                                       args.timeout))
            after = {role: rss_kb(pid) for role, pid in kubelets.items()}
            runtime_after = {role: rss_kb(pid) for role, pid in runtimes.items()}
            cpu = {role: cpu_seconds(pid) - cpu_before[role] for role, pid in processes.items()}
            busy = machine_busy_seconds() - busy_before
            children = sum(children_cpu_seconds(pid) - children_before[role] for role, pid in processes.items())
        finally:
            cluster.down(topology.name, root=root)
    grown = sum(after.values()) - sum(before.values())
    runtime_grown = sum(runtime_after.values()) - sum(runtime_before.values())
    return {
        "benchmark": "pod_startup", "nodes": args.nodes, "pods_per_node": args.pods_per_node,
        "cluster_up_seconds": round(up_seconds, 2), **measured,
        "kubelet_rss_mb_per_node": round(sum(after.values()) / max(len(after), 1) / 1024, 1),
        "kubelet_rss_kb_per_pod": round(grown / max(measured["pods_ready"], 1), 1),
        "runtime_rss_mb_per_node": round(sum(runtime_after.values()) / max(len(runtime_after), 1) / 1024, 1),
        # what the runtimes grew by, per pod: the memory a built-in workload's pod costs
        "runtime_rss_kb_per_pod": round(runtime_grown / max(measured["pods_ready"], 1), 1),
        # CPU seconds each kind of component used during the measurement (2 cores are shared by all).
        "cpu_seconds": {kind: round(sum(v for role, v in cpu.items() if role.startswith(kind)), 1)
                        for kind in ("apiserver", "scheduler", "controller-manager", "kubelet", "runtime",
                                     "kube-proxy", "netpol")},
        # the components' children that ended meanwhile (sandbox set-up processes), and the whole machine's
        "children_cpu_seconds": round(children, 1),
        "machine_busy_cpu_seconds": round(busy, 1),
    }


if __name__ == "__main__":
    main()
