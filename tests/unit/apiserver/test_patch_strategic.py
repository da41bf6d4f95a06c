"""Strategic merge patch: the behaviours of k8s.io/apimachinery/pkg/util/strategicpatch, on Kubernetes objects.

Cases follow upstream's patch_test.go (its merge-item cases restated on containers, env, ports, volumes and
finalizers) and the exact bodies kubectl 1.27-1.33 send: `apply` (client-side, 3-way, with
$setElementOrder, $retainKeys and the last-applied-configuration annotation), `set image`, `set env`,
`rollout restart`, `scale`, `label` and `annotate`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from control.apiserver.patch import (
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    BuiltinPatchMeta,
    ListPatchInfo,
    MalformedPatch,
    PatchError,
    PatchNotApplicable,
    apply_patch,
)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def smp(original: dict[str, Any], patch: Any, kind: str = "Pod") -> dict[str, Any]:
    return apply_patch(original, json.dumps(patch).encode(), STRATEGIC_MERGE_PATCH, kind)


def merge(original: dict[str, Any], patch: Any, kind: str = "Pod") -> dict[str, Any]:
    return apply_patch(original, json.dumps(patch).encode(), MERGE_PATCH, kind)


def pod_spec(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def containers(*items: dict[str, Any]) -> dict[str, Any]:
    return pod_spec(containers=list(items))


def c(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, **fields}


# (id, kind, original, patch, result): each is also checked not to mutate `original`.
CASES: list[Any] = [
    # -- containers: merged by name ----------------------------------------------------------------
    pytest.param("Pod", containers(c("a", image="a:1"), c("b", image="b:1")),
                 {"spec": {"containers": [c("b", image="b:2")]}},
                 containers(c("a", image="a:1"), c("b", image="b:2")), id="containers: change one image"),
    pytest.param("Pod", containers(c("a", image="a:1", ports=[{"containerPort": 80}])),
                 {"spec": {"containers": [c("a", resources={"limits": {"cpu": "1"}})]}},
                 containers(c("a", image="a:1", ports=[{"containerPort": 80}], resources={"limits": {"cpu": "1"}})),
                 id="containers: fields the patch leaves out are kept"),
    # mergeSortedSlice: an item the server does not know goes before the server-only items.
    pytest.param("Pod", containers(c("a"), c("b")), {"spec": {"containers": [c("c", image="c:1")]}},
                 containers(c("c", image="c:1"), c("a"), c("b")), id="containers: add one without order"),
    pytest.param("Pod", containers(c("a"), c("b")),
                 {"spec": {"$setElementOrder/containers": [c("a"), c("b"), c("c")],
                           "containers": [c("c", image="c:1")]}},
                 containers(c("a"), c("b"), c("c", image="c:1")),
                 id="containers: add one at the end ($setElementOrder)"),
    pytest.param("Pod", containers(c("a"), c("b"), c("c")),
                 {"spec": {"containers": [{"$patch": "delete", "name": "b"}]}},
                 containers(c("a"), c("c")), id="containers: delete one"),
    pytest.param("Pod", containers(c("a")), {"spec": {"containers": [{"$patch": "delete", "name": "zzz"}]}},
                 containers(c("a")), id="containers: delete a missing one is a no-op"),
    pytest.param("Pod", containers(c("a"), c("a", image="dup"), c("b", image="b:1"), c("c"), c("c")),
                 {"spec": {"containers": [{"name": "a", "$patch": "delete"}, {"name": "c", "$patch": "delete"}]}},
                 containers(c("b", image="b:1")), id="containers: delete removes every duplicate"),
    pytest.param("Pod", containers(c("a", image="x"), c("b")),
                 {"spec": {"containers": [{"name": "a", "image": None, "command": ["sh"]}]}},
                 containers(c("a", command=["sh"]), c("b")), id="containers: null deletes a field of an item"),
    # "preserve the order from the patch in a merging list": the patch's order wins for its items.
    pytest.param("Pod", containers(c("a"), c("b", image="b"), c("c")),
                 {"spec": {"containers": [c("c", image="c"), c("a", image="a"), c("b", tty=True)]}},
                 containers(c("c", image="c"), c("a", image="a"), c("b", image="b", tty=True)),
                 id="containers: patch order wins"),
    pytest.param("Pod", containers(c("a"), c("b", image="b"), c("c")),
                 {"spec": {"containers": [c("c", image="c"), c("a", image="a")]}},
                 containers(c("b", image="b"), c("c", image="c"), c("a", image="a")),
                 id="containers: server-only items interleave by server order"),
    pytest.param("Pod", containers(c("a"), c("b")), {"spec": {"containers": [{"$patch": "replace"}]}},
                 containers(), id="containers: $patch replace with no items empties the list"),
    pytest.param("Pod", containers(c("a", image="a"), c("b")),
                 {"spec": {"containers": [c("z", image="z"), {"$patch": "replace"}]}},
                 containers(c("z", image="z")), id="containers: $patch replace on a list"),
    pytest.param("Pod", pod_spec(), {"spec": {"containers": [c("a"), {"$patch": "delete", "name": "b"}]}},
                 containers(c("a")), id="containers: new list drops its delete directives"),
    pytest.param("Pod", pod_spec(initContainers=[c("i", image="i:1")]),
                 {"spec": {"initContainers": [c("i", image="i:2")]}},
                 pod_spec(initContainers=[c("i", image="i:2")]), id="initContainers: merged by name"),
    # -- env by name ---------------------------------------------------------------------------------
    pytest.param("Pod", containers(c("a", env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}])),
                 {"spec": {"containers": [c("a", env=[{"name": "Y", "value": "3"}])]}},
                 containers(c("a", env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}])),
                 id="env: change one value"),
    pytest.param("Pod", containers(c("a", env=[{"name": "X", "value": "1"}])),
                 {"spec": {"containers": [c("a", env=[
                     {"name": "X", "value": None, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}])]}},
                 containers(c("a", env=[{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}])),
                 id="env: value to valueFrom"),
    pytest.param("Pod", containers(c("a", env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}])),
                 {"spec": {"containers": [c("a", env=[{"$patch": "delete", "name": "X"}])]}},
                 containers(c("a", env=[{"name": "Y", "value": "2"}])), id="env: delete one"),
    # -- ports: Pod by containerPort, Service by port -----------------------------------------------
    pytest.param("Pod", containers(c("a", ports=[{"containerPort": 80, "protocol": "TCP"},
                                                 {"containerPort": 443, "protocol": "TCP"}])),
                 {"spec": {"containers": [c("a", ports=[{"containerPort": 443, "$patch": "delete"},
                                                        {"containerPort": 8080, "name": "alt"}])]}},
                 containers(c("a", ports=[{"containerPort": 8080, "name": "alt"},
                                          {"containerPort": 80, "protocol": "TCP"}])),
                 id="container ports: by containerPort"),
    pytest.param("Service", {"spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"},
                                                {"port": 443, "targetPort": 8443, "protocol": "TCP"}]}},
                 {"spec": {"ports": [{"port": 443, "targetPort": 9443}]}},
                 {"spec": {"ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"},
                                     {"port": 443, "targetPort": 9443, "protocol": "TCP"}]}},
                 id="service ports: by port"),
    pytest.param("Service", {"spec": {"ports": [{"port": 80}, {"port": 443}], "selector": {"app": "a"}}},
                 {"spec": {"$setElementOrder/ports": [{"port": 80}],
                           "ports": [{"port": 443, "$patch": "delete"}], "selector": {"tier": "b"}}},
                 {"spec": {"ports": [{"port": 80}], "selector": {"app": "a", "tier": "b"}}},
                 id="service ports: delete one, selector is a map"),
    # -- volumes by name, volumeMounts by mountPath --------------------------------------------------
    pytest.param("Pod",
                 pod_spec(volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "x"}}]),
                 {"spec": {"volumes": [{"name": "cfg", "configMap": {"name": "y"}}]}},
                 pod_spec(volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "y"}}]),
                 id="volumes: by name"),
    # What kubectl apply sends when a volume's source type changes (volumes are merge,retainKeys).
    pytest.param("Pod", pod_spec(volumes=[{"name": "data", "emptyDir": {"medium": "Memory"}}]),
                 {"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "name": "data",
                                        "configMap": {"name": "cm"}}]}},
                 pod_spec(volumes=[{"name": "data", "configMap": {"name": "cm"}}]),
                 id="volumes: $retainKeys swaps the source"),
    pytest.param("Pod", containers(c("a", volumeMounts=[{"name": "d", "mountPath": "/d"},
                                                        {"name": "e", "mountPath": "/e"}])),
                 {"spec": {"containers": [c("a", volumeMounts=[{"name": "d2", "mountPath": "/d", "readOnly": True},
                                                               {"mountPath": "/e", "$patch": "delete"}])]}},
                 containers(c("a", volumeMounts=[{"name": "d2", "mountPath": "/d", "readOnly": True}])),
                 id="volumeMounts: by mountPath"),
    # -- $setElementOrder ----------------------------------------------------------------------------
    pytest.param("Pod", containers(c("a"), c("b")), {"spec": {"$setElementOrder/containers": [c("b"), c("a")]}},
                 containers(c("b"), c("a")), id="order: reorder without a list"),
    # Upstream: "$setElementOrder contains item that is not present in the list to be merged".
    pytest.param("Pod", containers(c("a"), c("c")),
                 {"spec": {"$setElementOrder/containers": [c("c"), c("b"), c("a")],
                           "containers": [c("c", image="c"), c("a", image="a")]}},
                 containers(c("c", image="c"), c("a", image="a")), id="order: names an item nobody has"),
    pytest.param("Pod", containers(c("a", tty=True), c("b", image="b")),
                 {"spec": {"$setElementOrder/containers": [c("d"), c("a"), c("b"), c("c")],
                           "containers": [c("d", image="d"), c("c", image="c")]}},
                 containers(c("d", image="d"), c("a", tty=True), c("b", image="b"), c("c", image="c")),
                 id="order: added items at both ends"),
    # The next three are upstream's 3-way cases with items only the server has: their expected order
    # depends on which slots of the live list the merge overwrote (patch.py, _live_list_after_merge).
    pytest.param("Pod", containers(c("a"), c("b", tty=True), c("d", tty=True)),
                 {"spec": {"$setElementOrder/containers": [c("b"), c("c")],
                           "containers": [c("c"), {"name": "a", "$patch": "delete"}]}},
                 containers(c("b", tty=True), c("d", tty=True), c("c")), id="order: add, delete, server-only item"),
    pytest.param("Pod", containers(c("a", tty=True), c("d", tty=True)),
                 {"spec": {"$setElementOrder/containers": [c("b"), c("c")],
                           "containers": [c("b"), c("c"), {"name": "a", "$patch": "delete"}]}},
                 containers(c("d", tty=True), c("b"), c("c")), id="order: add two, delete one, server-only item"),
    pytest.param("Pod", containers(c("c", tty=True)),
                 {"spec": {"$setElementOrder/containers": [c("b")],
                           "containers": [c("b"), {"name": "a", "$patch": "delete"}]}},
                 containers(c("b"), c("c", tty=True)), id="order: delete a missing item, add one"),
    pytest.param("Pod", containers(c("a", tty=True), c("c", image="c")),
                 {"spec": {"$setElementOrder/containers": [c("a"), c("b")],
                           "containers": [c("a", image="a"), c("b", image="b")]}},
                 containers(c("a", tty=True, image="a"), c("b", image="b"), c("c", image="c")),
                 id="order: server-only item after the patch's"),
    # Reordering with items only the server has: each keeps its place after the item it followed.
    pytest.param("Pod", containers(c("a", tty=True), c("b"), c("x"), c("c"), c("d")),
                 {"spec": {"$setElementOrder/containers": [c("b"), c("a"), c("d"), c("c")]}},
                 containers(c("b"), c("a", tty=True), c("x"), c("d"), c("c")),
                 id="order: reorder around a server item"),
    pytest.param("Pod", containers(c("a"), c("b"), c("x"), c("y"), c("z"), c("c"), c("d")),
                 {"spec": {"$setElementOrder/containers": [c("b"), c("a"), c("d"), c("c")]}},
                 containers(c("b"), c("a"), c("x"), c("y"), c("z"), c("d"), c("c")),
                 id="order: reorder around several server items"),
    pytest.param("Pod", containers(c("a", tty=True), c("c"), c("d"), c("b"), c("x")),
                 {"spec": {"$setElementOrder/containers": [c("d"), c("b"), c("c"), c("a")]}},
                 containers(c("d"), c("b"), c("c"), c("a", tty=True), c("x")), id="order: server item at the end"),
    # Duplicated names (which validation would refuse, but stored objects may hold) move together.
    pytest.param("Pod", containers(c("a"), c("b", image="1"), c("c"), c("b", image="2"), c("d")),
                 {"spec": {"$setElementOrder/containers": [c("b"), c("a"), c("d"), c("c"), c("b")]}},
                 containers(c("b", image="1"), c("b", image="2"), c("a"), c("d"), c("c")), id="order: duplicates"),
    pytest.param("ConfigMap", {"metadata": {"finalizers": ["a", "b", "x", "c", "d"]}},
                 {"metadata": {"$setElementOrder/finalizers": ["b", "a", "d", "c"]}},
                 {"metadata": {"finalizers": ["b", "a", "x", "d", "c"]}}, id="order: scalars with a server item"),
    pytest.param("ConfigMap", {"metadata": {"finalizers": ["a", "c", "b"]}},
                 {"metadata": {"$setElementOrder/finalizers": ["d", "b", "a"], "finalizers": ["d"],
                               "$deleteFromPrimitiveList/finalizers": ["c"]}},
                 {"metadata": {"finalizers": ["d", "b", "a"]}}, id="order: scalars added, deleted, reordered"),
    # -- lists of scalars: finalizers merge, args/command replace ------------------------------------
    pytest.param("ConfigMap", {"metadata": {"finalizers": ["a", "b", "c"]}},
                 {"metadata": {"$setElementOrder/finalizers": ["a", "c"],
                               "$deleteFromPrimitiveList/finalizers": ["b"]}},
                 {"metadata": {"finalizers": ["a", "c"]}}, id="finalizers: $deleteFromPrimitiveList"),
    pytest.param("ConfigMap", {"metadata": {"finalizers": ["a", "b", "b", "c"]}},
                 {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zzz"]}},
                 {"metadata": {"finalizers": ["a", "c"]}}, id="finalizers: delete every copy, ignore missing"),
    pytest.param("ConfigMap", {"metadata": {"name": "x"}},
                 {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
                 {"metadata": {"name": "x"}}, id="finalizers: deleting from no list adds none"),
    pytest.param("ConfigMap", {"metadata": {"finalizers": ["a", "b", "c"]}},
                 {"metadata": {"$setElementOrder/finalizers": ["a", "b", "d"], "finalizers": ["d"],
                               "$deleteFromPrimitiveList/finalizers": ["c"]}},
                 {"metadata": {"finalizers": ["a", "b", "d"]}}, id="finalizers: add and delete with order"),
    # A merged scalar list is a set union; new values go first (mergeSortedSlice, as for maps).
    pytest.param("ConfigMap", {"metadata": {"finalizers": ["a", "b"]}}, {"metadata": {"finalizers": ["b", "c"]}},
                 {"metadata": {"finalizers": ["a", "b", "c"]}}, id="finalizers: union"),
    pytest.param("ConfigMap", {"metadata": {"finalizers": ["a", "b"]}}, {"metadata": {"finalizers": ["c"]}},
                 {"metadata": {"finalizers": ["c", "a", "b"]}}, id="finalizers: a new one goes first"),
    pytest.param("ConfigMap", {"metadata": {"finalizers": [1, 2, 3]}}, {"metadata": {"finalizers": [3, 1]}},
                 {"metadata": {"finalizers": [2, 3, 1]}}, id="finalizers: patch order for scalars"),
    pytest.param("ConfigMap", {"metadata": {"finalizers": ["a"]}},
                 {"metadata": {"$setElementOrder/finalizers": ["b", "a"], "finalizers": ["b"]}},
                 {"metadata": {"finalizers": ["b", "a"]}}, id="finalizers: $setElementOrder"),
    pytest.param("Pod", containers(c("a", args=["x", "y"], command=["sh", "-c"])),
                 {"spec": {"containers": [c("a", args=["z"], command=["bash"])]}},
                 containers(c("a", args=["z"], command=["bash"])), id="args and command: replaced"),
    # -- ownerReferences by uid ----------------------------------------------------------------------
    pytest.param("ReplicaSet", {"metadata": {"ownerReferences": [{"uid": "1", "name": "d1", "kind": "Deployment"}]}},
                 {"metadata": {"ownerReferences": [{"uid": "1", "controller": True}, {"uid": "2", "name": "d2"}]}},
                 {"metadata": {"ownerReferences": [{"uid": "1", "name": "d1", "kind": "Deployment", "controller": True},
                                                   {"uid": "2", "name": "d2"}]}},
                 id="ownerReferences: by uid"),
    pytest.param("Deployment", {"metadata": {"ownerReferences": [{"uid": "1"}, {"uid": "2"}]}},
                 {"metadata": {"ownerReferences": [{"uid": "1", "$patch": "delete"}]}},
                 {"metadata": {"ownerReferences": [{"uid": "2"}]}}, id="ownerReferences: delete one"),
    # -- empty lists and merge key values -------------------------------------------------------------
    # mergeSlice: an empty patch list merges nothing in, so it changes nothing; only an atomic list empties.
    pytest.param("Pod", pod_spec(containers=[c("a")], tolerations=[{"key": "t"}]),
                 {"spec": {"containers": [], "tolerations": []}}, pod_spec(containers=[c("a")], tolerations=[]),
                 id="empty lists: merged is a no-op, atomic is emptied"),
    pytest.param("ConfigMap", {"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": []}},
                 {"metadata": {"finalizers": ["a"]}}, id="empty lists: finalizers [] keeps them"),
    pytest.param("Pod", containers(c("a", ports=[{"containerPort": 80, "protocol": "TCP"}])),
                 {"spec": {"containers": [c("a", ports=[{"containerPort": 80.0, "name": "http"},
                                                        {"containerPort": "80", "name": "str"}])]}},
                 containers(c("a", ports=[{"containerPort": 80, "protocol": "TCP", "name": "http"},
                                          {"containerPort": "80", "name": "str"}])),
                 id="merge keys compare as JSON values: 80 == 80.0 != '80'"),
    pytest.param("Deployment", {"spec": {"strategy": {"type": "Recreate"}}}, {"spec": {"strategy": {}}},
                 {"spec": {"strategy": {"type": "Recreate"}}}, id="an empty map merges nothing"),
    # -- atomic lists --------------------------------------------------------------------------------
    pytest.param("Pod", pod_spec(tolerations=[{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]),
                 {"spec": {"tolerations": [{"key": "c", "operator": "Exists"}]}},
                 pod_spec(tolerations=[{"key": "c", "operator": "Exists"}]), id="tolerations: atomic"),
    pytest.param("Node", {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}},
                 {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}},
                 {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}}, id="taints: atomic"),
    pytest.param("Pod", containers(c("a", envFrom=[{"configMapRef": {"name": "x"}}])),
                 {"spec": {"containers": [c("a", envFrom=[{"secretRef": {"name": "y"}}])]}},
                 containers(c("a", envFrom=[{"secretRef": {"name": "y"}}])), id="envFrom: atomic"),
    # -- maps ----------------------------------------------------------------------------------------
    pytest.param("Pod", {"metadata": {"labels": {"a": "1", "b": "2"}, "annotations": {"x": "1"}}},
                 {"metadata": {"labels": {"b": "3", "c": "4"}, "annotations": {"x": None, "y": "2"}}},
                 {"metadata": {"labels": {"a": "1", "b": "3", "c": "4"}, "annotations": {"y": "2"}}},
                 id="labels and annotations: merged"),
    pytest.param("Pod", {"metadata": {"labels": {"a": "1", "b": "2"}}},
                 {"metadata": {"labels": {"$patch": "replace", "c": "3"}}},
                 {"metadata": {"labels": {"c": "3"}}}, id="$patch replace on a map"),
    pytest.param("Pod", {"metadata": {"labels": {"a": "1"}}}, {"metadata": {"labels": {"$patch": "replace"}}},
                 {"metadata": {"labels": {}}}, id="$patch replace alone empties a map"),
    # Upstream's "delete map from nested map": the map becomes empty (a typed decode would then drop it).
    pytest.param("Pod", pod_spec(nodeSelector={"a": "1"}, hostname="h"),
                 {"spec": {"nodeSelector": {"$patch": "delete"}}},
                 pod_spec(nodeSelector={}, hostname="h"), id="$patch delete on a map"),
    pytest.param("Pod", pod_spec(nodeSelector={"a": "1"}, hostname="h"),
                 {"spec": {"nodeSelector": None, "subdomain": None}},
                 pod_spec(hostname="h"), id="null deletes a key, missing or not"),
    pytest.param("Pod", {"a": {"b": 1}}, {"a": {"c": {"d": None, "e": 1}}}, {"a": {"b": 1, "c": {"e": 1}}},
                 id="nulls inside new maps are dropped"),
    pytest.param("Pod", {"a": {"b": 1}}, {"a": "x"}, {"a": "x"}, id="a value of another type replaces"),
    # Since apimachinery 0.29 (removeDirectives), a new map carrying `$patch` is dropped, whatever it says.
    pytest.param("Pod", {"a": "x", "b": 1}, {"a": {"c": 1, "$patch": "replace"}, "n": {"$patch": "delete"}},
                 {"b": 1}, id="$patch on a new map drops it"),
    pytest.param("Pod", pod_spec(hostname="h"), {"spec": {"nodeSelector": {"$patch": "replace", "a": "1"}}},
                 pod_spec(hostname="h"), id="$patch replace on a missing map"),
    pytest.param("Pod", {"a": {"b": 1}},
                 {"a": {"c": {"d": {"$patch": "replace", "e": 1}, "f": [{"$patch": "merge"}, 2]}}},
                 {"a": {"b": 1, "c": {"f": [2]}}}, id="directives inside new values are dropped"),
    pytest.param("Pod", {"a": 1}, {}, {"a": 1}, id="empty patch"),
    # -- $retainKeys ---------------------------------------------------------------------------------
    pytest.param("Deployment",
                 {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}},
                 {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
                 {"spec": {"strategy": {"type": "Recreate"}}}, id="$retainKeys: strategy Recreate"),
    pytest.param("Deployment", {"spec": {"strategy": {"type": "Recreate"}}},
                 {"spec": {"strategy": {"$retainKeys": ["rollingUpdate", "type"], "type": "RollingUpdate",
                                        "rollingUpdate": {"maxSurge": 1}}}},
                 {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
                 id="$retainKeys: strategy RollingUpdate"),
    pytest.param("Deployment", {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
                 {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 2}}}},
                 {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2}}}},
                 id="$retainKeys: without the directive a retainKeys map merges"),
    pytest.param("Deployment", {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
                 {"spec": {"strategy": {"$retainKeys": ["type"]}}},
                 {"spec": {"strategy": {"type": "RollingUpdate"}}}, id="$retainKeys: alone it clears the rest"),
    pytest.param("Pod", pod_spec(volumes=[{"name": "a", "emptyDir": {}},
                                          {"name": "b", "hostPath": {"path": "/x"}, "extra": 1}]),
                 {"spec": {"$setElementOrder/volumes": [{"name": "a"}, {"name": "b"}],
                           "volumes": [{"$retainKeys": ["hostPath", "name"], "name": "b",
                                        "hostPath": {"path": "/y"}}]}},
                 pod_spec(volumes=[{"name": "a", "emptyDir": {}}, {"name": "b", "hostPath": {"path": "/y"}}]),
                 id="$retainKeys: in a merged list item"),
    pytest.param("Deployment", {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
                 {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None}}},
                 {"spec": {"strategy": {"type": "RollingUpdate"}}}, id="$retainKeys: nulls need not be retained"),
]


@pytest.mark.parametrize(("kind", "original", "patch", "result"), CASES)
def test_strategic_merge_patch(kind: str, original: dict[str, Any], patch: dict[str, Any],
                               result: dict[str, Any]) -> None:
    before = copy.deepcopy(original)
    assert smp(original, patch, kind) == result
    assert original == before


# -- the PodTemplateSpec inside workloads -------------------------------------------------------------


def workload(kind: str, template_spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1" if kind == "ReplicationController" else "apps/v1", "kind": kind,
            "metadata": {"name": "w", "finalizers": ["f"]},
            "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app": "w"}}, "spec": template_spec}}}


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "ReplicationController"])
def test_pod_template_lists_merge_in_workloads(kind: str) -> None:
    original = workload(kind, {
        "containers": [c("a", image="a:1", env=[{"name": "X", "value": "1"}], ports=[{"containerPort": 80}],
                         volumeMounts=[{"name": "v", "mountPath": "/v"}]), c("b", image="b:1")],
        "volumes": [{"name": "v", "emptyDir": {}}], "tolerations": [{"key": "t"}]})
    patch = {"metadata": {"finalizers": ["g"]},
             "spec": {"template": {"metadata": {"labels": {"tier": "x"}}, "spec": {
                 "containers": [c("a", env=[{"name": "Y", "value": "2"}], ports=[{"containerPort": 81}],
                                  volumeMounts=[{"name": "w", "mountPath": "/w"}])],
                 "volumes": [{"name": "w", "emptyDir": {}}], "tolerations": [{"key": "u"}]}}}}
    got = smp(original, patch, kind)
    assert got["metadata"]["finalizers"] == ["g", "f"]
    assert got["spec"]["template"]["metadata"]["labels"] == {"app": "w", "tier": "x"}
    spec = got["spec"]["template"]["spec"]
    assert [x["name"] for x in spec["containers"]] == ["a", "b"]
    assert spec["containers"][0]["image"] == "a:1"
    assert spec["containers"][0]["env"] == [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]
    assert spec["containers"][0]["ports"] == [{"containerPort": 81}, {"containerPort": 80}]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "w", "mountPath": "/w"}, {"name": "v", "mountPath": "/v"}]
    assert spec["volumes"] == [{"name": "w", "emptyDir": {}}, {"name": "v", "emptyDir": {}}]
    assert spec["tolerations"] == [{"key": "u"}]


def test_template_paths_do_not_leak_to_other_places() -> None:
    # spec.containers of a Deployment is no field at all: with no strategy, a list is replaced.
    original = {"spec": {"containers": [c("a")]}}
    assert smp(original, {"spec": {"containers": [c("b")]}}, "Deployment") == {"spec": {"containers": [c("b")]}}
    # and a Pod's template path is not special either.
    pod = {"spec": {"template": {"spec": {"containers": [c("a")]}}}}
    assert smp(pod, {"spec": {"template": {"spec": {"containers": [c("b")]}}}}, "Pod") == {
        "spec": {"template": {"spec": {"containers": [c("b")]}}}}


def test_unknown_kinds_get_object_meta_rules() -> None:
    original = {"metadata": {"finalizers": ["a"], "ownerReferences": [{"uid": "1"}]}, "spec": {"l": [1, 2]}}
    got = smp(original, {"metadata": {"finalizers": ["b"], "ownerReferences": [{"uid": "2"}]}, "spec": {"l": [3]}},
              "Widget")
    assert got == {"metadata": {"finalizers": ["b", "a"], "ownerReferences": [{"uid": "2"}, {"uid": "1"}]},
                   "spec": {"l": [3]}}


def test_meta_seam_supplies_merge_keys() -> None:
    meta = BuiltinPatchMeta({"Widget": {("spec", "items"): ListPatchInfo("merge", "id")}})
    original = {"spec": {"items": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}}
    body = json.dumps({"spec": {"items": [{"id": 2, "v": "c"}]}}).encode()
    assert apply_patch(original, body, STRATEGIC_MERGE_PATCH, "Widget", meta=meta) == {
        "spec": {"items": [{"id": 1, "v": "a"}, {"id": 2, "v": "c"}]}}


# -- errors ------------------------------------------------------------------------------------------

ERRORS: list[Any] = [
    pytest.param(containers(c("a")), {"spec": {"containers": [{"image": "x"}]}}, MalformedPatch,
                 "does not contain declared merge key: name", id="missing merge key"),
    pytest.param(containers(c("a")), {"spec": {"containers": [{"$patch": "delete", "image": "x"}]}}, MalformedPatch,
                 "does not contain declared merge key: name", id="delete without merge key"),
    pytest.param(containers(c("a"), c("b"), c("c")),
                 {"spec": {"$setElementOrder/containers": [c("a"), c("b"), c("c")],
                           "containers": [c("c", image="c"), c("a", image="a")]}},
                 MalformedPatch, "doesn't match", id="patch order contradicts $setElementOrder"),
    pytest.param({"metadata": {"finalizers": ["a", "c", "b"]}},
                 {"metadata": {"$setElementOrder/finalizers": ["a", "b", "c"], "finalizers": ["c", "a"]}},
                 MalformedPatch, "doesn't match", id="scalar patch order contradicts $setElementOrder"),
    pytest.param(containers(c("a")), {"spec": {"$setElementOrder/containers": "a"}}, MalformedPatch,
                 "setElementOrder", id="$setElementOrder not a list"),
    pytest.param(containers(c("a")), {"spec": {"$setElementOrder": [c("a")]}}, MalformedPatch,
                 "setElementOrder", id="$setElementOrder without a field"),
    pytest.param({"metadata": {"finalizers": ["a"]}}, {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}},
                 MalformedPatch, "primitive list", id="$deleteFromPrimitiveList not a list"),
    pytest.param({"metadata": {"finalizers": ["a"]}}, {"metadata": {"$deleteFromPrimitiveList/finalizers": [{}]}},
                 MalformedPatch, "primitive list", id="$deleteFromPrimitiveList of maps"),
    pytest.param({"spec": {"strategy": {"type": "Recreate"}}},
                 {"spec": {"strategy": {"$retainKeys": "type", "type": "Recreate"}}},
                 MalformedPatch, "retainKeys", id="$retainKeys not a list"),
    pytest.param({"spec": {"strategy": {"type": "Recreate"}}},
                 {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {"maxSurge": 1}}}},
                 MalformedPatch, "retainKeys", id="$retainKeys misses a key the patch sets"),
    pytest.param({"metadata": {"labels": {"a": "b"}}}, {"metadata": {"labels": {"$patch": "explode"}}},
                 MalformedPatch, "unknown patch type", id="unknown map directive"),
    pytest.param(containers(c("a")), {"spec": {"containers": [{"name": "a", "$patch": "explode"}]}},
                 MalformedPatch, "unknown patch type", id="unknown list directive"),
    pytest.param({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": [["b"]]}},
                 PatchNotApplicable, "lists of lists", id="list of lists"),
    pytest.param({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": [{"b": 1}]}},
                 MalformedPatch, "not identical", id="mixed element types"),
    pytest.param({"metadata": {"finalizers": [{"b": 1}]}}, {"metadata": {"finalizers": [{"b": 2}]}},
                 MalformedPatch, "without merge key", id="maps in a merged list without a key"),
]


@pytest.mark.parametrize(("original", "patch", "error", "text"), ERRORS)
def test_strategic_merge_patch_errors(original: dict[str, Any], patch: dict[str, Any], error: type[PatchError],
                                      text: str) -> None:
    kind = "Deployment" if "strategy" in json.dumps(original) else "Pod"
    with pytest.raises(error) as err:
        smp(original, patch, kind)
    assert text in err.value.message
    assert err.value.status()["code"] in (400, 422)


# -- what kubectl sends ------------------------------------------------------------------------------


def last_applied(obj: dict[str, Any]) -> str:
    # kubectl's annotation: Go's json.Marshal (sorted keys, compact), a newline, and metadata.annotations
    # present (empty) because kubectl removes its own annotation before encoding.
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"


def applied_v1() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"annotations": {}, "labels": {"app": "web"}, "name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                     "env": [{"name": "MODE", "value": "blue"}, {"name": "LOG", "value": "info"}],
                                     "ports": [{"containerPort": 80}, {"containerPort": 443}]}]}}}}


def applied_v2() -> dict[str, Any]:
    obj = applied_v1()
    obj["metadata"]["labels"]["tier"] = "frontend"
    obj["spec"]["replicas"] = 3
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["env"][0]["value"] = "green"
    container["ports"] = [{"containerPort": 80}]
    return obj


def live_deployment() -> dict[str, Any]:
    """applied_v1 as the apiserver stores it: defaulted, with status and the last-applied annotation."""
    obj = applied_v1()
    obj["metadata"].update({"uid": "u1", "resourceVersion": "7", "generation": 1,
                            "creationTimestamp": "2024-01-01T00:00:00Z",
                            "annotations": {LAST_APPLIED: last_applied(applied_v1()),
                                            "deployment.kubernetes.io/revision": "1"}})
    obj["spec"].update({"strategy": {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                        "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600})
    template = obj["spec"]["template"]
    template["metadata"]["creationTimestamp"] = None
    container = template["spec"]["containers"][0]
    for port in container["ports"]:
        port["protocol"] = "TCP"
    container.update({"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                      "terminationMessagePolicy": "File", "resources": {}})
    template["spec"].update({"restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "securityContext": {},
                             "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30})
    obj["status"] = {"replicas": 2, "readyReplicas": 2, "observedGeneration": 1}
    return obj


def kubectl_apply_body(strategy: dict[str, Any] | None = None) -> dict[str, Any]:
    """The PATCH body kubectl 1.27 (and 1.33, byte for byte) sends for `kubectl apply -f` of applied_v2
    over live_deployment(): recorded from the real binaries. Its 3-way diff (CreateThreeWayMergePatch)
    names changed items with $setElementOrder for every merged list it touches, deletes the port that left
    the last-applied configuration with `$patch: delete`, and leaves the server's defaults alone."""
    modified = applied_v2()
    if strategy is not None:
        modified["spec"]["strategy"] = strategy
    spec: dict[str, Any] = {"replicas": 3, "template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"$setElementOrder/env": [{"name": "MODE"}, {"name": "LOG"}],
                        "$setElementOrder/ports": [{"containerPort": 80}],
                        "env": [{"name": "MODE", "value": "green"}],
                        "name": "web",
                        "ports": [{"$patch": "delete", "containerPort": 443}]}]}}}
    if strategy is not None:
        spec["strategy"] = {"$retainKeys": ["type"], **strategy}
    return {"metadata": {"annotations": {LAST_APPLIED: last_applied(modified)}, "labels": {"tier": "frontend"}},
            "spec": spec}


def test_kubectl_apply_three_way_patch() -> None:
    live = live_deployment()
    before = copy.deepcopy(live)
    got = smp(live, kubectl_apply_body(), "Deployment")
    assert live == before

    want = copy.deepcopy(live)
    want["metadata"]["labels"] = {"app": "web", "tier": "frontend"}
    want["metadata"]["annotations"][LAST_APPLIED] = last_applied(applied_v2())
    want["spec"]["replicas"] = 3
    container = want["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [{"name": "MODE", "value": "green"}, {"name": "LOG", "value": "info"}]
    container["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
    assert got == want
    # kubectl apply does not touch what only the server set.
    assert got["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "25%", "maxUnavailable": "25%"}
    assert json.loads(got["metadata"]["annotations"][LAST_APPLIED]) == applied_v2()


def test_kubectl_apply_strategy_recreate_drops_rolling_update() -> None:
    got = smp(live_deployment(), kubectl_apply_body({"type": "Recreate"}), "Deployment")
    assert got["spec"]["strategy"] == {"type": "Recreate"}
    assert got["spec"]["replicas"] == 3
    assert got["spec"]["revisionHistoryLimit"] == 10


def test_kubectl_apply_is_idempotent_on_its_result() -> None:
    once = smp(live_deployment(), kubectl_apply_body(), "Deployment")
    assert smp(once, kubectl_apply_body(), "Deployment") == once


def test_kubectl_apply_keeps_a_container_only_the_server_has() -> None:
    # A sidecar injected server-side is no item of the last-applied configuration: apply keeps it, after
    # the applied ones (its slot in the live list is kept relative to them).
    live = live_deployment()
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "proxy:1"})
    got = smp(live, kubectl_apply_body(), "Deployment")
    assert [x["name"] for x in got["spec"]["template"]["spec"]["containers"]] == ["web", "sidecar"]


def test_kubectl_set_image_set_env_and_rollout_restart() -> None:
    live = live_deployment()
    got = smp(live, {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "web"}],
                                                    "containers": [{"image": "nginx:1.26", "name": "web"}]}}}},
              "Deployment")
    assert got["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert got["spec"]["template"]["spec"]["containers"][0]["env"] == live["spec"]["template"]["spec"]["containers"][
        0]["env"]

    got = smp(live, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"$setElementOrder/env": [{"name": "MODE"}, {"name": "LOG"}],
                        "env": [{"name": "MODE", "value": "red"}], "name": "web"}]}}}}, "Deployment")
    assert got["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "red"},
                                                                       {"name": "LOG", "value": "info"}]

    got = smp(live, {"spec": {"template": {"spec": {  # kubectl set env deployment/web LOG-
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"$setElementOrder/env": [{"name": "MODE"}], "env": [{"$patch": "delete", "name": "LOG"}],
                        "name": "web"}]}}}}, "Deployment")
    assert got["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "MODE", "value": "blue"}]

    got = smp(live, {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"}}}}}, "Deployment")
    assert got["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"}, "creationTimestamp": None,
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"}}


def test_kubectl_scale_label_annotate_send_merge_patches() -> None:
    # kubectl scale: PATCH .../deployments/web/scale, a JSON merge patch of the autoscaling/v1 Scale.
    scale = {"kind": "Scale", "apiVersion": "autoscaling/v1",
             "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7"},
             "spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=web"}}
    assert merge(scale, {"spec": {"replicas": 5}}, "Scale")["spec"] == {"replicas": 5}
    # The same body as a strategic merge patch (kubectl patch --subresource=scale) means the same.
    assert smp(scale, {"spec": {"replicas": 5}}, "Scale") == merge(scale, {"spec": {"replicas": 5}}, "Scale")

    live = live_deployment()
    got = merge(live, {"metadata": {"labels": {"tier": "backend"}}}, "Deployment")  # label tier=backend --overwrite
    assert got["metadata"]["labels"] == {"app": "web", "tier": "backend"}
    got = merge(live, {"metadata": {"labels": {"app": None}}}, "Deployment")  # label app-
    assert "app" not in got["metadata"]["labels"]
    got = merge(live, {"metadata": {"annotations": {"note": "hi"}}}, "Deployment")  # annotate note=hi
    assert got["metadata"]["annotations"]["note"] == "hi"
    assert LAST_APPLIED in got["metadata"]["annotations"]
    # label --resource-version=7: the version rides along in the body; the registry treats it as a precondition.
    got = merge(live, {"metadata": {"labels": {"x": "y"}, "resourceVersion": "7"}}, "Deployment")
    assert got["metadata"]["resourceVersion"] == "7"
    assert got["metadata"]["labels"]["x"] == "y"
