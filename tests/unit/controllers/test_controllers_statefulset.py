"""The StatefulSet controller against the real apiserver, with the test playing the kubelet."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from control.apiserver.defaults import default
from control.apiserver.validation import validate, validate_update
from control.client import PODS, STATEFUL_SETS, Client, Informer, Invalid, NotFound
from tests.unit.controllers.controllers_kit import cluster, eventually, run, set_pod_status


def stateful_set(name: str = "web", replicas: int = 3, image: str = "web:1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": "web-svc", "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}, **spec}}


async def pods(client: Client) -> dict[str, dict[str, Any]]:
    listed = await client.list(PODS, namespace="default", label_selector="app=web")
    return {p["metadata"]["name"]: p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")}


async def status(client: Client) -> dict[str, Any]:
    return dict((await client.get(STATEFUL_SETS, "web", namespace="default")).get("status") or {})


def ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def test_defaults_and_validation() -> None:
    obj = stateful_set()
    default("StatefulSet", obj)
    spec = obj["spec"]
    assert (spec["podManagementPolicy"], spec["updateStrategy"], spec["revisionHistoryLimit"]) == (
        "OrderedReady", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}, 10)
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert validate("StatefulSet", obj) == []
    bad = stateful_set(podManagementPolicy="Random", updateStrategy={"type": "OnDelete",
                                                                     "rollingUpdate": {"partition": 1}})
    default("StatefulSet", bad)
    assert [(e.field, e.message) for e in validate("StatefulSet", bad)] == [
        ("spec.podManagementPolicy", 'Unsupported value: "Random": supported values: "OrderedReady", "Parallel"'),
        ("spec.updateStrategy.rollingUpdate",
         "Invalid value: {\"partition\":1}: only allowed for updateStrategy 'RollingUpdate'")]
    renamed = stateful_set()
    default("StatefulSet", renamed)
    renamed["spec"]["serviceName"] = "other"
    assert [e.field for e in validate_update("StatefulSet", renamed, obj)] == ["spec"]
    claims = stateful_set(volumeClaimTemplates=[{"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}])
    claims["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/d"}]
    default("StatefulSet", claims)
    assert validate("StatefulSet", claims) == []  # the mount names the claim template
    claims["spec"]["volumeClaimTemplates"] = [{"metadata": {}, "spec": {"accessModes": ["ReadWriteOnce"]}}]
    claims["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = []
    assert [(e.field, e.message) for e in validate("StatefulSet", claims)] == [
        ("spec.volumeClaimTemplates[0].metadata.name", "Required value"),
        ("spec.volumeClaimTemplates[0].spec.resources[storage]", "Required value")]


def test_ordered_ready_creates_in_order_keeps_names_and_scales_down_in_reverse(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "statefulset") as (_, admin):
            await admin.create(STATEFUL_SETS, stateful_set(), namespace="default")
            first = await eventually(lambda: _names(admin, ["web-0"]), what="web-0 alone")
            web0 = first["web-0"]
            assert (web0["spec"]["hostname"], web0["spec"]["subdomain"]) == ("web-0", "web-svc")
            labels = web0["metadata"]["labels"]
            assert (labels["statefulset.kubernetes.io/pod-name"], labels["apps.kubernetes.io/pod-index"]) == \
                ("web-0", "0")
            # web-1 waits for web-0 to be Running and Ready.
            await set_pod_status(admin, web0, ready=False)
            await eventually(lambda: _status_is(admin, replicas=1, readyReplicas=0), what="one not ready")
            assert list(await pods(admin)) == ["web-0"]
            await set_pod_status(admin, web0)
            second = await eventually(lambda: _names(admin, ["web-0", "web-1"]), what="web-1 after web-0")
            await set_pod_status(admin, second["web-1"])
            third = await eventually(lambda: _names(admin, ["web-0", "web-1", "web-2"]), what="web-2")
            await set_pod_status(admin, third["web-2"])
            st = await eventually(lambda: _status_is(admin, replicas=3, readyReplicas=3, availableReplicas=3),
                                  what="all ready")
            assert st["currentRevision"] == st["updateRevision"] == labels["controller-revision-hash"]
            # A deleted pod comes back under its own name.
            uid = third["web-0"]["metadata"]["uid"]
            await admin.delete(PODS, "web-0", namespace="default")
            again = await eventually(lambda: _names(admin, ["web-0", "web-1", "web-2"], not_uid=("web-0", uid)),
                                     what="web-0 again")
            assert again["web-0"]["spec"]["hostname"] == "web-0"
            await set_pod_status(admin, again["web-0"])
            # Scale to 1: web-2 goes first, then web-1 (the order a pod watch sees them deleted in).
            deleted: list[str] = []
            watcher = Informer(admin, PODS)
            watcher.add_handler(on_delete=lambda pod: deleted.append(pod["metadata"]["name"]))
            watcher.start()
            assert await watcher.wait_synced(5.0)
            try:
                await admin.patch(STATEFUL_SETS, "web", {"spec": {"replicas": 1}}, namespace="default")
                await eventually(lambda: _names(admin, ["web-0"]), what="scaled to one")
                await eventually(lambda: _true(len(deleted) == 2), what="both deletions watched")
            finally:
                await watcher.stop()
            assert deleted == ["web-2", "web-1"]

    run(main)


def test_parallel_creates_all_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "statefulset") as (_, admin):
            await admin.create(STATEFUL_SETS, stateful_set(podManagementPolicy="Parallel"), namespace="default")
            await eventually(lambda: _names(admin, ["web-0", "web-1", "web-2"]), what="all three, none ready")

    run(main)


def test_rolling_update_with_partition_goes_down_from_the_top(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "statefulset") as (_, admin):
            await admin.create(STATEFUL_SETS, stateful_set(podManagementPolicy="Parallel"), namespace="default")
            await eventually(lambda: _ready_all_then(admin, lambda: _status_is(admin, readyReplicas=3)), what="up")
            old = (await status(admin))["currentRevision"]
            await admin.patch(STATEFUL_SETS, "web", {"spec": {
                "template": {"spec": {"containers": [{"name": "c", "image": "web:2"}]}},
                "updateStrategy": {"rollingUpdate": {"partition": 1}}}}, namespace="default", patch_type="strategic")
            # web-2 first; web-1 only once web-2 is back and Ready; web-0 (below the partition) never.
            await eventually(lambda: _revisions(admin, {"web-0": old, "web-1": old}, changed=["web-2"], old=old),
                             what="web-2 updated first")
            await eventually(lambda: _ready_all_then(admin, lambda: _revisions(
                admin, {"web-0": old}, changed=["web-1", "web-2"], old=old)), what="then web-1")
            st = await eventually(lambda: _ready_all_then(admin, lambda: _status_is(
                admin, updatedReplicas=2, currentReplicas=1, readyReplicas=3)), what="partitioned status")
            assert st["currentRevision"] == old and st["updateRevision"] != old
            # A pod below the partition that is deleted comes back at the current revision.
            await admin.delete(PODS, "web-0", namespace="default")
            await eventually(lambda: _revisions(admin, {"web-0": old}, changed=["web-1", "web-2"], old=old,
                                                fresh="web-0"), what="web-0 re-made from the old revision")
            # Partition 0 finishes the roll-out; the update revision becomes current.
            await admin.patch(STATEFUL_SETS, "web", {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}},
                              namespace="default")
            done = await eventually(lambda: _ready_all_then(admin, lambda: _status_is(
                admin, updatedReplicas=3, readyReplicas=3)), what="complete")
            await eventually(lambda: _status_is(admin, currentReplicas=3), what="current caught up")
            assert (await status(admin))["currentRevision"] == done["updateRevision"]

    run(main)


def test_a_volume_claim_template_without_a_storage_request_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "statefulset") as (_, admin):
            with pytest.raises(Invalid, match=r"volumeClaimTemplates\[0\]\.spec\.resources\[storage\]"):
                await admin.create(STATEFUL_SETS, stateful_set(volumeClaimTemplates=[
                    {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]),
                    namespace="default")

    run(main)


# --- helpers ---------------------------------------------------------------------------------------

async def _names(admin: Client, want: list[str], not_uid: tuple[str, str] | None = None,
                 ) -> dict[str, dict[str, Any]] | None:
    got = await pods(admin)
    if not_uid is not None and got.get(not_uid[0], {}).get("metadata", {}).get("uid") == not_uid[1]:
        return None
    return got if sorted(got) == want else None


async def _true(value: bool) -> bool:
    return value


async def _status_is(admin: Client, **want: Any) -> dict[str, Any] | None:
    st = await status(admin)
    return st if all(st.get(k, 0) == v for k, v in want.items()) else None


async def _ready_all_then(admin: Client, check: Callable[[], Awaitable[Any]]) -> Any:
    for pod in (await pods(admin)).values():
        if not ready(pod):
            with contextlib.suppress(NotFound):  # the controller may be replacing it
                await set_pod_status(admin, pod)
    return await check()


async def _revisions(admin: Client, same: dict[str, str], *, changed: list[str], old: str,
                     fresh: str | None = None) -> bool:
    got = await pods(admin)
    revision = {n: p["metadata"]["labels"]["controller-revision-hash"] for n, p in got.items()}
    if fresh is not None and (fresh not in got or ready(got[fresh])):
        return False  # the re-made pod is not Ready yet: it is the new object
    return all(revision.get(n) == r for n, r in same.items()) and all(
        n in revision and revision[n] != old for n in changed)
