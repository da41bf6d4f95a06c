"""A pod's life on the kubelet, on fakes (FakeKernel sandboxes, FakeContainers, FakeClock) against a
real apiserver: admitted -> sandbox with its IPAM address -> Running and Ready; deleted -> containers
stopped, sandbox gone, address freed, the object deleted for good."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from control.client import PODS
from control.kubelet.logs import LogRequestError
from netsim import names
from tests.unit.kubelet.kit import Node, running_node

CONDITIONS = {"PodScheduled", "Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers"}


def test_an_admitted_pod_gets_a_sandbox_with_its_address_and_runs(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            pod = await node.create_pod("web")
            uid = pod["metadata"]["uid"]
            status = await node.eventually(
                lambda: _ready_status(node, "web"), "web Running and Ready")
            assert status["phase"] == "Running"
            ip = node.ipam()[uid]
            assert status["podIP"] == ip and status["podIPs"] == [{"ip": ip}]
            assert status["hostIP"] == "172.18.0.3"
            assert {c["type"]: c["status"] for c in status["conditions"]} == dict.fromkeys(CONDITIONS, "True")
            (container,) = status["containerStatuses"]
            assert container["ready"] is True and container["restartCount"] == 0
            assert "running" in container["state"]
            # The sandbox: a namespace whose eth0 has the address, a veth end on the node's cbr0 and a
            # default route via the bridge's address.
            ns = node.sandbox_ns("web")
            space = node.kernel.namespaces[ns]
            assert space.links[names.POD_IFACE].addresses == [f"{ip}/24"]
            assert any(r.dst == "0.0.0.0/0" and r.gateway == "10.244.1.1" for r in space.routes)
            host_end = node.kernel.namespaces[names.node_ns("unit", "worker-1")].links[names.pod_host_veth(uid)]
            assert host_end.master == names.NODE_BRIDGE and host_end.hairpin
            made = node.containers.latest("web", "c")
            assert made.netns == ns and made.running
            await node.eventually(lambda: node.events("web", "Started"), "the Started event")

    asyncio.run(main())


async def _ready_status(node: Node, pod: str) -> dict[str, Any] | None:
    status = await node.status(pod)
    ready = {c["type"]: c["status"] for c in status.get("conditions") or []}.get("Ready")
    return status if status.get("phase") == "Running" and ready == "True" else None


def test_two_pods_get_different_addresses_that_survive_a_kubelet_restart(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            for name in ("a", "b"):
                await node.create_pod(name)
            for name in ("a", "b"):
                await node.eventually(lambda n=name: _ready_status(node, n), f"{name} Ready")
            first = node.ipam()
            assert len(set(first.values())) == 2
            api, kernel = node.api, node.kernel
            assert node.task is not None
            node.task.cancel()
            await asyncio.gather(node.task, return_exceptions=True)
            node.task = None
        # Same apiserver, same kernel, same state directory: the live pods keep sandbox and address.
            async with running_node(tmp_path, api=api, kernel=kernel) as again:
                again.pods = node.pods
                await again.eventually(lambda: again.containers.made and len(again.containers.made) == 2,
                                       "both pods' containers started again")
                assert again.ipam() == first
                for name in ("a", "b"):
                    assert kernel.ns_exists(again.sandbox_ns(name))
                    assert (await again.status(name))["podIP"] == first[node.pods[name]["metadata"]["uid"]]

    asyncio.run(main())


def test_deleting_a_pod_stops_its_containers_removes_the_sandbox_frees_the_address(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            pod = await node.create_pod("doomed", terminationGracePeriodSeconds=7)
            uid = pod["metadata"]["uid"]
            await node.eventually(lambda: _ready_status(node, "doomed"), "doomed Ready")
            ns = node.sandbox_ns("doomed")
            container = node.containers.latest("doomed", "c")
            await node.admin.delete(PODS, "doomed", namespace="default")  # graceful: the kubelet finishes it
            await node.eventually(lambda: _gone(node, "doomed"), "doomed deleted from the API")
            assert container.stops == [7.0] and not container.running
            assert not node.kernel.ns_exists(ns)
            assert uid not in node.ipam()
            assert not node.kernel.link_exists(names.node_ns("unit", "worker-1"), names.pod_host_veth(uid))
            (delete,) = [c for c in node.deletes.calls if c["name"] == "doomed"]
            assert delete["grace_period_seconds"] == 0 and delete["preconditions"] == {"uid": uid}
            await node.eventually(lambda: node.events("doomed", "Killing"), "the Killing event")

    asyncio.run(main())


async def _gone(node: Node, pod: str) -> bool:
    return await node.pod(pod) is None


def test_container_logs_are_read_from_the_pods_directory(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path) as node:
            await node.create_pod("talker", [{"name": "a", "image": "pause"}, {"name": "b", "image": "pause"}])
            await node.eventually(lambda: _ready_status(node, "talker"), "talker Ready")
            for name in ("a", "b"):
                node.containers.latest("talker", name).log.write(f"hello from {name}")
            kubelet = node.kubelet
            assert await kubelet.container_log("default", "talker", None, None) == b"hello from a\n"
            assert await kubelet.container_log("default", "talker", "b", 1) == b"hello from b\n"
            with pytest.raises(LogRequestError) as missing:
                await kubelet.container_log("default", "talker", "c", None)
            assert missing.value.code == 404
            with pytest.raises(LogRequestError) as elsewhere:
                await kubelet.container_log("default", "not-here", None, None)
            assert elsewhere.value.code == 404 and "not on this node" in str(elsewhere.value)

    asyncio.run(main())
