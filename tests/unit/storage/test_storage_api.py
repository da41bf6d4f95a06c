"""PersistentVolume, PersistentVolumeClaim and StorageClass as upstream serves them: defaults, validation
(upstream's paths and words), kubectl's columns, the default class and protection finalizers on create,
the immutability of a bound claim's spec, and the Node authorizer's claim -> volume edge, through a real
apiserver on a SQLite store."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from control.apiserver.admission import KubernetesAdmission
from control.apiserver.defaults import default
from control.apiserver.tables import to_table
from control.apiserver.validation import validate, validate_update
from tests.unit.apiserver import test_api_server as api_server

Obj = dict[str, Any]
ADMIN = {"Authorization": "Bearer admin"}
NODE1 = {"Authorization": "Bearer node1"}


def claim(name: str = "data", **spec: Any) -> Obj:
    body: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, **spec}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": "default"},
            "spec": body}


def volume(name: str = "pv1", **spec: Any) -> Obj:
    body: Obj = {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"},
                 "hostPath": {"path": "/srv/pv1"}, **spec}
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name}, "spec": body}


def storage_class(name: str = "standard", default_class: bool = True, **fields: Any) -> Obj:
    meta: Obj = {"name": name}
    if default_class:
        meta["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta,
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer", **fields}


def errors_of(kind: str, obj: Obj) -> list[tuple[str, str]]:
    obj = copy.deepcopy(obj)
    default(kind, obj)
    return [(e.field, e.message) for e in validate(kind, obj)]


def update_errors(kind: str, new: Obj, old: Obj) -> list[tuple[str, str]]:
    new, old = copy.deepcopy(new), copy.deepcopy(old)
    default(kind, new)
    default(kind, old)
    return [(e.field, e.message) for e in validate_update(kind, new, old)]


# -- defaults and validation --------------------------------------------------------------------------------

def test_defaults_follow_upstream() -> None:
    pv, pvc, sc = volume(), claim(), storage_class(volumeBindingMode=None)
    sc.pop("volumeBindingMode")
    default("PersistentVolume", pv)
    default("PersistentVolumeClaim", pvc)
    default("StorageClass", sc)
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["volumeMode"] == "Filesystem" and pv["spec"]["hostPath"]["type"] == ""
    assert pv["status"] == {"phase": "Pending"} and pvc["status"] == {"phase": "Pending"}
    assert pvc["spec"]["volumeMode"] == "Filesystem"
    assert (sc["reclaimPolicy"], sc["volumeBindingMode"]) == ("Delete", "Immediate")


def test_a_claim_needs_access_modes_and_a_storage_request() -> None:
    assert errors_of("PersistentVolumeClaim", claim()) == []
    bad = claim(accessModes=[], resources={"requests": {}})
    assert errors_of("PersistentVolumeClaim", bad) == [
        ("spec.accessModes", "Required value: at least 1 access mode is required"),
        ("spec.resources[storage]", "Required value")]
    bad = claim(accessModes=["ReadWriteSometimes"], resources={"requests": {"storage": "0"}})
    assert errors_of("PersistentVolumeClaim", bad) == [
        ("spec.accessModes", 'Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany", '
                             '"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"'),
        ("spec.resources[storage]", 'Invalid value: "0": must be greater than zero')]


def test_a_volume_needs_capacity_modes_and_exactly_one_source() -> None:
    assert errors_of("PersistentVolume", volume()) == []
    bad = volume(accessModes=None, capacity=None, hostPath=None, persistentVolumeReclaimPolicy="Keep")
    assert errors_of("PersistentVolume", bad) == [
        ("spec.accessModes", "Required value"), ("spec.capacity", "Required value"),
        ("spec.persistentVolumeReclaimPolicy", 'Unsupported value: "Keep": supported values: "Delete", "Recycle", '
                                               '"Retain"'),
        ("spec", "Required value: must specify a volume type")]
    two = volume(local={"path": "/srv/x"})
    assert errors_of("PersistentVolume", two) == [
        ("spec.local", "Forbidden: may not specify more than 1 volume type"),
        ("spec.nodeAffinity", "Required value: Local volumes require node affinity")]
    claimed = volume(claimRef={"name": "data"})
    assert errors_of("PersistentVolume", claimed) == [("spec.claimRef.namespace", "Required value")]


def test_a_volume_source_is_immutable() -> None:
    old = volume()
    new = volume(hostPath={"path": "/srv/other"})
    assert ("spec.persistentvolumesource", "Forbidden: spec.persistentvolumesource is immutable after creation") in \
        update_errors("PersistentVolume", new, old)


def test_a_bound_claim_may_only_grow() -> None:
    old = claim()
    annotated = claim()
    annotated["metadata"]["annotations"] = {"volume.kubernetes.io/selected-node": "worker-1"}
    assert update_errors("PersistentVolumeClaim", annotated, old) == []
    # The PV controller sets volumeName once.
    bound = claim(volumeName="pv1")
    assert update_errors("PersistentVolumeClaim", bound, old) == []
    bound["status"] = old_status = {"phase": "Bound", "capacity": {"storage": "2Gi"}}
    grown = copy.deepcopy(bound)
    grown["spec"]["resources"]["requests"]["storage"] = "5Gi"
    assert update_errors("PersistentVolumeClaim", grown, bound) == []
    shrunk = copy.deepcopy(bound)
    shrunk["spec"]["resources"]["requests"]["storage"] = "512Mi"
    assert update_errors("PersistentVolumeClaim", shrunk, bound) == [
        ("spec.resources.requests.storage", "Forbidden: field can not be less than previous value")]
    moved = copy.deepcopy(bound)
    moved["spec"]["accessModes"] = ["ReadWriteMany"]
    moved["status"] = old_status
    assert update_errors("PersistentVolumeClaim", moved, bound) == [
        ("spec", "Forbidden: spec is immutable after creation except resources.requests and "
                 "volumeAttributesClassName for bound claims")]
    # An unbound claim's request is fixed too, as upstream's (only bound claims expand).
    pending = copy.deepcopy(old)
    pending["spec"]["resources"]["requests"]["storage"] = "5Gi"
    assert update_errors("PersistentVolumeClaim", pending, old)[0][0] == "spec"


def test_storage_class_fields_and_their_immutability() -> None:
    assert errors_of("StorageClass", storage_class()) == []
    bad = storage_class(provisioner="", reclaimPolicy="Recycle", volumeBindingMode="Later")
    assert errors_of("StorageClass", bad) == [
        ("provisioner", "Required value"),
        ("reclaimPolicy", 'Unsupported value: "Recycle": supported values: "Delete", "Retain"'),
        ("volumeBindingMode", 'Unsupported value: "Later": supported values: "Immediate", "WaitForFirstConsumer"')]
    changed = storage_class(provisioner="example.com/other", volumeBindingMode="Immediate")
    assert update_errors("StorageClass", changed, storage_class()) == [
        ("provisioner", "Forbidden: updates to provisioner are forbidden."),
        ("volumeBindingMode", 'Invalid value: "Immediate": field is immutable')]


# -- printing -----------------------------------------------------------------------------------------------

def _cells(plural: str, obj: Obj) -> tuple[list[str], list[Any]]:
    table = to_table(plural, [obj])
    return [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0], table["rows"][0]["cells"]


def test_columns_are_kubectls() -> None:
    pv = volume(claimRef={"namespace": "default", "name": "data"}, storageClassName="standard",
                persistentVolumeReclaimPolicy="Delete", accessModes=["ReadWriteOnce", "ReadOnlyMany"])
    pv["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    pv["status"] = {"phase": "Bound"}
    names, cells = _cells("persistentvolumes", pv)
    assert names == ["Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
                     "VolumeAttributesClass", "Reason", "Age"]
    assert cells[:9] == ["pv1", "2Gi", "RWO,ROX", "Delete", "Bound", "default/data", "standard", "<unset>", ""]
    pvc = claim(volumeName="pv1", storageClassName="standard")
    pvc["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    pvc["status"] = {"phase": "Bound", "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"]}
    names, cells = _cells("persistentvolumeclaims", pvc)
    assert names == ["Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass",
                     "VolumeAttributesClass", "Age"]
    assert cells[:7] == ["data", "Bound", "pv1", "2Gi", "RWO", "standard", "<unset>"]
    sc = storage_class(reclaimPolicy="Delete")
    sc["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    names, cells = _cells("storageclasses", sc)
    assert names == ["Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode", "AllowVolumeExpansion", "Age"]
    assert cells[:5] == ["standard (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer", "false"]


# -- through the apiserver -------------------------------------------------------------------------------------

def run(scenario: Any, tmp_path: Path) -> None:
    """SCENARIO(client) against a real apiserver in-process, with upstream's admission (test_api_server's)."""
    api_server.run(lambda client, _registry: scenario(client), tmp_path, admission=KubernetesAdmission())


PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"


def test_a_claim_gets_the_default_class_and_the_protection_finalizer(tmp_path: Path) -> None:
    async def scenario(client: TestClient) -> None:
        made = await (await client.post(PVCS, json=claim("before"), headers=ADMIN)).json()
        assert "storageClassName" not in made["spec"]  # no default class yet
        assert made["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]
        assert made["status"] == {"phase": "Pending"}
        resp = await client.post("/apis/storage.k8s.io/v1/storageclasses", json=storage_class(), headers=ADMIN)
        assert resp.status == 201, await resp.text()
        made = await (await client.post(PVCS, json=claim("after"), headers=ADMIN)).json()
        assert made["spec"]["storageClassName"] == "standard"
        # "" asks for no class, and is kept
        made = await (await client.post(PVCS, json=claim("none", storageClassName=""), headers=ADMIN)).json()
        assert made["spec"]["storageClassName"] == ""
        pv = await (await client.post("/api/v1/persistentvolumes", json=volume(), headers=ADMIN)).json()
        assert pv["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]
        assert pv["status"]["phase"] == "Pending"
        bad = await client.post(PVCS, json=claim("bad", resources={}), headers=ADMIN)
        assert bad.status == 422
        body = await bad.json()
        assert body["message"] == ('PersistentVolumeClaim "bad" is invalid: spec.resources[storage]: '
                                   'Required value')
        # short names and discovery
        core = await (await client.get("/api/v1", headers=ADMIN)).json()
        short = {r["name"]: r.get("shortNames") for r in core["resources"]}
        assert (short["persistentvolumes"], short["persistentvolumeclaims"]) == (["pv"], ["pvc"])

    run(scenario, tmp_path)


def test_a_node_reads_the_volume_of_a_claim_its_pod_uses(tmp_path: Path) -> None:
    async def scenario(client: TestClient) -> None:
        await client.post("/api/v1/persistentvolumes", json=volume(), headers=ADMIN)
        await client.post(PVCS, json=claim(volumeName="pv1"), headers=ADMIN)
        assert (await client.get("/api/v1/persistentvolumes/pv1", headers=NODE1)).status == 403
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"nodeName": "worker-1", "containers": [{"name": "c", "image": "busybox"}],
                        "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}
        assert (await client.post("/api/v1/namespaces/default/pods", json=pod, headers=ADMIN)).status == 201

        async def readable() -> bool:
            for _ in range(100):
                if (await client.get("/api/v1/persistentvolumes/pv1", headers=NODE1)).status == 200:
                    return True
                await asyncio.sleep(0.02)
            return False

        assert await readable()
        assert (await client.get(f"{PVCS}/data", headers=NODE1)).status == 200
        # Not another volume, nor the list.
        assert (await client.get("/api/v1/persistentvolumes", headers=NODE1)).status == 403

    run(scenario, tmp_path)
