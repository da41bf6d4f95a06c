"""Connection rate and latency through a ClusterIP versus straight to the pod, with many Services
installed; prints JSON (issue #5: ratio >= 0.9 in nftables mode, iptables mode reported beside it).
As root:

    sudo .venv/bin/python bench/datapath.py [--services 10000] [--connections 1000] [--rounds 5]

A two-worker network (netsim, no control plane), a client pod on worker-1 and a server pod on
worker-2 (so every connection crosses the fabric), kube-proxy's rules for --services Services x 5
endpoints loaded into worker-1 by the real backend, one of them the server's. Each round makes
--connections sequential TCP connections (connect, read the answer, close) to the pod IP and then to
the ClusterIP; rounds alternate so that both see the same machine. The cluster is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubesim import cluster
from netsim import names, namespaces
from netsim.kernel import LinuxKernel
from netsim.sandbox import create_sandbox, sandbox_for
from netsim.topology import parse_topology
from proxy import NodeContext, plan, services_from, slices_from

PORT = 8080
SERVICE_CIDR = "10.235.0.0/16"


def synthetic(count: int, server_ip: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """COUNT Services with 5 endpoints each; the first one's endpoints are all the real server."""
    services, slices = [], []
    for i in range(count):
        vip = f"10.235.{(i + 2) // 256}.{(i + 2) % 256}"
        services.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}", "namespace": "bench"},
                         "spec": {"clusterIP": vip, "type": "ClusterIP",
                                  "ports": [{"name": "p", "port": 80, "protocol": "TCP", "targetPort": PORT}]}})
        ips = [server_ip] if i == 0 else [f"10.234.{200 + (i * 5 + k) // 65536 % 50}.{(i * 5 + k) // 256 % 256}"
                                          for k in range(5)]
        slices.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": f"s{i}-x", "namespace": "bench",
                                    "labels": {"kubernetes.io/service-name": f"s{i}"}},
                       "addressType": "IPv4", "ports": [{"name": "p", "port": PORT, "protocol": "TCP"}],
                       "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]})
    return services, slices, str(services[0]["spec"]["clusterIP"])


def serve(netns: str, ip: str, stop: threading.Event) -> socket.socket:
    with namespaces.entered(netns):
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((ip, PORT))
    server.listen(512)
    server.settimeout(0.2)

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.sendall(b"ok")

    threading.Thread(target=loop, daemon=True).start()
    return server


def connect_many(netns: str, target: str, count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        with namespaces.entered(netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with sock:
            sock.settimeout(2)
            sock.connect((target, PORT if target.startswith("10.234.") else 80))
            sock.recv(16)
        latencies.append(time.perf_counter() - start)
    return latencies


def summary(latencies: list[float], seconds: float) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"connections_per_second": round(len(ordered) / seconds, 1),
            "latency_p50_ms": round(ordered[len(ordered) // 2] * 1000, 3),
            "latency_p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3)}


def measure(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    topology = parse_topology({
        "name": f"dp-{mode[:3]}",
        "network": {"nodeCIDR": "172.26.0.0/16", "clusterCIDR": "10.234.0.0/16", "serviceCIDR": SERVICE_CIDR},
        "nodes": [{"name": "control-plane", "role": "control-plane"}, {"name": "worker-1"}, {"name": "worker-2"}],
    })
    w1, w2 = topology.nodes[1], topology.nodes[2]
    with tempfile.TemporaryDirectory() as state:
        root = Path(state)
        cluster.up(topology, root=root, control_plane=False)
        stop = threading.Event()
        try:
            kernel = LinuxKernel()
            client = sandbox_for(topology.name, w1.name, w1.pod_cidr, "client", "10.234.1.10")
            server = sandbox_for(topology.name, w2.name, w2.pod_cidr, "server", "10.234.2.10")
            create_sandbox(client, kernel=kernel)
            create_sandbox(server, kernel=kernel)
            kernel.close()
            listener = serve(server.netns, server.ip, stop)
            services, slices, vip = synthetic(args.services, server.ip)
            node = NodeContext(name=w1.name, node_ips=(w1.address,), cluster_cidrs=("10.234.0.0/16",),
                               service_cidrs=(SERVICE_CIDR,))
            result = plan(services_from(services), slices_from(slices), node)
            sync_start = time.perf_counter()
            with namespaces.entered(names.node_ns(topology.name, w1.name)):
                if mode == "nftables":
                    from proxy.nftables import NftablesBackend

                    NftablesBackend().sync(result, full=True)
                else:
                    from proxy.iptables.backend import IptablesBackend

                    IptablesBackend().sync(result, full=True)
            sync_seconds = time.perf_counter() - sync_start
            connect_many(client.netns, vip, 50)  # warm up: neighbours, conntrack
            direct_rates, service_rates = [], []
            direct_lat: list[float] = []
            service_lat: list[float] = []
            for _ in range(args.rounds):
                for target, rates, lat in ((server.ip, direct_rates, direct_lat),
                                           (vip, service_rates, service_lat)):
                    start = time.perf_counter()
                    got = connect_many(client.netns, target, args.connections)
                    rates.append(len(got) / (time.perf_counter() - start))
                    lat.extend(got)
            listener.close()
        finally:
            stop.set()
            cluster.down(topology.name, root=root)
    direct = statistics.median(direct_rates)
    via_service = statistics.median(service_rates)
    return {
        "services_installed": args.services,
        "full_sync_seconds": round(sync_seconds, 2),
        "pod_ip": {**summary(direct_lat, len(direct_lat) / direct), "median_round_rate": round(direct, 1)},
        "cluster_ip": {**summary(service_lat, len(service_lat) / via_service),
                       "median_round_rate": round(via_service, 1)},
        "ratio_cluster_ip_to_pod_ip": round(via_service / direct, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default="nftables,iptables")
    args = parser.parse_args()
    report: dict[str, Any] = {"benchmark": "datapath", "connections_per_round": args.connections,
                              "rounds": args.rounds}
    for mode in args.modes.split(","):
        report[mode] = measure(mode, args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
