"""Matching claims to volumes (pure), and the PV controller, the protection controllers and the local-path
provisioner against a real apiserver with the controller-manager's own credentials (RBAC enforced), the
test playing the scheduler (it sets volume.kubernetes.io/selected-node)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from control.api.storage import matching_volume, volume_fits_node
from control.client import (
    EVENTS,
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    STORAGE_CLASSES,
    Client,
    NotFound,
)
from tests.unit.controllers.controllers_kit import cluster, eventually, run

Obj = dict[str, Any]
STORAGE_CONTROLLERS = ("persistentvolume-binder", "pvc-protection", "pv-protection", "local-path-provisioner")


def claim(name: str = "data", size: str = "1Gi", **spec: Any) -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec}}


def volume(name: str, size: str, *, node: str | None = None, labels: dict[str, str] | None = None,
           **spec: Any) -> Obj:
    body: Obj = {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "capacity": {"storage": size},
                 "hostPath": {"path": f"/srv/{name}"}, **spec}
    if node:
        body["nodeAffinity"] = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": labels or {}},
            "spec": body, "status": {"phase": "Available"}}


# -- matching --------------------------------------------------------------------------------------------------

def test_the_smallest_fitting_volume_of_the_claims_class_is_chosen() -> None:
    volumes = [volume("big", "10Gi"), volume("small", "500Mi"), volume("fit", "2Gi"), volume("fast", "1Gi",
                                                                                               storageClassName="fast")]
    assert matching_volume(claim(), volumes)["metadata"]["name"] == "fit"  # type: ignore[index]
    assert matching_volume(claim(storageClassName="fast"), volumes)["metadata"]["name"] == "fast"  # type: ignore
    assert matching_volume(claim(size="20Gi"), volumes) is None
    assert matching_volume(claim(accessModes=["ReadWriteMany"]), volumes) is None
    assert matching_volume(claim(volumeMode="Block"), volumes) is None


def test_selector_claim_ref_and_node_affinity_narrow_the_choice() -> None:
    labelled = volume("gold", "5Gi", labels={"tier": "gold"})
    taken = volume("taken", "1Gi", claimRef={"namespace": "default", "name": "other", "uid": "u2"})
    mine = volume("mine", "8Gi", claimRef={"namespace": "default", "name": "data"})
    volumes = [labelled, taken, volume("plain", "2Gi")]
    assert matching_volume(claim(selector={"matchLabels": {"tier": "gold"}}), volumes) is labelled
    assert matching_volume(claim(), volumes)["metadata"]["name"] == "plain"  # type: ignore[index]
    # A volume pre-bound to the claim wins over a smaller one; one bound to another claim never matches.
    assert matching_volume(claim(), [*volumes, mine]) is mine
    assert matching_volume(claim("other", uid="x"), [taken]) is None
    on_one = volume("local", "1Gi", node="worker-1")
    assert volume_fits_node(on_one, {"kubernetes.io/hostname": "worker-1"})
    assert not volume_fits_node(on_one, {"kubernetes.io/hostname": "worker-2"})
    assert matching_volume(claim(), [on_one], {"kubernetes.io/hostname": "worker-2"}) is None
    assert matching_volume(claim(), [on_one], {"kubernetes.io/hostname": "worker-1"}) is on_one


# -- the controllers -------------------------------------------------------------------------------------------

def standard(mode: str = "WaitForFirstConsumer", reclaim: str = "Delete") -> Obj:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": mode, "reclaimPolicy": reclaim}


def new_claim(name: str, **spec: Any) -> Obj:
    body = claim(name, **spec)
    del body["metadata"]["uid"]
    return body


async def get_claim(admin: Client, name: str) -> Obj | None:
    try:
        return await admin.get(PERSISTENT_VOLUME_CLAIMS, name, namespace="default")
    except NotFound:
        return None


async def events_of(admin: Client, name: str) -> list[tuple[str, str]]:
    items = (await admin.list(EVENTS, namespace="default"))["items"]
    return [(e["reason"], e["message"]) for e in items if e["involvedObject"].get("name") == name]


async def phase_is(admin: Client, name: str, phase: str) -> Obj | None:
    found = await get_claim(admin, name)
    return found if found is not None and (found.get("status") or {}).get("phase") == phase else None


def test_a_static_volume_is_bound_and_retained_after_its_claim(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, *STORAGE_CONTROLLERS) as (_, admin):
            pv = volume("pv1", "2Gi", persistentVolumeReclaimPolicy="Retain")
            del pv["status"]
            await admin.create(PERSISTENT_VOLUMES, pv)
            await admin.create(PERSISTENT_VOLUME_CLAIMS, new_claim("data", storageClassName=""), namespace="default")
            bound = await eventually(lambda: phase_is(admin, "data", "Bound"), what="claim bound")
            assert bound["spec"]["volumeName"] == "pv1"
            assert bound["status"]["capacity"] == {"storage": "2Gi"}
            assert bound["status"]["accessModes"] == ["ReadWriteOnce", "ReadOnlyMany"]
            assert bound["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
            made = await admin.get(PERSISTENT_VOLUMES, "pv1")
            assert made["spec"]["claimRef"]["uid"] == bound["metadata"]["uid"]
            assert made["status"]["phase"] == "Bound"
            # A claim with nothing to bind to waits, and says why.
            await admin.create(PERSISTENT_VOLUME_CLAIMS, new_claim("nothing", storageClassName=""),
                               namespace="default")
            await eventually(lambda: _has_event(admin, "nothing", "FailedBinding"), what="FailedBinding")
            # Deleting the claim releases the volume; Retain keeps it and its data.
            await admin.delete(PERSISTENT_VOLUME_CLAIMS, "data", namespace="default")
            await eventually(lambda: _volume_phase(admin, "pv1", "Released"), what="pv1 released")

    run(main)


async def _has_event(admin: Client, name: str, reason: str) -> bool:
    return any(r == reason for r, _ in await events_of(admin, name))


async def _volume_phase(admin: Client, name: str, phase: str) -> Obj | None:
    try:
        pv = await admin.get(PERSISTENT_VOLUMES, name)
    except NotFound:
        return None
    return pv if (pv.get("status") or {}).get("phase") == phase else None


async def _gone(admin: Client, name: str) -> bool:
    try:
        await admin.get(PERSISTENT_VOLUMES, name)
    except NotFound:
        return True
    return False


def test_wait_for_first_consumer_then_local_path_provisioning_and_reclaim_delete(tmp_path: Path) -> None:
    root = tmp_path / "volumes"

    async def main() -> None:
        async with cluster(tmp_path, *STORAGE_CONTROLLERS, local_path_root=str(root)) as (_, admin):
            await admin.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": "worker-1", "labels": {"kubernetes.io/hostname": "worker-1"}}})
            await admin.create(STORAGE_CLASSES, standard())
            made = await admin.create(PERSISTENT_VOLUME_CLAIMS, new_claim("data"), namespace="default")
            assert made["spec"]["storageClassName"] == "standard"  # the default class
            await eventually(lambda: _has_event(admin, "data", "WaitForFirstConsumer"), what="waiting")
            assert (await get_claim(admin, "data"))["status"]["phase"] == "Pending"  # type: ignore[index]
            assert not root.exists()
            # The scheduler's choice.
            await admin.patch(PERSISTENT_VOLUME_CLAIMS, "data", {"metadata": {"annotations": {
                "volume.kubernetes.io/selected-node": "worker-1"}}}, namespace="default")
            bound = await eventually(lambda: phase_is(admin, "data", "Bound"), what="claim bound")
            name = f"pvc-{bound['metadata']['uid']}"
            assert bound["spec"]["volumeName"] == name
            assert bound["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] == \
                "rancher.io/local-path"
            pv = await admin.get(PERSISTENT_VOLUMES, name)
            directory = root / "worker-1" / f"{name}_default_data"
            assert pv["spec"]["hostPath"] == {"path": str(directory), "type": "DirectoryOrCreate"}
            assert pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"] == [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["worker-1"]}]
            assert (pv["spec"]["persistentVolumeReclaimPolicy"], pv["spec"]["storageClassName"]) == \
                ("Delete", "standard")
            assert pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"] == "rancher.io/local-path"
            assert directory.is_dir()
            (directory / "file").write_text("kept")
            assert await _has_event(admin, "data", "ProvisioningSucceeded")
            # A pod using the claim holds it (pvc-protection) while it runs.
            await admin.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "user"}, "spec": {
                "nodeName": "worker-1", "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}, namespace="default")
            await admin.delete(PERSISTENT_VOLUME_CLAIMS, "data", namespace="default")
            held = await get_claim(admin, "data")
            assert held is not None and held["metadata"]["deletionTimestamp"]
            assert directory.is_dir()
            await admin.delete(PODS, "user", namespace="default", grace_period_seconds=0)
            # Reclaim Delete: the claim goes, the provisioner removes the directory and the volume.
            await eventually(lambda: _absent_claim(admin, "data"), what="claim gone")
            await eventually(lambda: _gone(admin, name), what="volume deleted")
            assert not directory.exists()

    run(main)


async def _absent_claim(admin: Client, name: str) -> bool:
    return await get_claim(admin, name) is None


def test_an_immediate_claim_names_no_node_for_the_local_path_provisioner(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, *STORAGE_CONTROLLERS, local_path_root=str(tmp_path / "v")) as (_, admin):
            await admin.create(STORAGE_CLASSES, standard(mode="Immediate"))
            await admin.create(PERSISTENT_VOLUME_CLAIMS, new_claim("data"), namespace="default")
            await eventually(lambda: _has_event(admin, "data", "ProvisioningFailed"), what="refused")
            messages = [m for r, m in await events_of(admin, "data") if r == "ProvisioningFailed"]
            assert "no node was specified" in messages[0]
            assert (await get_claim(admin, "data"))["status"]["phase"] == "Pending"  # type: ignore[index]

    run(main)


def test_a_selected_node_that_does_not_exist_is_given_back_to_the_scheduler(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, *STORAGE_CONTROLLERS, local_path_root=str(tmp_path / "v")) as (_, admin):
            await admin.create(STORAGE_CLASSES, standard())
            await admin.create(PERSISTENT_VOLUME_CLAIMS, new_claim("data"), namespace="default")
            await admin.patch(PERSISTENT_VOLUME_CLAIMS, "data", {"metadata": {"annotations": {
                "volume.kubernetes.io/selected-node": "ghost"}}}, namespace="default")
            await eventually(lambda: _has_event(admin, "data", "ProvisioningFailed"), what="refused")
            messages = [m for r, m in await events_of(admin, "data") if r == "ProvisioningFailed"]
            assert messages == ['failed to get target node: node "ghost" not found']

            async def reset() -> bool:
                got = await get_claim(admin, "data") or {}
                return "volume.kubernetes.io/selected-node" not in (got["metadata"].get("annotations") or {})
            await eventually(reset, what="the selected-node annotation removed")
            assert (await admin.list(PERSISTENT_VOLUMES))["items"] == []
            assert not (tmp_path / "v" / "ghost").exists()

    run(main)


# -- StatefulSet claims ----------------------------------------------------------------------------------------

def stateful_set(replicas: int, **policy: str) -> Obj:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "serviceName": "web", "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": "web"}},
                     "persistentVolumeClaimRetentionPolicy": policy,
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                         "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}


async def _claims(admin: Client, want: list[str]) -> dict[str, Obj] | None:
    items = (await admin.list(PERSISTENT_VOLUME_CLAIMS, namespace="default"))["items"]
    found = {c["metadata"]["name"]: c for c in items if not c["metadata"].get("deletionTimestamp")}
    return found if sorted(found) == want else None


async def _pod_names(admin: Client, want: list[str]) -> dict[str, Obj] | None:
    items = (await admin.list(PODS, namespace="default"))["items"]
    found = {p["metadata"]["name"]: p for p in items if not p["metadata"].get("deletionTimestamp")}
    return found if sorted(found) == want else None


def test_stateful_set_claims_outlive_their_pods_and_follow_the_retention_policy(tmp_path: Path) -> None:
    from control.client import STATEFUL_SETS

    async def main() -> None:
        async with cluster(tmp_path, "statefulset", "garbagecollector", "pvc-protection") as (_, admin):
            await admin.create(STATEFUL_SETS, stateful_set(2, whenScaled="Delete"), namespace="default")
            claims = await eventually(lambda: _claims(admin, ["www-web-0", "www-web-1"]), what="claims")
            pods = await eventually(lambda: _pod_names(admin, ["web-0", "web-1"]), what="pods")
            assert pods["web-0"]["spec"]["volumes"][-1] == {"name": "www",
                                                            "persistentVolumeClaim": {"claimName": "www-web-0"}}
            assert claims["www-web-0"]["metadata"]["labels"] == {"app": "web"}
            assert not claims["www-web-0"]["metadata"].get("ownerReferences")  # whenDeleted Retain
            # A deleted pod comes back to the same claim.
            uid = claims["www-web-0"]["metadata"]["uid"]
            await admin.delete(PODS, "web-0", namespace="default", grace_period_seconds=0)
            await eventually(lambda: _pod_names(admin, ["web-0", "web-1"]), what="web-0 again")
            again = await get_claim(admin, "www-web-0")
            assert again is not None and again["metadata"]["uid"] == uid
            # Scaling down with whenScaled Delete: the condemned pod's claim goes with it.
            await admin.patch(STATEFUL_SETS, "web", {"spec": {"replicas": 1}}, namespace="default")
            await eventually(lambda: _claims(admin, ["www-web-0"]), timeout=20, what="www-web-1 deleted")

    run(main)


def test_when_deleted_delete_makes_the_set_the_claims_controller(tmp_path: Path) -> None:
    from control.client import STATEFUL_SETS

    async def main() -> None:
        async with cluster(tmp_path, "statefulset") as (_, admin):
            made = await admin.create(STATEFUL_SETS, stateful_set(1, whenDeleted="Delete"), namespace="default")
            claims = await eventually(lambda: _claims(admin, ["www-web-0"]), what="claim")
            (ref,) = claims["www-web-0"]["metadata"]["ownerReferences"]
            assert (ref["kind"], ref["uid"], ref["controller"]) == ("StatefulSet", made["metadata"]["uid"], True)

    run(main)


def test_a_claim_pre_bound_to_a_missing_volume_waits_for_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, *STORAGE_CONTROLLERS) as (_, admin):
            await admin.create(PERSISTENT_VOLUME_CLAIMS, new_claim("data", storageClassName="", volumeName="pv9"),
                               namespace="default")
            await eventually(lambda: _has_event(admin, "data", "FailedBinding"), what="FailedBinding")
            assert (await get_claim(admin, "data"))["status"]["phase"] == "Pending"  # type: ignore[index]
            pv = volume("pv9", "1Gi")
            del pv["status"]
            await admin.create(PERSISTENT_VOLUMES, pv)
            bound = await eventually(lambda: phase_is(admin, "data", "Bound"), what="bound once the volume exists")
            assert (await admin.get(PERSISTENT_VOLUMES, "pv9"))["spec"]["claimRef"]["uid"] == bound["metadata"]["uid"]

    run(main)
