"""Connection rate through a ClusterIP versus straight to the pod, with many Services installed, each with
distinct endpoints; prints JSON (issue #5: ratio >= 0.9 in nftables mode, iptables mode reported beside it).
Needs root and gcc (the client is C, compiled here at bench time). As root:

    .venv/bin/python bench/datapath.py [--services 10000] [--seconds 2] [--runs 3] [--modes nftables,iptables]

A two-worker network (netsim, no control plane), a client pod on worker-1 and a server pod on worker-2 (so
every connection crosses the fabric). kube-proxy's rules for --services Services x 5 endpoints are loaded
into worker-1 by the real backend, in a full sync; every endpoint is a DISTINCT address (50,000 at 10k),
all of them answered by the one server pod: the endpoint range (ENDPOINT_RANGE) is routed worker-1 ->
worker-2 -> the server pod, where a local route for the whole range (Linux "AnyIP": `ip route add local
RANGE dev lo`) makes each of its addresses the pod's own, served by one listening socket on 0.0.0.0. So a
Service's DNAT picks one of 5 distinct addresses out of 50,000, as with real pods, without 50,000 server
processes, and without 50,000 `ip addr add` (the kernel's lookup of a local address is a route lookup either
way).

The client is bench/connrate.c: connect + close (SO_LINGER 0, an RST) in a loop for --seconds, printing
connections per second. Measured Services are spread over the whole map: the first, middle and last in
sort order (names and ClusterIPs sort alike). For each, the pod-IP target is the Service's first endpoint
(the same path minus the Service's NAT). Every target (3 pod IPs, 3 ClusterIPs) is warmed alike with one
--warmup run first; then --runs rounds, each measuring every target once, pod IP and ClusterIP alternating
which goes first. Reported per mode: each target's median rate over the rounds, the per-round
ClusterIP / pod-IP ratio's median, and the median over the targets. The cluster is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

# bench/ is sys.path[0] when a benchmark is run as a script (`python bench/X.py`), as `make bench` does.
from benchstats import addresses, spread

from kubesim import cluster
from netsim import names, namespaces
from netsim.kernel import LinuxKernel
from netsim.sandbox import create_sandbox, sandbox_for
from netsim.topology import parse_topology
from proxy import NodeContext, plan, services_from, slices_from

PORT = 8080
SERVICE_CIDR = "10.235.0.0/16"
ENDPOINT_RANGE = "10.236.0.0/16"
ENDPOINTS = 5
SOURCE = Path(__file__).with_name("connrate.c")


def compile_client(workdir: Path) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SystemExit("bench/datapath.py compiles its client: install gcc and libc6-dev (apt-get install gcc "
                         "libc6-dev)")
    binary = workdir / "connrate"
    subprocess.run([gcc, "-O2", "-Wall", "-Werror", "-o", str(binary), str(SOURCE)], check=True)
    return binary


def synthetic(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """COUNT Services s00000... with ENDPOINTS distinct endpoint addresses each, from ENDPOINT_RANGE."""
    ips = addresses(ENDPOINT_RANGE, count * ENDPOINTS)
    services, slices = [], []
    for i in range(count):
        name = f"s{i:05d}"
        vip = f"10.235.{(i + 2) // 256}.{(i + 2) % 256}"
        services.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "bench"},
                         "spec": {"clusterIP": vip, "type": "ClusterIP",
                                  "ports": [{"name": "p", "port": 80, "protocol": "TCP", "targetPort": PORT}]}})
        slices.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": f"{name}-x", "namespace": "bench",
                                    "labels": {"kubernetes.io/service-name": name}},
                       "addressType": "IPv4", "ports": [{"name": "p", "port": PORT, "protocol": "TCP"}],
                       "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}
                                     for ip in ips[i * ENDPOINTS:(i + 1) * ENDPOINTS]]})
    return services, slices


def connect_rate(binary: Path, netns: str, target: str, port: int, seconds: float) -> float:
    done = subprocess.run(namespaces.command_in(netns, [str(binary), "connect", target, str(port), str(seconds)]),
                          capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"connrate to {target}:{port} failed ({done.returncode}): {done.stdout}{done.stderr}")
    return float(json.loads(done.stdout)["connections_per_second"])


def ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True)


def measure(mode: str, args: argparse.Namespace, binary: Path) -> dict[str, Any]:
    topology = parse_topology({
        "name": f"dp-{mode[:3]}",
        "network": {"nodeCIDR": "172.26.0.0/16", "clusterCIDR": "10.234.0.0/16", "serviceCIDR": SERVICE_CIDR},
        "nodes": [{"name": "control-plane", "role": "control-plane"}, {"name": "worker-1"}, {"name": "worker-2"}],
    })
    w1, w2 = topology.nodes[1], topology.nodes[2]
    w1_ns, w2_ns = names.node_ns(topology.name, w1.name), names.node_ns(topology.name, w2.name)
    with tempfile.TemporaryDirectory() as state:
        root = Path(state)
        cluster.up(topology, root=root, control_plane=False)
        server_proc = None
        try:
            kernel = LinuxKernel()
            client = sandbox_for(topology.name, w1.name, w1.pod_cidr, "client", "10.234.1.10")
            server = sandbox_for(topology.name, w2.name, w2.pod_cidr, "server", "10.234.2.10")
            create_sandbox(client, kernel=kernel)
            create_sandbox(server, kernel=kernel)
            kernel.close()
            # The endpoint range: worker-1 -> worker-2 -> the server pod, where all of it is local.
            ip("-n", w1_ns, "route", "add", ENDPOINT_RANGE, "via", w2.address, "dev", names.NODE_UPLINK)
            ip("-n", w2_ns, "route", "add", ENDPOINT_RANGE, "via", server.ip, "dev", names.NODE_BRIDGE)
            ip("-n", server.netns, "route", "add", "local", ENDPOINT_RANGE, "dev", "lo")
            server_proc = subprocess.Popen(namespaces.command_in(server.netns, [str(binary), "serve", str(PORT)]),
                                           stdout=subprocess.PIPE, text=True)
            assert server_proc.stdout is not None
            if not server_proc.stdout.readline().startswith("serving"):
                raise RuntimeError("the connrate server did not start")
            services, slices = synthetic(args.services)
            node = NodeContext(name=w1.name, node_ips=(w1.address,), cluster_cidrs=("10.234.0.0/16",),
                               service_cidrs=(SERVICE_CIDR,))
            result = plan(services_from(services), slices_from(slices), node)
            sync_start = time.perf_counter()
            with namespaces.entered(w1_ns):
                if mode == "nftables":
                    from proxy.nftables import NftablesBackend

                    NftablesBackend().sync(result, full=True)
                else:
                    from proxy.iptables.backend import IptablesBackend

                    IptablesBackend().sync(result, full=True)
            sync_seconds = time.perf_counter() - sync_start
            picks = spread(args.services, 3)
            targets = {services[i]["metadata"]["name"]: (str(services[i]["spec"]["clusterIP"]),
                                                          str(slices[i]["endpoints"][0]["addresses"][0]))
                       for i in picks}
            for vip, pod_ip in targets.values():  # warm every target alike
                connect_rate(binary, client.netns, pod_ip, PORT, args.warmup)
                connect_rate(binary, client.netns, vip, 80, args.warmup)
            rates: dict[str, dict[str, list[float]]] = {n: {"pod_ip": [], "cluster_ip": []} for n in targets}
            for round_no in range(args.runs):
                for name, (vip, pod_ip) in targets.items():
                    order = [("pod_ip", pod_ip, PORT), ("cluster_ip", vip, 80)]
                    for kind, target, port in order if round_no % 2 == 0 else reversed(order):
                        rates[name][kind].append(connect_rate(binary, client.netns, target, port, args.seconds))
        finally:
            if server_proc is not None:
                server_proc.kill()
                server_proc.wait()
            cluster.down(topology.name, root=root)
    per_target = {}
    for name, r in rates.items():
        ratios = [c / p for c, p in zip(r["cluster_ip"], r["pod_ip"], strict=True)]
        per_target[name] = {
            "cluster_ip": targets[name][0], "pod_ip": targets[name][1],
            "pod_ip_connections_per_second": round(statistics.median(r["pod_ip"]), 1),
            "cluster_ip_connections_per_second": round(statistics.median(r["cluster_ip"]), 1),
            "ratio_median_of_rounds": round(statistics.median(ratios), 3),
            "rounds": {"pod_ip": [round(x, 1) for x in r["pod_ip"]],
                       "cluster_ip": [round(x, 1) for x in r["cluster_ip"]]},
        }
    return {
        "services_installed": args.services, "distinct_endpoints": args.services * ENDPOINTS,
        "full_sync_seconds": round(sync_seconds, 2),
        "targets": per_target,
        "ratio_cluster_ip_to_pod_ip": round(statistics.median(t["ratio_median_of_rounds"]
                                                              for t in per_target.values()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measurement")
    parser.add_argument("--warmup", type=float, default=1.0, help="length of the warm-up of each target")
    parser.add_argument("--runs", type=int, default=3, help="rounds; medians are over these")
    parser.add_argument("--modes", default="nftables,iptables")
    args = parser.parse_args()
    report: dict[str, Any] = {"benchmark": "datapath", "client": "bench/connrate.c (gcc -O2)",
                              "seconds_per_measurement": args.seconds, "rounds": args.runs,
                              "target": {"ratio_nftables": 0.9}}
    with tempfile.TemporaryDirectory() as work:
        binary = compile_client(Path(work))
        for mode in args.modes.split(","):
            report[mode] = measure(mode, args, binary)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
