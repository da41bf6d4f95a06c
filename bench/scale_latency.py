"""Benchmark: `kubectl scale` -> the new pod answering through the ClusterIP, on a real cluster, with a
handful of Services and then with --services more (each with --endpoints endpoints) present. Prints JSON.
Needs root. As root:

    python bench/scale_latency.py [--services 10000] [--endpoints 5] [--rounds 10] [--mode nftables]

A two-node cluster (topologies/two-node.yaml, renamed) runs a one-replica agnhost Deployment `web`
behind a Service, pinned to worker-2, and a client pod on worker-1. Each round:
  - `kubectl scale deployment web --replicas=2` is run (kubectl's own start-up counts: it is what a user
    waits for), and from the moment it is launched the client connects to the ClusterIP again and again
    (a fresh TCP connection each time, so kube-proxy's random pick is made anew) until a pod that was not
    there before answers GET /hostname: that is one sample. Everything on the way is real: the apiserver,
    the ReplicaSet controller, the scheduler, the kubelet making the sandbox, the EndpointSlice controller
    and the kube-proxy of worker-1 programming the kernel;
  - then `kubectl scale --replicas=1`, and the next round starts once the Service is back to one pod and
    QUIET_S more seconds have passed (kube-proxy's rate limit, spent on the scale-down, is refilled: a
    scale right after another one waits up to its 1 s min-sync-period, as upstream's does).
The same rounds run first with only the cluster's own Services, then after --services Services and their
EndpointSlices (made through the API, endpoints at addresses nothing answers on) have been programmed by
every kube-proxy: side by side in one run. Everything is removed at the end (`kubesim down`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# bench/ is sys.path[0] when a benchmark is run as a script (`python bench/X.py`), as `make bench` does.
from benchstats import summary_ms
from proxy_live import create_all, objects

# ...and then bench/dns.py would shadow dnspython's `dns`, which the cluster's modules import: off the path.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the repository (tests/ helpers) instead

from control.client import load_kubeconfig
from kubesim.testing import Cluster
from netsim.probe import http_get

REPO = Path(__file__).resolve().parent.parent
TARGET_P50_MS = 300
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
QUIET_S = 2.5


def manifests() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                      "nodeSelector": {"kubernetes.io/hostname": "worker-2"},
                      "terminationGracePeriodSeconds": 0,
                      "containers": [{"name": "agnhost", "image": AGNHOST,
                                      "args": ["netexec", "--http-port=8080", "--udp-port=-1"]}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "labels": {"app": "client"}},
         "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}},
    ]


def hostname_via(ns: str, address: str, timeout: float = 0.5) -> str | None:
    """GET /hostname from inside NS over a new connection: the answering pod's name, or None."""
    try:
        status, body = http_get(ns, address, 80, "/hostname", timeout=timeout)
    except OSError:
        return None
    return body if status == 200 else None


def kubectl(cluster: Cluster, *args: str) -> float:
    """Run kubectl against CLUSTER; how long it took."""
    start = time.monotonic()
    subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), *args], check=True, capture_output=True)
    return time.monotonic() - start


def web_pods(cluster: Cluster) -> set[str]:
    return {p["metadata"]["name"] for p in cluster.objects("pods", "app=web")
            if not p["metadata"].get("deletionTimestamp")}


def answered_only_by(cluster: Cluster, ns: str, address: str, pods: set[str], timeout: float = 60) -> None:
    """Wait until 20 connections in a row are answered, all by PODS."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 20:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Service did not settle on {sorted(pods)}")
        streak = streak + 1 if hostname_via(ns, address) in pods else 0
        time.sleep(0.02)


def rounds(cluster: Cluster, ns: str, address: str, count: int) -> dict[str, Any]:
    samples: list[float] = []
    kubectl_times: list[float] = []
    for _ in range(count):
        before = web_pods(cluster)
        answered_only_by(cluster, ns, address, before)
        # A quiet cluster, as a user's scale meets it: the kube-proxies' sync tokens (a burst of 2, one back
        # per 1 s min-sync-period), spent on the previous round's scale-down, are back.
        time.sleep(QUIET_S)
        start = time.monotonic()
        scaler = subprocess.Popen(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "scale", "deployment",
                                   "web", "--replicas=2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while True:
            name = hostname_via(ns, address)
            if name is not None and name not in before:
                samples.append(time.monotonic() - start)
                break
            if time.monotonic() - start > 60:
                raise RuntimeError("no new pod answered within 60 s")
            time.sleep(0.002)
        if scaler.wait(timeout=30) != 0:
            raise RuntimeError(f"kubectl scale failed: {scaler.stderr.read().decode() if scaler.stderr else ''}")
        kubectl_times.append(kubectl(cluster, "scale", "deployment", "web", "--replicas=1"))
        deadline = time.monotonic() + 60
        while len(web_pods(cluster)) != 1:
            if time.monotonic() > deadline:
                raise RuntimeError("scaling back to one pod did not finish")
            time.sleep(0.1)
    return {"scale_to_answer": summary_ms(samples), "kubectl_scale_alone": summary_ms(kubectl_times)}


def proxies_quiet(cluster: Cluster, since: float, timeout: float) -> None:
    """Wait until every node's kube-proxy has synced after SINCE and then not again for 3 s."""
    from proxy_live import metrics

    def last_syncs() -> list[float]:
        return [metrics(cluster.namespace_of(node.name)).get("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                                                              0.0) for node in cluster.topology.nodes]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        first = last_syncs()
        if min(first) > since:
            time.sleep(3)
            if last_syncs() == first:
                return
        time.sleep(1)
    raise RuntimeError("the kube-proxies did not settle after the Services were made")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--mode", choices=["nftables", "iptables"], default="nftables")
    parser.add_argument("--name", default="bench-scale")
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "scale_latency", "mode": args.mode, "rounds": args.rounds,
                           "target_p50_ms": TARGET_P50_MS}
    with Cluster.up(REPO / "topologies" / "two-node.yaml", name=args.name, proxy_mode=args.mode) as cluster:
        cluster.apply(manifests())
        cluster.wait_ready("app=web", count=1)
        cluster.wait_ready("app=client", count=1)
        ns, address = cluster.namespace_of("default/client"), cluster.service_ip("web")
        out["with_few_services"] = rounds(cluster, ns, address, args.rounds)
        services, slices = objects(args.services, args.endpoints)

        async def make() -> float:
            client = load_kubeconfig(str(cluster.kubeconfig))
            try:
                return (await create_all(client, services, slices))[1]
            finally:
                await client.close()
        out["objects_created_s"] = round(asyncio.run(make()), 1)
        proxies_quiet(cluster, time.time(), timeout=600)
        out[f"with_{args.services}_services"] = rounds(cluster, ns, address, args.rounds)
    few, many = out["with_few_services"]["scale_to_answer"], out[f"with_{args.services}_services"]["scale_to_answer"]
    out["ratio_p50_many_to_few"] = round(many["p50_ms"] / few["p50_ms"], 2)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
