"""The kubelet's side of persistent storage (control.kubelet.volumes): a persistentVolumeClaim volume is
bound from its PersistentVolume's directory once the claim is Bound, FailedMount with upstream's words
before; hostPath volumes and their type checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from control.kubelet.volumes import Mount, VolumeError, plan, references, volume_of, write_plan

ALLOCATABLE = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"}


def pod(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {"volumes": volumes, "containers": [{"name": "c", "volumeMounts": mounts}]}}


CLAIM_POD = pod([{"name": "data", "persistentVolumeClaim": {"claimName": "www"}}],
                [{"name": "data", "mountPath": "/data"}])


def bound_claim(volume: str = "pvc-1") -> dict[str, Any]:
    return {"spec": {"volumeName": volume}, "status": {"phase": "Bound"}}


def test_a_bound_claim_mounts_its_volumes_directory(tmp_path: Path) -> None:
    directory = tmp_path / "node" / "pvc-1_ns_www"
    assert references(CLAIM_POD) == {("persistentvolumeclaims", "www"): False}
    pv = {"spec": {"hostPath": {"path": str(directory), "type": "DirectoryOrCreate"}, "volumeMode": "Filesystem"}}
    objects = {("persistentvolumeclaims", "www"): bound_claim(), ("persistentvolumes", "pvc-1"): pv}
    assert volume_of(bound_claim()) == "pvc-1"
    result = plan(CLAIM_POD, objects, {}, pod_dir=tmp_path / "pod", allocatable=ALLOCATABLE)
    assert result.mounts == [Mount("/data", str(directory), False)]
    assert not directory.exists()
    write_plan(result)
    assert directory.is_dir()
    read_only = pod([{"name": "data", "persistentVolumeClaim": {"claimName": "www", "readOnly": True}}],
                    [{"name": "data", "mountPath": "/data"}])
    assert plan(read_only, objects, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE).mounts[0].read_only


def test_an_unbound_or_missing_claim_fails_the_mount_as_upstream_words_it(tmp_path: Path) -> None:
    pending = {("persistentvolumeclaims", "www"): {"spec": {}, "status": {"phase": "Pending"}}}
    with pytest.raises(VolumeError) as caught:
        plan(CLAIM_POD, pending, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)
    assert caught.value.message == ("Unable to attach or mount volumes: unmounted volumes=[data], unattached "
                                    "volumes=[data]: error processing PVC ns/www: PVC is not bound")
    with pytest.raises(VolumeError, match='persistentvolumeclaims "www" not found'):
        plan(CLAIM_POD, {("persistentvolumeclaims", "www"): None}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)
    nfs = {("persistentvolumeclaims", "www"): bound_claim(),
           ("persistentvolumes", "pvc-1"): {"spec": {"nfs": {"server": "x", "path": "/"}}}}
    with pytest.raises(VolumeError, match="of type nfs, which kubesim's kubelet cannot mount"):
        plan(CLAIM_POD, nfs, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)


def test_host_path_volumes_and_their_type_checks(tmp_path: Path) -> None:
    there = tmp_path / "there"
    there.mkdir()
    ok = pod([{"name": "h", "hostPath": {"path": str(there), "type": "Directory"}}], [{"name": "h", "mountPath": "/h"}])
    assert plan(ok, {}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE).mounts == [Mount("/h", str(there), False)]
    missing = pod([{"name": "h", "hostPath": {"path": str(tmp_path / "nope"), "type": "Directory"}}], [])
    with pytest.raises(VolumeError, match=r"hostPath type check failed: .*nope is not a directory"):
        plan(missing, {}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)
