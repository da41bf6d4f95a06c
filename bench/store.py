"""Latency of the store's operations on both backends; prints JSON.

    .venv/bin/python bench/store.py [--ops 1000] [--backends sqlite,etcd]

Per backend: p50 / p99 / max in milliseconds for sequential create, get, update (CAS), range
(a 500-item page of N keys), delete; the throughput of a burst of creates (--concurrency in
flight); then creates paced at --rate per second with --watchers watchers: write latency, watch
delivery latency (write sent -> event received, per watcher) and the longest event-loop stall; and,
for SQLite, one compaction of the whole history. The etcd numbers use an etcd of our own
(temporary data dir, loopback ports), stopped by pid at the end. SQLite runs with synchronous
NORMAL (the default) and FULL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from control.store import EtcdServer, EtcdStore, SQLiteStore, Store


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 3)

    return {"p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": round(ordered[-1] * 1000, 3),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3)}


async def timed(samples: list[float], op: Awaitable[Any]) -> Any:
    start = time.perf_counter()
    result = await op
    samples.append(time.perf_counter() - start)
    return result


async def measure(
    open_store: Callable[[], Awaitable[Store]], ops: int, concurrency: int, watchers: int, rate: float
) -> dict[str, Any]:
    store = await open_store()
    out: dict[str, Any] = {}
    try:
        keys = [f"/registry/pods/bench/p{i:06d}" for i in range(ops)]
        value = b"x" * 2048  # about a pod's size in JSON
        revs: dict[str, int] = {}
        for name in ("create", "get", "update", "range", "delete"):
            samples: list[float] = []
            if name == "create":
                for key in keys:
                    revs[key] = await timed(samples, store.create(key, value))
            elif name == "get":
                for key in keys:
                    await timed(samples, store.get(key))
            elif name == "update":
                for key in keys:
                    revs[key] = await timed(samples, store.update(key, value, expected_mod_revision=revs[key]))
            elif name == "range":
                for _ in range(max(10, ops // 20)):
                    await timed(samples, store.range("/registry/pods/bench/", limit=500))
            else:
                for key in keys:
                    await timed(samples, store.delete(key, expected_mod_revision=revs[key]))
            out[name] = summary(samples)

        # Burst: as many creates as --concurrency allows in flight.
        gate = asyncio.Semaphore(concurrency)

        async def burst(i: int) -> None:
            async with gate:
                await store.create(f"/registry/events/bench/e{i:06d}", value)

        started = time.perf_counter()
        await asyncio.gather(*(burst(i) for i in range(ops)))
        out["burst_create"] = {"concurrency": concurrency,
                               "writes_per_s": round(ops / (time.perf_counter() - started), 1)}

        # Paced: writes at --rate per second with --watchers watching; write latency, delivery
        # latency (write sent -> event received, per watcher) and event-loop stalls.
        watches = [await store.watch("/registry/services/") for _ in range(watchers)]
        sent: dict[str, float] = {}
        delivery: list[float] = []
        write_latency: list[float] = []
        stall = 0.0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal stall
            while not done.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                stall = max(stall, time.perf_counter() - before - 0.001)

        async def consume(watch: Any, count: int) -> None:
            for _ in range(count):
                event = await anext(watch)
                delivery.append(time.perf_counter() - sent[event.key])

        async def write(key: str) -> None:
            # Timed from the write's start: an event may arrive before the write's await returns.
            sent[key] = time.perf_counter()
            await timed(write_latency, store.create(key, value))

        tick = asyncio.create_task(ticker())
        consumers = [asyncio.create_task(consume(w, ops)) for w in watches]
        writes = []
        started = time.perf_counter()
        for i in range(ops):
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
            writes.append(asyncio.create_task(write(f"/registry/services/bench/s{i:06d}")))
        await asyncio.gather(*writes)
        await asyncio.wait_for(asyncio.gather(*consumers), 60)
        done.set()
        await tick
        out["paced"] = {
            "writes_per_s": rate,
            "create": summary(write_latency),
            "watchers": watchers,
            "watch_delivery": summary(delivery),
            "event_loop_max_stall_ms": round(stall * 1000, 3),
        }
        for w in watches:
            await w.close()

        if isinstance(store, SQLiteStore):
            start = time.perf_counter()
            await store.compact(await store.current_revision())
            out["compact_all_ms"] = round((time.perf_counter() - start) * 1000, 3)
    finally:
        await store.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="writes per second in the paced phase")
    parser.add_argument("--backends", default="sqlite,etcd")
    args = parser.parse_args()
    results: dict[str, Any] = {"ops": args.ops}
    with tempfile.TemporaryDirectory(prefix="kubesim-bench-store-") as tmp:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                for sync in ("NORMAL", "FULL"):
                    path = Path(tmp) / f"{sync}.db"

                    async def open_sqlite(path: Path = path, sync: str = sync) -> Store:
                        return await SQLiteStore.open(path, compact_interval=None, synchronous=sync)

                    results[f"sqlite_{sync.lower()}"] = await measure(
                        open_sqlite, args.ops, args.concurrency, args.watchers, args.rate)
            elif backend == "etcd":
                with EtcdServer(Path(tmp) / "etcd") as server:

                    async def open_etcd() -> Store:
                        return await EtcdStore.open(server.host, server.client_port, compact_interval=None)

                    results["etcd"] = await measure(open_etcd, args.ops, args.concurrency, args.watchers, args.rate)
            else:
                parser.error(f"unknown backend {backend!r}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
