"""Build N nodes x M pod sandboxes (namespace, veth, address, route) on the real kernel, tear them
down, and print JSON: sandboxes per second, total seconds, peak RSS. Run as root:

    sudo .venv/bin/python bench/netsim_bringup.py --nodes 20 --pods 50

Targets (issue #2): >= 200 sandboxes/s; 20 x 50 = 1,000 sandboxes built in <= 10 s on 2 cores.

Sandboxes are made the way a cluster makes them: each node's sandboxes by one agent (the kubelet is
a process per node), here --workers processes sharing the nodes out, each with its own netlink
sockets. --workers 1 measures the single-process rate.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

from netaddr import IPNetwork

from kubesim import cluster
from netsim.kernel import LinuxKernel
from netsim.sandbox import Sandbox, create_sandbox, delete_sandbox, sandbox_for
from netsim.topology import parse_topology


def _create_all(sandboxes: list[Sandbox]) -> int:
    kernel = LinuxKernel()
    try:
        for sandbox in sandboxes:
            create_sandbox(sandbox, kernel=kernel)
    finally:
        kernel.close()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _delete_all(sandboxes: list[Sandbox]) -> int:
    kernel = LinuxKernel()
    try:
        for sandbox in sandboxes:
            delete_sandbox(sandbox, kernel=kernel)
    finally:
        kernel.close()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods", type=int, default=50, help="sandboxes per node")
    parser.add_argument("--mode", choices=["host-gw", "vxlan"], default="host-gw")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes making sandboxes")
    args = parser.parse_args()

    name = "bench"
    topology = parse_topology({
        "name": name,
        "network": {"nodeCIDR": "172.29.128.0/20", "clusterCIDR": "10.232.0.0/16", "serviceCIDR": "10.233.0.0/16",
                    "mode": args.mode},
        "nodes": [{"name": "control-plane", "role": "control-plane"}]
        + [{"name": f"node-{i}"} for i in range(args.nodes - 1)],
    })
    with tempfile.TemporaryDirectory() as state:
        root = Path(state)
        t0 = time.perf_counter()
        cluster.up(topology, root=root, control_plane=False)
        t_nodes = time.perf_counter() - t0

        per_node = [
            [sandbox_for(name, node.name, node.pod_cidr, f"{node.name}-p{i}", str(IPNetwork(node.pod_cidr)[i + 2]))
             for i in range(args.pods)]
            for node in topology.nodes
        ]
        shares = [list(itertools.chain(*per_node[w::args.workers])) for w in range(args.workers)]
        sandboxes = list(itertools.chain(*per_node))
        pool = multiprocessing.get_context("fork").Pool(args.workers)
        try:
            t1 = time.perf_counter()
            worker_rss = pool.map(_create_all, shares)
            t_build = time.perf_counter() - t1
            t2 = time.perf_counter()
            worker_rss += pool.map(_delete_all, shares)
            t_delete = time.perf_counter() - t2
        finally:
            pool.close()
            pool.join()
            t3 = time.perf_counter()
            cluster.down(name, root=root)
            t_down = time.perf_counter() - t3

    count = len(sandboxes)
    print(json.dumps({
        "benchmark": "netsim_bringup",
        "nodes": args.nodes,
        "pods_per_node": args.pods,
        "sandboxes": count,
        "mode": args.mode,
        "workers": args.workers,
        "nodes_up_seconds": round(t_nodes, 3),
        "sandbox_build_seconds": round(t_build, 3),
        "sandboxes_per_second": round(count / t_build, 1),
        "sandbox_delete_seconds": round(t_delete, 3),
        "down_seconds": round(t_down, 3),
        "total_seconds": round(t_nodes + t_build + t_delete + t_down, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_worker_rss_mb": round(max(worker_rss) / 1024, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
