"""Load-balancer IPs from --lb-pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from controllers_kit import cluster, eventually, run

from control.client import EVENTS, SERVICES, Client
from control.controllers import Pool, parse_pool


def lb(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"type": "LoadBalancer", "selector": {"app": name},
                                                 "ports": [{"port": 80}], **spec}}


async def ingress(client: Client, name: str) -> list[str]:
    svc = await client.get(SERVICES, name, namespace="default")
    return [i["ip"] for i in (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []]


def test_lb_ips_assigned_from_the_pool_and_released(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "service-lb", lb_pool="172.18.255.200-172.18.255.201") as (_, admin):
            await admin.create(SERVICES, lb("a"), namespace="default")

            async def has(name: str, ip: str) -> bool:
                return await ingress(admin, name) == [ip]

            await eventually(lambda: has("a", "172.18.255.200"), what="a gets .200")
            await admin.create(SERVICES, lb("b"), namespace="default")
            await eventually(lambda: has("b", "172.18.255.201"), what="b gets .201")
            await admin.create(SERVICES, lb("c"), namespace="default")
            await admin.create(SERVICES, {"metadata": {"name": "plain"}, "spec": {"ports": [{"port": 80}]}},
                               namespace="default")
            # The pool is exhausted: c waits (the controller says so, then c still has none).
            async def c_refused() -> bool:
                events = (await admin.list(EVENTS, namespace="default"))["items"]
                return any(e["reason"] == "AllocationFailed" and e["involvedObject"]["name"] == "c" for e in events)

            await eventually(c_refused, what="c's AllocationFailed event")
            assert await ingress(admin, "c") == []

            await admin.delete(SERVICES, "a", namespace="default")
            await eventually(lambda: has("c", "172.18.255.200"), what="c gets a's address")
            # The controller has handled everything created before: a ClusterIP service never gets one.
            assert await ingress(admin, "plain") == []

            # b turns ClusterIP: its address goes back and its status is cleared.
            svc_b = await admin.get(SERVICES, "b", namespace="default")
            svc_b["spec"]["type"] = "ClusterIP"
            for port in svc_b["spec"]["ports"]:
                port.pop("nodePort", None)
            await admin.update(SERVICES, svc_b)

            async def b_cleared() -> bool:
                return await ingress(admin, "b") == []

            await eventually(b_cleared, what="b released")
            await admin.create(SERVICES, lb("d", loadBalancerIP="172.18.255.201"), namespace="default")
            await eventually(lambda: has("d", "172.18.255.201"), what="d gets the address it asked for")

    run(main)


def test_pool_parsing() -> None:
    pool = Pool(parse_pool("10.0.0.0/30, 192.0.2.7,172.18.255.200-172.18.255.202"))
    assert list(pool.addresses()) == ["10.0.0.1", "10.0.0.2", "192.0.2.7", "172.18.255.200", "172.18.255.201",
                                      "172.18.255.202"]
    assert "172.18.255.201" in pool and "172.18.255.203" not in pool
    with pytest.raises(ValueError, match="lb-pool"):
        parse_pool("nonsense")
    with pytest.raises(ValueError, match="ends before"):
        parse_pool("10.0.0.5-10.0.0.1")
