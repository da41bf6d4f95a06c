"""The kubelet's node and its sandboxes on fakes: registration and the Lease heartbeat; a restart
finds the sandboxes an earlier run left for pods that are gone and removes them with whatever still
runs in them; a full pod CIDR is a FailedCreatePodSandBox event until an address frees up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from control.client import LEASES, NODES, PODS, NotFound
from netsim import names
from netsim.sandbox import create_sandbox, sandbox_for
from tests.harness import local_apiserver
from tests.unit.kubelet.kit import CLUSTER, NODE, POD_CIDR, Node, node_kernel, running_node, write_ipam


def test_the_node_registers_and_keeps_its_lease(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_node(tmp_path, labels={"tier": "edge"}, heartbeat_period=2.0) as node:
            registered = await node.admin.get(NODES, NODE)
            assert registered["metadata"]["labels"]["tier"] == "edge"
            assert registered["metadata"]["labels"]["kubernetes.io/hostname"] == NODE
            assert registered["spec"]["podCIDR"] == POD_CIDR
            ready = next(c for c in registered["status"]["conditions"] if c["type"] == "Ready")
            assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
            assert {"type": "InternalIP", "address": "172.18.0.3"} in registered["status"]["addresses"]
            lease = await node.eventually(lambda: _lease(node), "the node's Lease")
            assert lease["spec"]["holderIdentity"] == NODE and lease["spec"]["leaseDurationSeconds"] == 40
            # The heartbeat runs on the kubelet's clock: a Lease taken away comes back one period on.
            await node.admin.delete(LEASES, NODE, namespace="kube-node-lease")
            assert await _lease(node) is None
            await node.eventually(lambda: 1000.0 + 2.0 in node.clock.deadlines(), "the heartbeat asleep")
            await node.clock.advance(2.0)
            await node.eventually(lambda: _lease(node), "the Lease renewed")

    asyncio.run(main())


async def _lease(node: Node) -> dict[str, Any] | None:
    try:
        return await node.admin.get(LEASES, NODE, namespace="kube-node-lease")
    except NotFound:
        return None


def test_a_restarted_kubelet_removes_orphan_sandboxes_and_kills_what_runs_in_them(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin = api.client("admin")
            live = await admin.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "live"},
                                             "spec": {"nodeName": NODE, "containers": [{"name": "c",
                                                                                         "image": "pause"}]}},
                                      namespace="default")
            live_uid = live["metadata"]["uid"]
            # What a SIGKILLed kubelet left: sandboxes and addresses of a pod still bound here and of one
            # since deleted (a process container still running in it), and another node's pod sandbox.
            kernel = node_kernel()
            left = {live_uid: "10.244.1.3", "gone-uid": "10.244.1.4"}
            for uid, ip in left.items():
                create_sandbox(sandbox_for(CLUSTER, NODE, POD_CIDR, uid, ip), kernel=kernel)
            gone_ns, live_ns = names.pod_ns(CLUSTER, "gone-uid"), names.pod_ns(CLUSTER, live_uid)
            kernel.namespaces[gone_ns].processes = [4242, 4243]
            kernel.ns_create(names.pod_ns(CLUSTER, "other-node-uid"))
            write_ipam(tmp_path / "kubelet", left)

            async with running_node(tmp_path, api=api, kernel=kernel) as node:
                node.pods["live"] = live
                await node.eventually(lambda: not kernel.ns_exists(gone_ns), "the orphan sandbox removed")
                assert kernel.killed == {gone_ns: [4242, 4243]}
                assert not kernel.link_exists(names.node_ns(CLUSTER, NODE), names.pod_host_veth("gone-uid"))
                await node.eventually(lambda: "gone-uid" not in node.ipam(), "the orphan's address released")
                # The live pod keeps its sandbox and address; another node's pod is not ours to touch.
                assert kernel.ns_exists(live_ns)
                assert kernel.ns_exists(names.pod_ns(CLUSTER, "other-node-uid"))
                status = await node.eventually(lambda: node.status("live"), "live's status")
                assert status["podIP"] == "10.244.1.3"
                assert node.ipam() == {live_uid: "10.244.1.3"}

    asyncio.run(main())


def test_a_full_pod_cidr_is_an_event_and_the_pod_starts_when_an_address_frees(tmp_path: Path) -> None:
    async def main() -> None:
        # A /30 has one pod address: .0 is the network, .1 the bridge, .3 the broadcast address.
        async with running_node(tmp_path, pod_cidr="10.244.1.0/30", restart_backoff=5.0) as node:
            await node.create_pod("first")
            await node.eventually(lambda: _phase(node, "first", "Running"), "first Running")
            await node.create_pod("second")
            await node.eventually(lambda: node.events("second", "FailedCreatePodSandBox"), "FailedCreatePodSandBox")
            (event,) = await node.events("second", "FailedCreatePodSandBox")
            assert event["type"] == "Warning"
            assert "no free address left in pod CIDR 10.244.1.0/30" in event["message"]
            status = await node.eventually(lambda: node.status("second"), "second's status")
            assert status["phase"] == "Pending" and "podIP" not in status
            (entry,) = status["containerStatuses"]
            assert entry["state"]["waiting"]["reason"] == "ContainerCreating"
            started = next(c for c in status["conditions"] if c["type"] == "PodReadyToStartContainers")
            assert started["status"] == "False"
            assert node.containers.of("second", "c") == []

            await node.admin.delete(PODS, "first", namespace="default")
            await node.eventually(lambda: _gone(node, "first"), "first deleted")
            await node.clock.advance(5.0)
            await node.eventually(lambda: _phase(node, "second", "Running"), "second Running")
            assert (await node.status("second"))["podIP"] == "10.244.1.2"

    asyncio.run(main())


async def _phase(node: Node, pod: str, phase: str) -> bool:
    return (await node.status(pod)).get("phase") == phase


async def _gone(node: Node, pod: str) -> bool:
    return await node.pod(pod) is None
