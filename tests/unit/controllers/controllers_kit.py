"""Helpers for the controller tests: run a controller-manager against the real apiserver harness and
play the kubelet by writing pod status ourselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from control.client import PODS, Client
from control.controllers import ControllerManager, Options
from tests.harness import LocalAPIServer, local_apiserver

FAST = {"base_backoff": 0.01, "max_backoff": 0.5, "resync_period": 2.0, "namespace_recheck": 0.2,
        "node_monitor_period": 0.1, "max_requeue": 1.0}


def run(main: Callable[[], Awaitable[None]], timeout: float = 30.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(main(), timeout)

    asyncio.run(bounded())


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0, interval: float = 0.05,
                     what: str = "condition") -> Any:
    """Polls the async CHECK until it returns something truthy; AssertionError with the last value if not."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s; last: {last!r}")
        await asyncio.sleep(interval)


@asynccontextmanager
async def cluster(tmp_path: Path, *controllers: str, **options: Any) -> AsyncIterator[tuple[LocalAPIServer, Client]]:
    """A real apiserver with the given controllers running; yields (api, admin client)."""
    async with local_apiserver(tmp_path) as api:
        opts = Options(**{**FAST, **options})
        async with ControllerManager(api.client("controller-manager"), opts, controllers=controllers or ("*",)):
            yield api, api.client("admin")


def pod_template(labels: dict[str, str], image: str = "registry.k8s.io/pause:3.9") -> dict[str, Any]:
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "c", "image": image,
                                     "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]}}


async def set_pod_status(client: Client, pod: dict[str, Any], *, ip: str | None = None, ready: bool = True,
                         phase: str = "Running", when: str | None = None) -> dict[str, Any]:
    """What the kubelet does: phase, podIP and the Ready condition."""
    fresh = await client.get(PODS, pod["metadata"]["name"], namespace=pod["metadata"]["namespace"])
    stamp = when or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = dict(fresh.get("status") or {})
    status["phase"] = phase
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    conditions = [c for c in status.get("conditions") or [] if c.get("type") not in ("Ready", "ContainersReady")]
    flag = "True" if ready else "False"
    conditions += [{"type": "Ready", "status": flag, "lastTransitionTime": stamp},
                   {"type": "ContainersReady", "status": flag, "lastTransitionTime": stamp}]
    status["conditions"] = conditions
    fresh["status"] = status
    return await client.update_status(PODS, fresh)


async def pods_of(client: Client, namespace: str = "default", selector: str | None = None,
                  active: bool = True) -> list[dict[str, Any]]:
    items = (await client.list(PODS, namespace=namespace, label_selector=selector))["items"]
    if active:
        items = [p for p in items if not p["metadata"].get("deletionTimestamp")]
    return list(items)
