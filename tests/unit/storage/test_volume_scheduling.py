"""The scheduler's VolumeBinding filter on the default profile: upstream's FailedScheduling messages for a
missing claim and an unbound Immediate claim, a bound volume's node affinity, WaitForFirstConsumer claims
with and without a provisioner, the claims that get the selected node, and PreBind's check that they are bound."""

from __future__ import annotations

from typing import Any

import pytest

from control.scheduler._framework import Algorithm, FitError, make_profile
from control.scheduler._types import NodeInfo, PodInfo
from control.scheduler._volumebinding import VolumeBindingFailed, VolumeLister, check_bindings, claims_to_select

Obj = dict[str, Any]


def node(name: str) -> NodeInfo:
    return NodeInfo({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                     "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})


NODES = [node("worker-1"), node("worker-2")]


def pod(*claims: str) -> PodInfo:
    return PodInfo.of({"metadata": {"name": "p", "namespace": "default", "uid": "u"},
                       "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                "volumes": [{"name": c, "persistentVolumeClaim": {"claimName": c}} for c in claims]}})


def claim(name: str, cls: str = "standard", volume: str = "") -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                 "storageClassName": cls}
    if volume:
        spec["volumeName"] = volume
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"}, "spec": spec}


def local_volume(name: str, on: str, cls: str = "manual") -> Obj:
    return {"metadata": {"name": name}, "status": {"phase": "Available"},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": cls,
                     "hostPath": {"path": f"/srv/{name}"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [on]}]}]}}}}


CLASSES = {
    "standard": {"metadata": {"name": "standard"}, "provisioner": "rancher.io/local-path",
                 "volumeBindingMode": "WaitForFirstConsumer"},
    "manual": {"metadata": {"name": "manual"}, "provisioner": "kubernetes.io/no-provisioner",
               "volumeBindingMode": "WaitForFirstConsumer"},
    "now": {"metadata": {"name": "now"}, "provisioner": "example.com/x", "volumeBindingMode": "Immediate"},
}


def lister(claims: list[Obj], volumes: list[Obj]) -> VolumeLister:
    by_claim = {c["metadata"]["name"]: c for c in claims}
    by_volume = {v["metadata"]["name"]: v for v in volumes}
    return VolumeLister(claim=lambda ns, name: by_claim.get(name), volume=by_volume.get,
                        storage_class=CLASSES.get, volumes=lambda: list(by_volume.values()))


def schedule(the_pod: PodInfo, claims: list[Obj], volumes: list[Obj]) -> str:
    algorithm = Algorithm(make_profile(volumes=lister(claims, volumes)))
    return algorithm.schedule(the_pod, NODES).node


def failure(the_pod: PodInfo, claims: list[Obj], volumes: list[Obj]) -> str:
    with pytest.raises(FitError) as caught:
        schedule(the_pod, claims, volumes)
    return caught.value.message


def test_a_missing_claim_or_an_unbound_immediate_claim_keeps_the_pod_pending() -> None:
    assert failure(pod("data"), [], []).startswith('0/2 nodes are available: persistentvolumeclaim "data" not found.')
    assert failure(pod("data"), [claim("data", cls="now")], []).startswith(
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims.")


def test_a_bound_volume_pins_the_pod_to_its_node() -> None:
    claims, volumes = [claim("data", volume="pv1")], [local_volume("pv1", on="worker-2")]
    assert schedule(pod("data"), claims, volumes) == "worker-2"
    gone = [local_volume("pv1", on="worker-3")]
    assert "2 node(s) had volume node affinity conflict" in failure(pod("data"), claims, gone)


def test_wait_for_first_consumer_needs_a_reachable_volume_or_a_provisioner() -> None:
    # A provisioning class fits every node; the claim then gets the chosen one.
    assert schedule(pod("data"), [claim("data")], []) in ("worker-1", "worker-2")
    assert claims_to_select(pod("data").obj, lister([claim("data")], [])) == ["data"]
    # No provisioner: only a node one of the static volumes reaches.
    static = [claim("data", cls="manual")]
    assert schedule(pod("data"), static, [local_volume("pv1", on="worker-1")]) == "worker-1"
    assert "2 node(s) didn't find available persistent volumes to bind" in failure(pod("data"), static, [])
    # A bound claim needs no selection.
    assert claims_to_select(pod("data").obj, lister([claim("data", volume="pv1")], [])) == []


def test_check_bindings_waits_for_a_full_binding_on_the_node_and_fails_when_it_never_comes() -> None:
    def annotated(obj: Obj, version: int, **annotations: str) -> Obj:
        obj["metadata"].update(resourceVersion=str(version), annotations=dict(annotations))
        return obj

    def check(claims: list[Obj], volumes: list[Obj] | None = None, assumed: dict[str, Obj] | None = None) -> bool:
        return check_bindings("default", ["data"], NODES[0], lister(claims, volumes or []), assumed)

    on_1 = {"volume.kubernetes.io/selected-node": "worker-1"}
    waiting = annotated(claim("data"), 5, **on_1)
    assert check([waiting]) is False  # still being provisioned
    half = annotated(claim("data", volume="pv1"), 6, **on_1)
    assert check([half], [local_volume("pv1", on="worker-1")]) is False  # volumeName set, bind not completed
    done = annotated(claim("data", volume="pv1"), 7, **on_1, **{"pv.kubernetes.io/bind-completed": "yes"})
    assert check([done], [local_volume("pv1", on="worker-1")]) is True
    assert check([done], []) is False  # the informer has not brought the volume yet
    with pytest.raises(VolumeBindingFailed, match='pv "pv1" node affinity does not match node "worker-1"'):
        check([done], [local_volume("pv1", on="worker-2")])
    with pytest.raises(VolumeBindingFailed, match='selectedNode annotation reset for PVC "data"'):
        check([annotated(claim("data"), 8)])
    with pytest.raises(VolumeBindingFailed, match='value "worker-2" not set to scheduled node "worker-1"'):
        check([annotated(claim("data"), 8, **{"volume.kubernetes.io/selected-node": "worker-2"})])
    with pytest.raises(VolumeBindingFailed, match='pvc "default/data" was deleted'):
        check([])
    # The scheduler's own write counts until the informer catches up with it, and no longer.
    stale = annotated(claim("data"), 4)
    assert check([stale], assumed={"data": waiting}) is False
    with pytest.raises(VolumeBindingFailed, match="reset"):
        check([annotated(claim("data"), 9)], assumed={"data": waiting})
