"""Volume preparation as a pure function (control.kubelet.volumes): what files each volume gets, which
bind mounts the pod's mount namespace makes, FailedMount for what is missing, and the atomic writer."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from control.kubelet.volumes import Mount, TokenWant, VolumeError, plan, references, token_requests, write_plan

ALLOCATABLE = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"}


def pod(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", **meta},
            "spec": {"volumes": volumes, "containers": [{"name": "c", "volumeMounts": mounts,
                                                         "resources": {"limits": {"memory": "64Mi"}}}]}}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_configmap_and_secret_files_with_items_modes_and_read_only_mounts(tmp_path: Path) -> None:
    p = pod([{"name": "cfg", "configMap": {"name": "cm"}},
             {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400,
                                        "items": [{"key": "a", "path": "dir/a"},
                                                  {"key": "b", "path": "b", "mode": 0o600}]}}],
            [{"name": "cfg", "mountPath": "/etc/cfg/"}, {"name": "sec", "mountPath": "/etc/sec", "readOnly": False}])
    objects = {("configmaps", "cm"): {"data": {"k": "v"}, "binaryData": {"bin": b64("\x00x")}},
               ("secrets", "s"): {"data": {"a": b64("A"), "b": b64("B"), "c": b64("C")}}}
    assert references(p) == {("configmaps", "cm"): False, ("secrets", "s"): False}
    result = plan(p, objects, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)
    cfg = tmp_path / "volumes" / "kubernetes.io~configmap" / "cfg"
    sec = tmp_path / "volumes" / "kubernetes.io~secret" / "sec"
    assert result.payloads[cfg] == {"k": (b"v", 0o644), "bin": (b"\x00x", 0o644)}
    assert result.payloads[sec] == {"dir/a": (b"A", 0o400), "b": (b"B", 0o600)}
    # configMap and secret volumes are read-only whatever the mount says, as upstream's since 1.10
    assert result.mounts == [Mount("/etc/cfg", str(cfg), True), Mount("/etc/sec", str(sec), True)]


def test_a_missing_reference_is_failed_mount_unless_optional(tmp_path: Path) -> None:
    p = pod([{"name": "cfg", "configMap": {"name": "gone"}}], [{"name": "cfg", "mountPath": "/etc/cfg"}])
    with pytest.raises(VolumeError, match=r'MountVolume\.SetUp failed for volume "cfg" : configmap "gone" not found'):
        plan(p, {("configmaps", "gone"): None}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)
    p["spec"]["volumes"][0]["configMap"]["optional"] = True
    assert references(p) == {("configmaps", "gone"): True}
    result = plan(p, {("configmaps", "gone"): None}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)
    assert list(result.payloads.values()) == [{}]
    missing_key = pod([{"name": "s", "secret": {"secretName": "s", "items": [{"key": "nope", "path": "x"}]}}], [])
    with pytest.raises(VolumeError, match="references non-existent secret key: nope"):
        plan(missing_key, {("secrets", "s"): {"data": {}}}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)


def test_empty_dir_downward_api_and_projected_sources(tmp_path: Path) -> None:
    p = pod([{"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
             {"name": "shared", "emptyDir": {}},
             {"name": "info", "downwardAPI": {"items": [
                 {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                 {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                                      "divisor": "1Mi"}}]}},
             {"name": "all", "projected": {"sources": [
                 {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                 {"configMap": {"name": "root", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                 {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
             ]}}],
            [{"name": "shared", "mountPath": "/mnt/shared", "subPath": "sub"},
             {"name": "all", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            labels={"b": "2", "a": 'say "hi"'})
    want = TokenWant("", 3607)
    assert token_requests(p) == [want]
    result = plan(p, {("configmaps", "root"): {"data": {"ca.crt": "PEM"}}}, {want: "jwt"}, pod_dir=tmp_path,
                  allocatable=ALLOCATABLE)
    volumes = tmp_path / "volumes"
    assert result.directories == [volumes / "kubernetes.io~empty-dir" / "scratch",
                                  volumes / "kubernetes.io~empty-dir" / "shared"]
    assert result.memory == [(volumes / "kubernetes.io~empty-dir" / "scratch", "size=1048576")]
    assert result.payloads[volumes / "kubernetes.io~downward-api" / "info"] == {
        "labels": (b'a="say \\"hi\\""\nb="2"', 0o644), "mem": (b"64", 0o644)}
    assert result.payloads[volumes / "kubernetes.io~projected" / "all"] == {
        "token": (b"jwt", 0o644), "ca.crt": (b"PEM", 0o644), "namespace": (b"ns", 0o644)}
    assert result.mounts[0] == Mount("/mnt/shared", str(volumes / "kubernetes.io~empty-dir" / "shared" / "sub"),
                                     False)
    with pytest.raises(VolumeError, match="no token was issued"):
        plan(p, {("configmaps", "root"): {"data": {"ca.crt": "PEM"}}}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)


@pytest.mark.parametrize(("volumes", "mounts", "message"), [
    ([{"name": "h", "nfs": {"server": "nfs.example", "path": "/"}}], [], "volume type nfs is not supported"),
    ([], [{"name": "x", "mountPath": "/x"}], "the pod has no volume of that name"),
    ([{"name": "e", "emptyDir": {}}], [{"name": "e", "mountPath": "rel"}], "must be an absolute path"),
    ([{"name": "e", "emptyDir": {}}], [{"name": "e", "mountPath": "/m", "subPath": "../up"}], "invalid path"),
    ([{"name": "d", "downwardAPI": {"items": [{"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]}}], [],
     "is not supported in volumes"),
])
def test_bad_volumes_name_the_field_and_the_fix(tmp_path: Path, volumes: list[dict[str, Any]],
                                                 mounts: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(VolumeError, match=message):
        plan(pod(volumes, mounts), {}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)


def test_two_containers_mounting_different_things_at_one_path_is_refused(tmp_path: Path) -> None:
    p = pod([{"name": "a", "emptyDir": {}}, {"name": "b", "emptyDir": {}}], [{"name": "a", "mountPath": "/m"}])
    p["spec"]["containers"].append({"name": "d", "volumeMounts": [{"name": "b", "mountPath": "/m"}]})
    with pytest.raises(VolumeError, match="share one mount namespace"):
        plan(p, {}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)
    p["spec"]["containers"][1]["volumeMounts"][0]["name"] = "a"  # the same volume at the same path is one mount
    assert len(plan(p, {}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE).mounts) == 1


def test_the_atomic_writer_swaps_data_at_once_and_keeps_only_the_current_payload(tmp_path: Path) -> None:
    p = pod([{"name": "cfg", "configMap": {"name": "cm"}}], [{"name": "cfg", "mountPath": "/etc/cfg"}])
    first = plan(p, {("configmaps", "cm"): {"data": {"a": "1", "b": "2"}}}, {}, pod_dir=tmp_path,
                 allocatable=ALLOCATABLE)
    assert write_plan(first) == ["cfg"]
    directory = tmp_path / "volumes" / "kubernetes.io~configmap" / "cfg"
    assert os.readlink(directory / "a") == "..data/a"
    old_target = os.readlink(directory / "..data")
    assert (directory / "a").read_text() == "1"
    assert write_plan(first) == [], "an unchanged payload is not written again"
    second = plan(p, {("configmaps", "cm"): {"data": {"a": "one"}}}, {}, pod_dir=tmp_path, allocatable=ALLOCATABLE)
    assert write_plan(second) == ["cfg"]
    assert (directory / "a").read_text() == "one"
    assert not (directory / "b").exists() and not (directory / "b").is_symlink()
    assert os.readlink(directory / "..data") != old_target and not (directory / old_target).exists()
    assert sorted(e.name for e in directory.iterdir() if not e.name.startswith("..2")) == ["..data", "a"]
