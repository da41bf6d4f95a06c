"""Benchmark: where the kube-proxy's memory goes when its informers list S Services x E endpoints.
Needs no privileges. Prints JSON.

    python bench/proxy_informer_memory.py [--services 10000] [--endpoints 5] [--runs 3]

Each run is a fresh process that serves canned List pages (Services and EndpointSlices shaped as the
apiserver returns them, managedFields included) from an HTTP server on loopback, honouring limit and
continue, and lists them with the proxy's own Service and EndpointSlice informers (ProxyServer's, with
their transforms) through the real Client. It reports, after the informers synced:
  - kept_mb: what the informers keep (tracemalloc, current);
  - peak_mb: the most that was allocated at once while listing (tracemalloc, peak);
  - rss_growth_mb: VmRSS growth over the same span, in runs of their own without tracemalloc (whose
    bookkeeping would count too); freed memory Python does not give back to the system shows here.
Two ways of listing: `paged` (the proxy's default, 500 per page, each page transformed as it arrives)
and `whole` (one unpaginated list: every whole object decoded before any is transformed, which is
what a relist held before its pages were transformed one at a time). Medians of --runs runs.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import statistics
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from aiohttp import web

from control.client import Client
from proxy.server import ProxyConfig, ProxyServer

# One Service and one EndpointSlice as the apiserver answered their create (managedFields included).
FIELDS_TIME = "2026-12-07T13:45:46Z"
SERVICE: dict[str, Any] = {
    "metadata": {"creationTimestamp": FIELDS_TIME, "generation": 1, "namespace": "bench", "managedFields": [
        {"apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {
            "f:internalTrafficPolicy": {}, "f:ipFamilies": {}, "f:ipFamilyPolicy": {},
            "f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {},
                                                            "f:targetPort": {}}},
            "f:selector": {"f:app": {}}, "f:sessionAffinity": {}, "f:type": {}}},
         "manager": "kubesim-client", "operation": "Update", "time": FIELDS_TIME}]},
    "spec": {"internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
             "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
             "sessionAffinity": "None", "type": "ClusterIP"},
    "status": {"loadBalancer": {}}}
SLICE: dict[str, Any] = {
    "metadata": {"creationTimestamp": FIELDS_TIME, "generation": 1, "namespace": "bench", "managedFields": [
        {"apiVersion": "discovery.k8s.io/v1", "fieldsType": "FieldsV1", "fieldsV1": {
            "f:addressType": {}, "f:endpoints": {}, "f:metadata": {"f:labels": {"f:kubernetes.io/service-name": {}}},
            "f:ports": {}}, "manager": "kubesim-client", "operation": "Update", "time": FIELDS_TIME}]},
    "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}
LIST_RV = "100000"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def objects(services: int, endpoints: int) -> dict[str, list[dict[str, Any]]]:
    svcs, slices = [], []
    for i in range(services):
        name = f"svc-{i:05d}"
        svc = copy.deepcopy(SERVICE)
        svc["metadata"].update(name=name, uid=f"{i:08x}-0000-4000-8000-000000000001", resourceVersion=str(i + 1))
        ip = f"10.96.{i // 250}.{i % 250 + 1}"
        svc["spec"].update(clusterIP=ip, clusterIPs=[ip], selector={"app": name})
        svcs.append(svc)
        eps = copy.deepcopy(SLICE)
        eps["metadata"].update(name=f"{name}-abcde", uid=f"{i:08x}-0000-4000-8000-000000000002",
                               resourceVersion=str(services + i + 1), labels={"kubernetes.io/service-name": name})
        eps["endpoints"] = [{"addresses": [f"10.{244 + k // 65536}.{k // 256 % 256}.{k % 256}"],
                             "conditions": {"ready": True}, "nodeName": f"node-{k % 100}"}
                            for k in range(i * endpoints, (i + 1) * endpoints)]
        slices.append(eps)
    return {"services": svcs, "endpointslices": slices}


def encoded_pages(items: list[dict[str, Any]], kind: str, limit: int) -> dict[int, bytes]:
    """start index -> the List body of the page starting there (limit 0: the whole list at 0)."""
    size = limit or len(items)
    pages = {}
    for start in range(0, len(items), size):
        meta: dict[str, Any] = {"resourceVersion": LIST_RV}
        if start + size < len(items):
            meta.update({"continue": str(start + size), "remainingItemCount": len(items) - start - size})
        pages[start] = json.dumps({"kind": kind, "apiVersion": "v1", "metadata": meta,
                                   "items": items[start:start + size]}).encode()
    return pages


class NullBackend:
    def sync(self, plan: Any, *, full: bool = False) -> None: ...
    def cleanup(self) -> None: ...
    def intact(self) -> bool:
        return True


async def child(services: int, endpoints: int, page_size: int, trace: bool) -> dict[str, Any]:
    # The server's bodies are made (and the objects they came from dropped) before the baseline.
    made = objects(services, endpoints)
    bodies = {(plural, limit): encoded_pages(items, f"{plural}List", limit)
              for plural, items in made.items() for limit in {0, page_size}}
    del made
    gc.collect()

    async def serve(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch"):
            return web.Response(text="")  # no events: the informers are stopped before they watch again
        plural = request.match_info["plural"]
        limit = int(request.query.get("limit", "0"))
        start = int(request.query.get("continue", "0"))
        return web.Response(body=bodies[(plural, limit)][start], content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/v1/{plural}", serve)
    app.router.add_get("/apis/discovery.k8s.io/v1/{plural}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = Client(f"http://127.0.0.1:{port}", timeout=300)
    try:
        proxy = ProxyServer(client, ProxyConfig(node_name="bench-node"), NullBackend())
        informers = (proxy.services, proxy.slices)
        for informer in informers:
            informer._page_size = page_size or None  # the one knob compared here (ProxyServer's is 500)
        gc.collect()
        before = rss_mb()
        if trace:
            tracemalloc.start()
        for informer in informers:  # one after the other, as the proxy's two lists mostly are
            informer.start()
            if not await informer.wait_synced(timeout=300):
                raise RuntimeError(f"{informer!r} did not sync")
            await informer.stop()
        gc.collect()
        stored = sum(len(i.store) for i in informers)
        if not trace:
            return {"objects": stored, "rss_growth_mb": round(rss_mb() - before, 1)}
        kept, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {"objects": stored, "kept_mb": round(kept / 2**20, 1), "peak_mb": round(peak / 2**20, 1)}
    finally:
        await client.close()
        await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", type=int, metavar="PAGE_SIZE", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args.services, args.endpoints, args.child, args.trace))))
        return 0
    result: dict[str, Any] = {"benchmark": "proxy_informer_memory", "services": args.services,
                              "endpoints_per_service": args.endpoints, "runs": args.runs}
    for name, page_size in (("paged", 500), ("whole", 0)):
        runs = []
        for _ in range(args.runs):
            run: dict[str, Any] = {}
            for trace in ([], ["--trace"]):
                done = subprocess.run([sys.executable, __file__, "--services", str(args.services), "--endpoints",
                                       str(args.endpoints), "--child", str(page_size), *trace],
                                      check=True, capture_output=True, text=True)
                run.update(json.loads(done.stdout))
            runs.append(run)
        result[name] = {"page_size": page_size or None,
                        **{k: statistics.median(r[k] for r in runs) for k in ("kept_mb", "peak_mb", "rss_growth_mb")},
                        "runs": runs}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
