"""What the runtime's streaming server and the kubelet's relay cost an exec session; prints JSON.

    .venv/bin/python bench/stream_relay.py [--sessions 50] [--megabytes 16] [--runs 3]

Two ways to the same command (a real process, run where the benchmark runs: no namespace, no
privilege): `direct`, the session served by the process the client speaks to (the kubelet before
the runtime served streams), and `relayed`, the client's WebSocket spliced by streamrelay to the node
runtime's streaming server on its Unix socket (FakeKernel sandbox, real socket, real processes). For
each: --sessions concurrent `sh -c 'echo ok'` sessions (latency per session, p50/p99, and the wall
time of all), and one session copying --megabytes of output (MB/s). Medians over --runs runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

# bench/ is sys.path[0] when a benchmark is run as a script (`python bench/X.py`), as `make bench` does.
from benchstats import median_of, summary_ms

from control.api import remotecommand as rc
from control.kubelet import streaming, streamrelay
from control.kubelet.fake import FakeContainers
from control.kubelet.streaming import PodProcessTarget, Streams
from control.runtime import Runtime, RuntimeClient
from control.runtime.server import serving
from netsim import names
from netsim.fake import FakeKernel

CLUSTER, NODE, CIDR = "bench", "worker-1", "10.244.1.0/24"


def _here(target: PodProcessTarget, argv: list[str]) -> list[str]:
    return argv


async def _session(client: TestClient, params: dict[str, str]) -> tuple[float, int]:
    """One session to its end: (seconds, bytes of stdout)."""
    started = time.perf_counter()
    got = 0
    ws = await client.ws_connect("/exec", params=params, protocols=(rc.V5, rc.V4))
    async for message in ws:
        channel, data = rc.decode(message.data)
        if channel == rc.STDOUT:
            got += len(data)
    return time.perf_counter() - started, got


async def _measure(client: TestClient, make_params: Any, sessions: int, megabytes: int) -> dict[str, float]:
    started = time.perf_counter()
    results = await asyncio.gather(*(_session(client, make_params(["sh", "-c", "echo ok"])) for _ in range(sessions)))
    wall = time.perf_counter() - started
    assert all(got == 3 for _, got in results)
    seconds, got = await _session(client, make_params(["head", "-c", f"{megabytes}M", "/dev/zero"]))
    assert got == megabytes * 1024 * 1024
    summary = summary_ms([s for s, _ in results])
    return {"session_p50_ms": summary["p50_ms"], "session_p99_ms": summary["p99_ms"],
            "wall_ms": round(wall * 1000, 1), "bulk_mb_per_s": round(megabytes / seconds, 1)}


async def direct(sessions: int, megabytes: int) -> dict[str, float]:
    async def exec_(request: web.Request) -> web.StreamResponse:
        return await streaming.exec_session(request, PodProcessTarget("unused"), request.query.getall("command"),
                                            Streams(False, True, False, False), enter=_here)

    app = web.Application()
    app.router.add_get("/exec", exec_)
    async with TestClient(TestServer(app)) as client:
        return await _measure(client, lambda argv: [("command", a) for a in argv], sessions, megabytes)


async def relayed(sessions: int, megabytes: int, tmp: Path) -> dict[str, float]:
    kernel = FakeKernel()
    kernel.ns_create(names.node_ns(CLUSTER, NODE))
    kernel.add_bridge(names.node_ns(CLUSTER, NODE), names.NODE_BRIDGE)
    runtime = Runtime(CLUSTER, NODE, CIDR, tmp / "node", kernel=kernel, containers=FakeContainers(), enter=_here)
    runtime_client = RuntimeClient(tmp / "runtime.sock")
    async with serving(runtime, tmp / "runtime.sock"):
        await runtime_client.call("RunPodSandbox", {"uid": "u", "name": "p", "namespace": "default",
                                                    "ip": "10.244.1.2", "place": {}})
        cid = (await runtime_client.call("CreateContainer", {"podSandboxId": "u", "spec": {"name": "c"},
                                                              "logPath": str(tmp / "c.log")}))["containerId"]
        await runtime_client.call("StartContainer", {"containerId": cid})

        async def exec_(request: web.Request) -> web.StreamResponse:
            # the kubelet's part: ask the runtime for the session, splice the client to it
            answer = await runtime_client.call("Exec", {"containerId": cid, "cmd": request.query.getall("command"),
                                                        "stdout": True})
            return await streamrelay.relay(request, runtime_client, answer["url"])

        app = web.Application()
        app.router.add_get("/exec", exec_)
        try:
            async with TestClient(TestServer(app)) as client:
                return await _measure(client, lambda argv: [("command", a) for a in argv], sessions, megabytes)
        finally:
            await runtime_client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--megabytes", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, Any] = {"sessions": args.sessions, "megabytes": args.megabytes, "runs": args.runs}
    for name in ("direct", "relayed"):
        runs = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="kubesim-bench-") as tmp:
                work = direct(args.sessions, args.megabytes) if name == "direct" else \
                    relayed(args.sessions, args.megabytes, Path(tmp))
                runs.append(asyncio.run(work))
        out[name] = median_of(runs)
    out["relay_overhead_p50_ms"] = round(out["relayed"]["session_p50_ms"] - out["direct"]["session_p50_ms"], 2)
    out["statistic"] = f"median of {args.runs} runs"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
