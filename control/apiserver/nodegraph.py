"""Which objects each node may read: the Node authorizer's graph (plugin/pkg/auth/authorizer/node/graph.go).

Upstream keeps a graph of pod -> node edges plus secret/configmap/pvc -> pod edges, fed by informers; a
node may read an object only if a path leads from it to the node. kubesim computes the same relation
from the pods in the registry's watch cache, incrementally: the graph subscribes to the pods cache and
updates one pod's edges per event, so an authorization check is a dictionary lookup, never a scan.
It sees exactly what the cache has applied, so a kubelet that has been told of a pod (through a watch
served by the same cache) can already read what the pod references.

    node <- pod                       the pod is bound to the node (spec.nodeName)
    node <- pod <- configmap          volumes, projected volumes, env valueFrom, envFrom
    node <- pod <- secret             the same, imagePullSecrets, and volume plugins' secret references
    node <- pod <- pvc                persistentVolumeClaim volumes and ephemeral volumes' claims

    node <- pod <- pvc <- pv          the claim's spec.volumeName (from the claims cache, when given)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from control.apiserver.watchcache import WatchCache, WatchEvent

# (kind, namespace, name); kind is the resource's plural.
ObjectRef = tuple[str, str, str]


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    """The dict items of a list-valued field, whatever the field actually holds."""
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, dict))


def _name_at(obj: Any, *path: str) -> str | None:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj if isinstance(obj, str) and obj else None


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        yield from _dicts(spec.get(field))


# Where a volume source names a secret (podutil.VisitPodSecretNames).
_VOLUME_SECRET_PATHS: tuple[tuple[str, ...], ...] = (
    ("secret", "secretName"), ("azureFile", "secretName"), ("cephfs", "secretRef", "name"),
    ("cinder", "secretRef", "name"), ("flexVolume", "secretRef", "name"), ("iscsi", "secretRef", "name"),
    ("rbd", "secretRef", "name"), ("scaleIO", "secretRef", "name"), ("storageos", "secretRef", "name"),
    ("csi", "nodePublishSecretRef", "name"),
)


def pod_references(pod: dict[str, Any]) -> set[ObjectRef]:
    """Every configmap, secret, PVC and serviceaccount POD names, in its own namespace."""
    namespace = _name_at(pod, "metadata", "namespace") or ""
    pod_name = _name_at(pod, "metadata", "name") or ""
    spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    found: set[tuple[str, str | None]] = set()
    # The pod's ServiceAccount: a node may request its tokens (upstream's serviceaccount -> pod edge).
    found.add(("serviceaccounts", _name_at(spec, "serviceAccountName") or "default"))
    for ref in _dicts(spec.get("imagePullSecrets")):
        found.add(("secrets", _name_at(ref, "name")))
    for volume in _dicts(spec.get("volumes")):
        found.add(("configmaps", _name_at(volume, "configMap", "name")))
        found.update(("secrets", _name_at(volume, *path)) for path in _VOLUME_SECRET_PATHS)
        found.add(("persistentvolumeclaims", _name_at(volume, "persistentVolumeClaim", "claimName")))
        if isinstance(volume.get("ephemeral"), dict) and _name_at(volume, "name"):
            # An ephemeral volume's claim is named <pod>-<volume> (upstream's ephemeral.VolumeClaimName).
            found.add(("persistentvolumeclaims", f"{pod_name}-{volume['name']}"))
        projected = volume.get("projected")
        for source in _dicts(projected.get("sources") if isinstance(projected, dict) else None):
            found.add(("configmaps", _name_at(source, "configMap", "name")))
            found.add(("secrets", _name_at(source, "secret", "name")))
    for container in _containers(spec):
        for env in _dicts(container.get("env")):
            found.add(("configmaps", _name_at(env, "valueFrom", "configMapKeyRef", "name")))
            found.add(("secrets", _name_at(env, "valueFrom", "secretKeyRef", "name")))
        for source in _dicts(container.get("envFrom")):
            found.add(("configmaps", _name_at(source, "configMapRef", "name")))
            found.add(("secrets", _name_at(source, "secretRef", "name")))
    return {(kind, namespace, name) for kind, name in found if name}


class NodeGraph:
    """Per node: the pods bound to it and the objects those pods reference (counted, since several pods
    may share one configmap and the edge must outlive all but the last of them)."""

    def __init__(self) -> None:
        self._pod_node: dict[str, str] = {}  # cache key -> node
        self._pod_refs: dict[str, set[ObjectRef]] = {}  # cache key -> what that pod references
        self._reachable: dict[str, Counter[ObjectRef]] = {}  # node -> refs (pods included) -> how many pods
        self._claim_volume: dict[str, tuple[str, str, str]] = {}  # claim cache key -> (pv, namespace, claim)
        self._volume_claims: dict[str, set[tuple[str, str]]] = {}  # pv -> {(namespace, claim)}

    @classmethod
    def of(cls, pods: WatchCache, claims: WatchCache | None = None) -> NodeGraph:
        """A graph of the pods in PODS (and the claims in CLAIMS: their volumes), kept current from then on.
        The caches must have started."""
        graph = cls()
        for key, pod in pods.objects.items():
            graph.set_pod(key, pod)
        pods.listeners.append(graph.on_event)
        if claims is not None:
            for key, claim in claims.objects.items():
                graph.set_claim(key, claim)
            claims.listeners.append(graph.on_claim_event)
        return graph

    def on_claim_event(self, event: WatchEvent, key: str) -> None:
        if event.type == "DELETED":
            self.remove_claim(key)
        else:
            self.set_claim(key, event.object)

    def set_claim(self, key: str, claim: dict[str, Any]) -> None:
        self.remove_claim(key)
        volume = _name_at(claim, "spec", "volumeName")
        if volume is None:
            return
        namespace, name = _name_at(claim, "metadata", "namespace") or "", _name_at(claim, "metadata", "name") or ""
        self._claim_volume[key] = (volume, namespace, name)
        self._volume_claims.setdefault(volume, set()).add((namespace, name))

    def remove_claim(self, key: str) -> None:
        found = self._claim_volume.pop(key, None)
        if found is None:
            return
        volume, namespace, name = found
        claims = self._volume_claims[volume]
        claims.discard((namespace, name))
        if not claims:
            del self._volume_claims[volume]

    def on_event(self, event: WatchEvent, key: str) -> None:
        if event.type == "DELETED":
            self.remove_pod(key)
        else:
            self.set_pod(key, event.object)

    def set_pod(self, key: str, pod: dict[str, Any]) -> None:
        self.remove_pod(key)
        spec = pod.get("spec")
        node = spec.get("nodeName") if isinstance(spec, dict) else None
        if not isinstance(node, str) or not node:
            return  # an unbound pod leads to no node
        refs = pod_references(pod)
        refs.add(("pods", _name_at(pod, "metadata", "namespace") or "", _name_at(pod, "metadata", "name") or ""))
        self._pod_node[key], self._pod_refs[key] = node, refs
        self._reachable.setdefault(node, Counter()).update(refs)

    def remove_pod(self, key: str) -> None:
        node = self._pod_node.pop(key, None)
        if node is None:
            return
        reachable = self._reachable[node]
        reachable.subtract(self._pod_refs.pop(key))
        for ref in [ref for ref, count in reachable.items() if count <= 0]:
            del reachable[ref]
        if not reachable:
            del self._reachable[node]

    def has_path(self, node: str, kind: str, namespace: str, name: str) -> bool:
        """Whether object KIND NAMESPACE/NAME leads to NODE (for kind "pods": the pod is bound to it)."""
        if kind == "persistentvolumes":
            return any(self.has_path(node, "persistentvolumeclaims", claim_ns, claim)
                       for claim_ns, claim in self._volume_claims.get(name, ()))
        return self._reachable.get(node, Counter())[(kind, namespace, name)] > 0


__all__ = ["NodeGraph", "ObjectRef", "pod_references"]
