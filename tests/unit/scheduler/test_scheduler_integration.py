"""The scheduler against a real apiserver (tests/harness.py), with the system:kube-scheduler identity."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from scheduler_testlib import node, pod, scheduler, wait_for

from control.client import EVENTS, NODES, PODS, REPLICA_SETS, SERVICES, Client, Informer, ServerError
from tests.harness import LocalAPIServer, local_apiserver

CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}

Body = Callable[[LocalAPIServer, Client, Informer], Awaitable[None]]


def run(tmp_path: Path, body: Body) -> None:
    """Runs BODY with an admin client and a started pod informer (to watch what the scheduler did)."""
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin = api.client("admin")
            pods = Informer(admin, PODS)
            pods.start()
            await pods.wait_synced(5)
            try:
                await asyncio.wait_for(body(api, admin, pods), 20)
            finally:
                await pods.stop()
    asyncio.run(main())


def node_of(pods: Informer, name: str, namespace: str = "default") -> str | None:
    obj = pods.store.get(name, namespace)
    return None if obj is None else (obj.get("spec") or {}).get("nodeName")


def condition(pods: Informer, name: str) -> dict[str, Any] | None:
    obj = pods.store.get(name, "default") or {}
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"),
                None)


async def events_for(admin: Client, name: str) -> list[dict[str, Any]]:
    items = (await admin.list(EVENTS, namespace="default"))["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def test_pods_are_bound_to_nodes_that_fit(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        await admin.create(NODES, node("small", cpu="1"))
        await admin.create(NODES, node("large", cpu="8"))
        async with scheduler(api):
            await admin.create(PODS, pod("web", cpu="2", memory="1Gi"))
            await wait_for(lambda: node_of(pods, "web"), what="web bound")
            assert node_of(pods, "web") == "large"
            assert condition(pods, "web") is not None and condition(pods, "web")["status"] == "True"  # type: ignore[index]
            scheduled = await wait_for_events(admin, "web", "Scheduled")
            assert scheduled[0]["message"] == "Successfully assigned default/web to large"
            assert scheduled[0]["source"]["component"] == "default-scheduler"
    run(tmp_path, body)


async def wait_for_events(admin: Client, name: str, reason: str) -> list[dict[str, Any]]:
    for _ in range(200):
        found = [e for e in await events_for(admin, name) if e["reason"] == reason]
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {reason} event for {name}")


def test_oversized_pod_stays_pending_until_a_big_node_arrives(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        await admin.create(NODES, node("control-plane", cpu="8", taints=[CONTROL_PLANE_TAINT]))
        await admin.create(NODES, node("worker-1", cpu="2"))
        await admin.create(NODES, node("worker-2", cpu="2"))
        async with scheduler(api) as s:
            await admin.create(PODS, pod("huge", cpu="5"))
            cond = await wait_for(lambda: condition(pods, "huge"), what="PodScheduled condition")
            message = (
                "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
                "2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for "
                "scheduling, 2 No preemption victims found for incoming pod.")
            assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
            assert cond["message"] == message
            failed = await wait_for_events(admin, "huge", "FailedScheduling")
            assert failed[0]["type"] == "Warning" and failed[0]["message"] == message
            assert node_of(pods, "huge") is None
            assert s.queue.pending()["unschedulable"] == ["default/huge"]

            await admin.create(NODES, node("worker-big", cpu="16"))
            await wait_for(lambda: node_of(pods, "huge"), what="huge bound after the big node came")
            assert node_of(pods, "huge") == "worker-big"
            assert condition(pods, "huge")["status"] == "True"  # type: ignore[index]
    run(tmp_path, body)


def test_tainted_nodes_get_only_pods_that_tolerate_them(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        taint = {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}
        await admin.create(NODES, node("tainted", cpu="64", taints=[taint]))
        await admin.create(NODES, node("plain", cpu="2"))
        async with scheduler(api):
            for i in range(4):
                await admin.create(PODS, pod(f"plain-{i}", cpu="100m"))
            await admin.create(PODS, pod("tolerant", cpu="4", tolerations=[
                {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}]))
            names = [f"plain-{i}" for i in range(4)] + ["tolerant"]
            await wait_for(lambda: all(node_of(pods, n) for n in names), what="all bound")
            assert {node_of(pods, f"plain-{i}") for i in range(4)} == {"plain"}
            assert node_of(pods, "tolerant") == "tainted"
    run(tmp_path, body)


def test_node_selector_is_honoured(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        await admin.create(NODES, node("hdd-1"))
        await admin.create(NODES, node("ssd-1", labels={"disk": "ssd"}))
        await admin.create(NODES, node("hdd-2"))
        async with scheduler(api):
            for i in range(3):
                await admin.create(PODS, pod(f"db-{i}", node_selector={"disk": "ssd"}))
            await admin.create(PODS, pod("nvme", node_selector={"disk": "nvme"}))
            await wait_for(lambda: all(node_of(pods, f"db-{i}") for i in range(3)), what="db pods bound")
            assert {node_of(pods, f"db-{i}") for i in range(3)} == {"ssd-1"}
            cond = await wait_for(lambda: condition(pods, "nvme"), what="nvme condition")
            assert cond["message"].startswith("0/3 nodes are available: 3 node(s) didn't match Pod's node "
                                              "affinity/selector. preemption: 0/3 nodes are available: "
                                              "3 Preemption is not helpful for scheduling.")
    run(tmp_path, body)


def test_pods_naming_another_scheduler_are_left_alone_until_it_runs(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        await admin.create(NODES, node("a", cpu="4"))
        await admin.create(NODES, node("b", cpu="4"))
        async with scheduler(api) as default:
            await admin.create(PODS, pod("theirs", scheduler="bin-packer", cpu="1"))
            await admin.create(PODS, pod("ours", cpu="1"))
            await wait_for(lambda: node_of(pods, "ours"), what="ours bound")
            # No waiting to see that nothing happens: the scheduler's informer hands it pods in the order
            # they were written, so once ours (created second) is bound, theirs has been seen and passed
            # over; had it been queued, it would be in the queue or bound ahead of ours.
            assert node_of(pods, "theirs") is None and condition(pods, "theirs") is None
            assert await events_for(admin, "theirs") == []
            assert "default/theirs" not in default.queue
            # A second scheduler, another name and profile, side by side with the first.
            async with scheduler(api, scheduler_name="bin-packer", profile="most-allocated"):
                await wait_for(lambda: node_of(pods, "theirs"), what="theirs bound by bin-packer")
                # Bin packing puts it next to "ours".
                assert node_of(pods, "theirs") == node_of(pods, "ours")
                scheduled = await wait_for_events(admin, "theirs", "Scheduled")
                assert scheduled[0]["source"]["component"] == "bin-packer"
    run(tmp_path, body)


def test_two_pods_never_take_the_last_slot(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        await admin.create(NODES, node("one", cpu="1"))
        await admin.create(NODES, node("two", cpu="4", pods=1))
        await admin.create(PODS, pod("existing", node_name="two"))
        # Both wait in the active queue before the scheduler starts, so they are decided back to back,
        # before either binding has come back through the informer.
        await admin.create(PODS, pod("first", cpu="600m"))
        await admin.create(PODS, pod("second", cpu="600m"))
        async with scheduler(api):
            await wait_for(lambda: condition(pods, "first") and condition(pods, "second"), what="both decided")
            bound = [n for n in ("first", "second") if node_of(pods, n)]
            assert len(bound) == 1 and node_of(pods, bound[0]) == "one"
            other = "second" if bound == ["first"] else "first"
            cond = await wait_for(lambda: (condition(pods, other) or {}).get("message"), what="message")
            assert cond.startswith("0/2 nodes are available: 1 Insufficient cpu, 1 Too many pods.")
            # Deleting the bound pod frees the slot: the other one is retried and gets it.
            await admin.delete(PODS, bound[0], namespace="default", grace_period_seconds=0)
            await wait_for(lambda: node_of(pods, other), what=f"{other} bound after the delete")
            assert node_of(pods, other) == "one"
    run(tmp_path, body)


def test_replica_set_pods_are_spread_over_nodes(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        for name in ("n1", "n2", "n3"):
            await admin.create(NODES, node(name, cpu="64", memory="256Gi"))
        rs = await admin.create(REPLICA_SETS, {
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "pause"}]}}}})
        await admin.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                      "metadata": {"name": "web", "namespace": "default"},
                                      "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
        owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": rs["metadata"]["uid"],
                 "controller": True}
        # Unrelated pods already on n1 weigh on least-allocated scoring, not on spreading.
        async with scheduler(api):
            for i in range(6):
                await admin.create(PODS, pod(f"web-{i}", labels={"app": "web"}, owner=owner))
                await wait_for(lambda i=i: node_of(pods, f"web-{i}"), what=f"web-{i} bound")  # type: ignore[misc]
            spread = Counter(node_of(pods, f"web-{i}") for i in range(6))
            assert spread == {"n1": 2, "n2": 2, "n3": 2}
    run(tmp_path, body)


def test_cordoned_and_not_ready_nodes_get_no_pods(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        await admin.create(NODES, node("cordoned", unschedulable=True))
        await admin.create(NODES, node("not-ready", taints=[{"key": "node.kubernetes.io/not-ready",
                                                             "effect": "NoSchedule"}]))
        await admin.create(NODES, node("ready", cpu="1"))
        async with scheduler(api):
            for i in range(3):
                await admin.create(PODS, pod(f"p-{i}"))
            await wait_for(lambda: all(node_of(pods, f"p-{i}") for i in range(3)), what="bound")
            assert {node_of(pods, f"p-{i}") for i in range(3)} == {"ready"}
            # Uncordoning is a cluster change: a pending pod that fits only there is retried.
            await admin.create(PODS, pod("wide", cpu="2"))
            await wait_for(lambda: condition(pods, "wide"), what="wide unschedulable")
            await admin.patch(NODES, "cordoned", {"spec": {"unschedulable": False}})
            await wait_for(lambda: node_of(pods, "wide"), what="wide bound after uncordon")
            assert node_of(pods, "wide") == "cordoned"
    run(tmp_path, body)


def test_a_failed_binding_is_forgotten_and_retried_after_backoff(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        await admin.create(NODES, node("only", cpu="1"))
        s = scheduler(api)
        real_bind = s.client.bind
        calls: list[str] = []

        async def flaky_bind(name: str, node_name: str, **kwargs: Any) -> dict[str, Any]:
            calls.append(name)
            if len(calls) == 1:
                raise ServerError(500, "InternalError", "etcd is having a bad day")
            return await real_bind(name, node_name, **kwargs)

        s.client.bind = flaky_bind  # type: ignore[method-assign]
        async with s:
            await admin.create(PODS, pod("p", cpu="800m"))
            cond = await wait_for(lambda: condition(pods, "p"), what="SchedulerError condition")
            assert cond["reason"] == "SchedulerError" and "etcd is having a bad day" in cond["message"]
            await wait_for(lambda: node_of(pods, "p"), what="p bound on the retry")
            assert calls == ["p", "p"] and s.stats.errors == 1
            only = s.cache.node("only")
            assert only is not None and only.requested.milli_cpu == 800  # charged once, not twice
            await wait_for(lambda: not s.cache.is_assumed("default/p"), what="assumption confirmed")
    run(tmp_path, body)


def test_deleting_a_pending_pod_drops_it_from_the_queue(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        await admin.create(NODES, node("small", cpu="1"))
        async with scheduler(api) as s:
            await admin.create(PODS, pod("big", cpu="2"))
            await wait_for(lambda: "default/big" in s.queue.pending()["unschedulable"], what="big unschedulable")
            await admin.delete(PODS, "big", namespace="default")
            await wait_for(lambda: len(s.queue) == 0, what="queue empty")
    run(tmp_path, body)


def test_gated_pods_wait_until_their_scheduling_gates_are_removed(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer) -> None:
        await admin.create(NODES, node("n"))
        async with scheduler(api) as s:
            gated = pod("gated")
            gated["spec"]["schedulingGates"] = [{"name": "example.com/quota"}]
            await admin.create(PODS, gated)
            await admin.create(PODS, pod("free"))
            await wait_for(lambda: node_of(pods, "free"), what="free bound")
            assert node_of(pods, "gated") is None and "default/gated" not in s.queue
            # Upstream's apiserver lets an update remove gates; ours refuses any spec change so far, so the
            # update is handed to the scheduler's informer handler as the watch would deliver it.
            old = s.pods.store.get("gated", "default")
            assert old is not None
            ungated = {**old, "spec": {k: v for k, v in old["spec"].items() if k != "schedulingGates"}}
            s._on_pod_update(old, ungated)
            await wait_for(lambda: node_of(pods, "gated"), what="gated bound once ungated")
    run(tmp_path, body)
