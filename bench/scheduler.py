"""Scheduler throughput: pods bound per second on 100 and 1,000 Node objects (no sandboxes); prints JSON.

    .venv/bin/python bench/scheduler.py [--nodes 100,1000] [--pods 1000] [--apiserver inprocess|process]

Per node count: a fresh apiserver (the real Registry over SQLite and the HTTP layer on loopback, as
tests/harness.py builds it), N Nodes (32 cpu, 128Gi, 110 pods), then P pending pods (100m, 128Mi).
Then the scheduler starts (its informers list everything), and the clock runs from its caches being
synced until every pod is bound through pods/binding, as kube-scheduler's scheduler_perf measures
SchedulingThroughput. Reported: pods/s end to end, and the time spent in the algorithm proper
(filter + score, summed) per pod, which is the ceiling the scheduler could reach with a free apiserver.

`--apiserver inprocess` (default) shares one event loop and one core between apiserver and scheduler,
so the apiserver's work (binding writes, watch fan-out, events) counts against the scheduler's rate;
`--apiserver process` runs the apiserver in a child process, as kubesim does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from control.apiserver.admission import BasicAdmission
from control.apiserver.allocator import ServiceAllocator
from control.apiserver.auth import TokenAuthenticator, User
from control.apiserver.bootstrap import bootstrap
from control.apiserver.patch import apply_patch
from control.apiserver.registry import Registry
from control.apiserver.server import APIServer
from control.client import NODES, PODS, Client
from control.scheduler import Scheduler
from control.store import SQLiteStore

TOKENS = {
    "token-admin": User("kubernetes-admin", ("system:masters",)),
    "token-scheduler": User("system:kube-scheduler"),
}


async def serve(db: Path, ready: Any = None, stop: asyncio.Event | None = None) -> tuple[str, Any]:
    """An apiserver on 127.0.0.1 (a free port); returns its URL and a cleanup coroutine function."""
    store = await SQLiteStore.open(str(db), compact_interval=None)
    registry = Registry(store, admission=BasicAdmission(), patcher=apply_patch,
                        allocator=ServiceAllocator("10.96.0.0/16", (30000, 32767)))
    await registry.start()
    await bootstrap(registry, service_cidr="10.96.0.0/16", advertise_address="127.0.0.1", port=6443)
    server = APIServer(registry, TokenAuthenticator(TOKENS))
    server.ready = True
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def cleanup() -> None:
        await runner.cleanup()
        await registry.stop()
        await store.close()

    return f"http://127.0.0.1:{port}", cleanup


def _apiserver_process(db: str, conn: Any) -> None:
    async def main() -> None:
        url, cleanup = await serve(Path(db))
        conn.send(url)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # anything (or EOF) means stop
        await cleanup()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())


async def bounded(coros: list[Any], width: int = 64) -> None:
    slots = asyncio.Semaphore(width)

    async def one(coro: Any) -> None:
        async with slots:
            await coro

    await asyncio.gather(*(one(c) for c in coros))


def node(i: int) -> dict[str, Any]:
    name = f"node-{i:04d}"
    alloc = {"cpu": "32", "memory": "128Gi", "pods": "110"}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  "topology.kubernetes.io/zone": f"zone-{i % 3}"}},
            "status": {"capacity": alloc, "allocatable": alloc, "conditions": [{"type": "Ready", "status": "True"}]}}


def pod(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod-{i:05d}", "namespace": "default", "labels": {"app": f"app-{i % 10}"}},
            "spec": {"containers": [{"name": "c", "image": "pause",
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}}


async def measure(url: str, n_nodes: int, n_pods: int, record_events: bool, bind_concurrency: int) -> dict[str, Any]:
    admin = Client(url, token="token-admin")
    sched_client = Client(url, token="token-scheduler")
    try:
        started = time.perf_counter()
        await bounded([admin.create(NODES, node(i)) for i in range(n_nodes)])
        await bounded([admin.create(PODS, pod(i)) for i in range(n_pods)])
        setup = time.perf_counter() - started
        scheduler = Scheduler(sched_client, record_events=record_events, bind_concurrency=bind_concurrency)
        sync_started = time.perf_counter()
        await scheduler.start()
        synced = time.perf_counter()
        while scheduler.stats.scheduled < n_pods:
            if time.perf_counter() - synced > 600:
                raise TimeoutError(f"only {scheduler.stats.scheduled} of {n_pods} bound after 600 s")
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - synced
        stats = scheduler.stats
        await scheduler.stop()
        bound = sum(1 for p in (await admin.list(PODS, namespace="default", limit=500))["items"]
                    if p["spec"].get("nodeName"))
        per_node: dict[str, int] = {}
        for p in (await admin.list(PODS, namespace="default", limit=500))["items"]:
            per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
        return {
            "nodes": n_nodes, "pods": n_pods, "events": record_events, "bind_concurrency": bind_concurrency,
            "pods_per_second": round(n_pods / elapsed, 1),
            "seconds_to_bind_all": round(elapsed, 3),
            "algorithm_ms_per_pod": round(stats.algorithm_seconds / max(stats.scheduled, 1) * 1000, 3),
            "algorithm_only_pods_per_second": round(stats.scheduled / stats.algorithm_seconds, 1)
            if stats.algorithm_seconds else None,
            "informer_sync_seconds": round(synced - sync_started, 3),
            "setup_seconds": round(setup, 2),
            "bound_in_apiserver": bound,
            "pods_per_node_min_max": [min(per_node.values()), max(per_node.values())] if per_node else None,
            "errors": stats.errors,
        }
    finally:
        await admin.close()
        await sched_client.close()


async def run_one(mode: str, tmp: Path, n_nodes: int, n_pods: int, record_events: bool,
                  bind_concurrency: int) -> dict[str, Any]:
    db = tmp / f"bench-{mode}-{n_nodes}-{n_pods}-{int(record_events)}.db"
    if mode == "inprocess":
        url, cleanup = await serve(db)
        try:
            return await measure(url, n_nodes, n_pods, record_events, bind_concurrency)
        finally:
            await cleanup()
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("spawn").Process(target=_apiserver_process, args=(str(db), child))
    proc.start()
    try:
        url = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
        return await measure(url, n_nodes, n_pods, record_events, bind_concurrency)
    finally:
        parent.send("stop")
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
            proc.join()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", default="100,1000", help="comma-separated node counts")
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--apiserver", choices=("inprocess", "process"), default="inprocess")
    parser.add_argument("--no-events", action="store_true", help="don't record Scheduled events")
    parser.add_argument("--bind-concurrency", type=int, default=64, help="bindings in flight at once")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, Any] = {
        "python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
        "apiserver": args.apiserver, "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="kubesim-bench-scheduler-") as tmp:
        for n in (int(x) for x in args.nodes.split(",")):
            results["runs"].append(await run_one(args.apiserver, Path(tmp), n, args.pods, not args.no_events,
                                                 args.bind_concurrency))
    results["target_pods_per_second_on_100_nodes"] = 500
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
