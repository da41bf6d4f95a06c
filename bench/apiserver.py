"""The apiserver's latency and watch fan-out on both stores; prints JSON (issue #3's targets).

    .venv/bin/python bench/apiserver.py [--ops 500] [--rate 200] [--watchers 200] [--updates 1000]

For each store (SQLite in a temp dir; etcd: a real etcd-server of our own on loopback ports), a real
apiserver (the registry, the HTTP layer, authn/authz) is served over HTTPS on loopback in a process
of its own, and a client process measures:
  - create / update / get / list (100 items) latency p50/p99 and throughput, sequentially;
  - mutating latency with writes paced at --rate per second (target: p99 <= 50 ms at 200/s, SQLite);
  - watch fan-out: --watchers concurrent watches of Services while --updates updates are made;
    delivery latency (update acknowledged -> event received) p50/p99 over every watcher and event
    (target: p99 <= 100 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from control.apiserver.auth import write_token_file
from control.apiserver.certs import make_certificates
from control.store import EtcdServer

TOKEN = "bench-admin-token"


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 2) if ordered else 0.0


def stats(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": pct(samples, 0.5), "p99_ms": pct(samples, 0.99), "count": len(samples)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_apiserver(workdir: Path, store_url: str) -> tuple[subprocess.Popen[bytes], str, ssl.SSLContext]:
    make_certificates(workdir, addresses=["127.0.0.1"])
    write_token_file(workdir / "tokens.csv", [(TOKEN, "kubernetes-admin", ("system:masters",))])
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "control.apiserver", "--store", store_url,
                             "--bind-address", "127.0.0.1", "--secure-port", str(port), "--advertise-address",
                             "127.0.0.1", "--tls-cert-file", str(workdir / "apiserver.crt"),
                             "--tls-private-key-file", str(workdir / "apiserver.key"),
                             "--token-auth-file", str(workdir / "tokens.csv")],
                            stdout=subprocess.DEVNULL, stderr=open(workdir / "apiserver.log", "wb"))  # noqa: SIM115
    context = ssl.create_default_context(cafile=str(workdir / "ca.crt"))
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.3)
    return proc, url, context


async def measure(url: str, context: ssl.SSLContext, args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    connector = aiohttp.TCPConnector(ssl=context, limit=0)
    results: dict[str, Any] = {}
    base = f"{url}/api/v1/namespaces/default"
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def call(method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
            async with session.request(method, f"{base}{path}", data=json.dumps(body) if body is not None else None,
                                       headers={"Content-Type": content_type}) as resp:
                data = await resp.json()
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {path}: {resp.status} {data.get('message')}")
                return data

        for _ in range(50):  # wait for readiness
            try:
                await call("GET", "/configmaps")
                break
            except (aiohttp.ClientError, RuntimeError):
                await asyncio.sleep(0.2)

        for verb in ("create", "update", "get"):
            samples: list[float] = []
            start_all = time.perf_counter()
            for i in range(args.ops):
                start = time.perf_counter()
                if verb == "create":
                    await call("POST", "/configmaps", {"metadata": {"name": f"cm-{i}"}, "data": {"k": "v"}})
                elif verb == "update":
                    await call("PATCH", f"/configmaps/cm-{i}", {"data": {"k": str(i)}},
                               "application/merge-patch+json")
                else:
                    await call("GET", f"/configmaps/cm-{i}")
                samples.append(time.perf_counter() - start)
            results[verb] = {**stats(samples), "per_second": round(args.ops / (time.perf_counter() - start_all), 1)}
        samples = []
        for _ in range(50):
            start = time.perf_counter()
            await call("GET", "/configmaps?limit=100")
            samples.append(time.perf_counter() - start)
        results["list_100"] = stats(samples)

        paced: list[float] = []
        interval = 1.0 / args.rate

        async def one(i: int) -> None:
            start = time.perf_counter()
            await call("PATCH", f"/configmaps/cm-{i % args.ops}", {"data": {"paced": str(i)}},
                       "application/merge-patch+json")
            paced.append(time.perf_counter() - start)

        tasks = []
        begin = time.perf_counter()
        for i in range(args.rate * 3):
            tasks.append(asyncio.ensure_future(one(i)))
            await asyncio.sleep(max(0.0, begin + (i + 1) * interval - time.perf_counter()))
        await asyncio.gather(*tasks)
        results[f"mutating_at_{args.rate}_per_second"] = stats(paced)

        await call("POST", "/services", {"metadata": {"name": "fanout"}, "spec": {"ports": [{"port": 80}]}})
        current = await call("GET", "/services/fanout")
        sent: dict[str, float] = {}
        delivery: list[float] = []
        ready = asyncio.Event()
        connected = 0

        async def watcher() -> None:
            nonlocal connected
            params = {"watch": "1", "resourceVersion": current["metadata"]["resourceVersion"],
                      "fieldSelector": "metadata.name=fanout", "timeoutSeconds": "120"}
            async with session.get(f"{base}/services", params=params,
                                   timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                connected += 1
                if connected == args.watchers:
                    ready.set()
                seen = 0
                async for line in resp.content:
                    event = json.loads(line)
                    marker = ((event["object"].get("metadata") or {}).get("annotations") or {}).get("bench")
                    if marker in sent:
                        delivery.append(time.perf_counter() - sent[marker])
                        seen += 1
                        if seen == args.updates:
                            return

        watchers = [asyncio.ensure_future(watcher()) for _ in range(args.watchers)]
        await asyncio.wait_for(ready.wait(), 60)
        start_updates = time.perf_counter()
        for i in range(args.updates):
            marker = str(i)
            sent[marker] = time.perf_counter()
            await call("PATCH", "/services/fanout", {"metadata": {"annotations": {"bench": marker}}},
                       "application/merge-patch+json")
        await asyncio.wait_for(asyncio.gather(*watchers), 120)
        results["watch_fanout"] = {"watchers": args.watchers, "updates": args.updates,
                                   "delivery": stats(delivery),
                                   "updates_per_second": round(args.updates / (time.perf_counter() - start_updates),
                                                               1)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=500)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--stores", default="sqlite,etcd")
    args = parser.parse_args()
    report: dict[str, Any] = {"benchmark": "apiserver", "ops": args.ops}
    for store in args.stores.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            etcd = None
            if store == "etcd":
                etcd = EtcdServer(work / "etcd")
                etcd.start()
                store_url = f"etcd://127.0.0.1:{etcd.client_port}"
            else:
                store_url = f"sqlite://{work / 'store.db'}"
            proc, url, context = start_apiserver(work, store_url)
            try:
                report[store] = asyncio.run(measure(url, context, args))
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                if etcd is not None:
                    etcd.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
