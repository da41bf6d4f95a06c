"""VolumeBinding's PreBind against a real apiserver (tests/harness.py): the scheduler writes the selected node
on a pod's WaitForFirstConsumer claim and binds the pod only once the claim is bound there, without
holding up other pods meanwhile; a claim whose provisioner gives up (the annotation reset), or that is not
bound within the bind timeout, fails the binding cycle: FailedScheduling, the pod back in the queue, and
tried again. The test plays the PV controller and provisioner (control/controllers has the real ones)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from scheduler_testlib import node, pod, scheduler, wait_for

from control.api.storage import ANN_BIND_COMPLETED, ANN_SELECTED_NODE
from control.client import (
    EVENTS,
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    STORAGE_CLASSES,
    Client,
    Informer,
)
from control.scheduler import PodInfo
from control.scheduler._volumebinding import VolumeBindingFailed
from tests.harness import LocalAPIServer, local_apiserver

PROVISIONER = "rancher.io/local-path"


def run(tmp_path: Path, body: Any) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin = api.client("admin")
            pods, claims = Informer(admin, PODS), Informer(admin, PERSISTENT_VOLUME_CLAIMS)
            for informer in (pods, claims):
                informer.start()
                await informer.wait_synced(5)
            try:
                await admin.create(STORAGE_CLASSES, {
                    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "standard"},
                    "provisioner": PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer"})
                await admin.create(NODES, node("worker-1"))
                await asyncio.wait_for(body(api, admin, pods, claims), 30)
            finally:
                for informer in (pods, claims):
                    await informer.stop()
    asyncio.run(main())


def claim(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                     "resources": {"requests": {"storage": "1Gi"}}}}


def pod_with(name: str, claim_name: str) -> dict[str, Any]:
    body = pod(name)
    body["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]
    return body


def node_of(pods: Informer, name: str) -> str | None:
    obj = pods.store.get(name, "default")
    return None if obj is None else (obj.get("spec") or {}).get("nodeName")


def selected(claims: Informer, name: str) -> str | None:
    obj = claims.store.get(name, "default") or {}
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(ANN_SELECTED_NODE)


async def failures(admin: Client, name: str) -> list[str]:
    items = (await admin.list(EVENTS, namespace="default"))["items"]
    return [e["message"] for e in items if e["involvedObject"]["name"] == name and e["reason"] == "FailedScheduling"]


async def wait_for_failure(admin: Client, name: str) -> list[str]:
    for _ in range(500):
        found = await failures(admin, name)
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no FailedScheduling event for {name}")


async def provision(admin: Client, claim_name: str, on: str) -> None:
    """What the local-path provisioner and the PV controller do: a volume on node ON, bound to the claim."""
    current = await admin.get(PERSISTENT_VOLUME_CLAIMS, claim_name, namespace="default")
    volume = f"pvc-{current['metadata']['uid']}"
    await admin.create(PERSISTENT_VOLUMES, {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                 "hostPath": {"path": f"/srv/{volume}"},
                 "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": claim_name,
                              "uid": current["metadata"]["uid"]},
                 "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                     {"key": "kubernetes.io/hostname", "operator": "In", "values": [on]}]}]}}}})
    await admin.patch(PERSISTENT_VOLUME_CLAIMS, claim_name, {"spec": {"volumeName": volume}}, namespace="default")
    # Until bind-completed is written, the PV controller has not finished: the scheduler must keep waiting.
    await admin.patch(PERSISTENT_VOLUME_CLAIMS, claim_name,
                      {"metadata": {"annotations": {ANN_BIND_COMPLETED: "yes"}}}, namespace="default")


def test_the_pod_is_bound_only_once_its_claim_is_and_others_are_scheduled_meanwhile(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer, claims: Informer) -> None:
        await admin.create(PERSISTENT_VOLUME_CLAIMS, claim("data"), namespace="default")
        # One binding slot: the waiting binding must give it up, or "plain" would never be bound.
        async with scheduler(api, bind_concurrency=1) as s:
            await admin.create(PODS, pod_with("db", "data"))
            await wait_for(lambda: selected(claims, "data"), what="the selected node on the claim")
            assert selected(claims, "data") == "worker-1"
            await admin.create(PODS, pod("plain"))
            await wait_for(lambda: node_of(pods, "plain"), what="plain bound while db waits for its volume")
            assert node_of(pods, "db") is None
            assert s.cache.is_assumed("default/db")  # reserved on its node while it waits
            await provision(admin, "data", on="worker-1")
            await wait_for(lambda: node_of(pods, "db"), what="db bound once its claim is")
            assert node_of(pods, "db") == "worker-1"
            assert await failures(admin, "db") == []
            assert s.stats.errors == 0 and s.stats.scheduled == 2
    run(tmp_path, body)


def test_a_reset_annotation_fails_the_binding_cycle_and_the_pod_is_tried_again(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer, claims: Informer) -> None:
        await admin.create(PERSISTENT_VOLUME_CLAIMS, claim("data"), namespace="default")
        async with scheduler(api, bind_timeout=60) as s:
            await admin.create(PODS, pod_with("db", "data"))
            await wait_for(lambda: selected(claims, "data"), what="the selected node on the claim")
            # The provisioner gives up on the node (rescheduleProvisioning): it removes the annotation.
            await admin.patch(PERSISTENT_VOLUME_CLAIMS, "data",
                              {"metadata": {"annotations": {ANN_SELECTED_NODE: None}}}, namespace="default")
            messages = await wait_for_failure(admin, "db")
            assert messages[0] == 'running PreBind plugin "VolumeBinding": selectedNode annotation reset for PVC "data"'
            assert node_of(pods, "db") is None
            status = (pods.store.get("db", "default") or {}).get("status") or {}
            cond = next(c for c in status.get("conditions") or [] if c["type"] == "PodScheduled")
            assert (cond["status"], cond["reason"]) == ("False", "SchedulerError")
            assert s.stats.errors == 1
            # Back from the queue after its backoff: the node is selected again, and this time it is bound.
            await wait_for(lambda: selected(claims, "data"), what="the node selected again")
            await provision(admin, "data", on="worker-1")
            await wait_for(lambda: node_of(pods, "db"), what="db bound on the second try")
            assert node_of(pods, "db") == "worker-1"
    run(tmp_path, body)


def test_a_claim_not_bound_within_the_bind_timeout_fails_the_binding_cycle(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer, claims: Informer) -> None:
        await admin.create(PERSISTENT_VOLUME_CLAIMS, claim("data"), namespace="default")
        async with scheduler(api, bind_timeout=0.3) as s:
            await admin.create(PODS, pod_with("db", "data"))
            messages = await wait_for_failure(admin, "db")
            assert messages[0] == ('running PreBind plugin "VolumeBinding": binding volumes: timed out waiting for '
                                   "the condition (0.3 s)")
            assert node_of(pods, "db") is None and s.stats.errors >= 1 and s.stats.scheduled == 0
    run(tmp_path, body)


def test_a_pod_deleted_while_it_waits_is_given_up_without_an_error(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer, claims: Informer) -> None:
        await admin.create(PERSISTENT_VOLUME_CLAIMS, claim("data"), namespace="default")
        async with scheduler(api) as s:
            await admin.create(PODS, pod_with("db", "data"))
            await wait_for(lambda: selected(claims, "data"), what="the selected node on the claim")
            await wait_for(lambda: s.cache.is_assumed("default/db"), what="db assumed")
            await admin.delete(PODS, "db", namespace="default", grace_period_seconds=0)
            await wait_for(lambda: not s.cache.is_assumed("default/db"), what="the assumed place forgotten")
            assert s.stats.errors == 0 and s.stats.scheduled == 0
            assert await failures(admin, "db") == []
    run(tmp_path, body)


def test_the_bind_timeout_must_be_positive(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer, claims: Informer) -> None:
        try:
            scheduler(api, bind_timeout=0)
        except ValueError as exc:
            assert "bind_timeout" in str(exc)
        else:
            raise AssertionError("bind_timeout=0 was accepted")
    run(tmp_path, body)


def test_a_claim_gone_from_the_apiserver_is_a_binding_failure_not_a_deleted_pod(tmp_path: Path) -> None:
    async def body(api: LocalAPIServer, admin: Client, pods: Informer, claims: Informer) -> None:
        s = scheduler(api)  # not started: its informer holds a claim the apiserver no longer has
        s.storage_classes.store.put({"metadata": {"name": "standard"}, "provisioner": PROVISIONER,
                                     "volumeBindingMode": "WaitForFirstConsumer"})
        s.claims.store.put({**claim("data"), "metadata": {"name": "data", "namespace": "default"}})
        assumed = PodInfo.of({**pod_with("db", "data"), "metadata": {"name": "db", "namespace": "default"},
                              "spec": {**pod_with("db", "data")["spec"], "nodeName": "worker-1"}})
        with pytest.raises(VolumeBindingFailed, match='pvc "default/data" was deleted'):
            await s._select_node_for_claims(assumed)
    run(tmp_path, body)
