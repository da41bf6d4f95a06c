"""Persistent storage facts shared by the PV controller, the provisioner, the scheduler and the kubelet:
the annotations they pass each other (upstream's pkg/controller/volume/persistentvolume/util), and which
PersistentVolume may satisfy which claim (findMatchingVolume, pkg/volume/util and component-helpers'
storage/volume).

    matching_volume(claim, volumes, node_labels=None) -> the smallest fitting volume, or None
    volume_fits_node(volume, node_labels)              -> whether its nodeAffinity admits the node
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from control.api.labels import SelectorError, label_selector_as_selector
from control.api.quantity import QuantityError, parse_quantity

__all__ = [
    "ANN_BIND_COMPLETED", "ANN_BOUND_BY_CONTROLLER", "ANN_PROVISIONED_BY", "ANN_SELECTED_NODE",
    "ANN_STORAGE_PROVISIONER", "ANN_STORAGE_PROVISIONER_BETA", "NO_PROVISIONER", "WAIT_FOR_FIRST_CONSUMER",
    "access_modes_fit", "claim_class", "claim_names", "matching_volume", "requested_storage", "storage_of",
    "volume_fits_node",
]

ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_STORAGE_PROVISIONER_BETA = "volume.beta.kubernetes.io/storage-provisioner"
ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
NO_PROVISIONER = "kubernetes.io/no-provisioner"
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"


def _spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _quantity(value: Any) -> Fraction | None:
    try:
        return parse_quantity(value).value
    except QuantityError:
        return None


def requested_storage(claim: Mapping[str, Any]) -> Fraction | None:
    requests = (_spec(claim).get("resources") or {}).get("requests") or {}
    return _quantity(requests.get("storage"))


def storage_of(volume: Mapping[str, Any]) -> Fraction | None:
    return _quantity((_spec(volume).get("capacity") or {}).get("storage"))


def claim_class(claim: Mapping[str, Any]) -> str:
    """GetPersistentVolumeClaimClass: the claim's class, "" for none."""
    return str(_spec(claim).get("storageClassName") or "")


def claim_names(pod: Mapping[str, Any]) -> list[str]:
    """The claims a pod's volumes name, in order (persistentVolumeClaim volumes)."""
    names = []
    for volume in _spec(pod).get("volumes") or []:
        source = volume.get("persistentVolumeClaim") if isinstance(volume, dict) else None
        if isinstance(source, dict) and source.get("claimName"):
            names.append(str(source["claimName"]))
    return names


def access_modes_fit(volume_modes: Iterable[str], claim_modes: Iterable[str]) -> bool:
    """Every mode the claim asks for is one the volume offers (CheckAccessModes)."""
    offered = set(volume_modes)
    return all(mode in offered for mode in claim_modes)


def _requirement_matches(req: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, op = str(req.get("key") or ""), req.get("operator")
    values = [str(v) for v in req.get("values") or []]
    if op == "In":
        return key in labels and labels[key] in values
    if op == "NotIn":
        return key not in labels or labels[key] not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    if op in ("Gt", "Lt") and key in labels and len(values) == 1:
        try:
            have, bound = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    return False


def volume_fits_node(volume: Mapping[str, Any], node_labels: Mapping[str, str]) -> bool:
    """CheckNodeAffinity: no affinity admits every node; else one term (ORed) whose expressions (ANDed)
    all hold. matchFields name the node by metadata.name, which the caller passes as that label."""
    required = (_spec(volume).get("nodeAffinity") or {}).get("required")
    if not isinstance(required, dict):
        return True
    for term in required.get("nodeSelectorTerms") or []:
        expressions = list(term.get("matchExpressions") or [])
        fields = [{**f, "key": "metadata.name"} for f in term.get("matchFields") or []]
        if (expressions or fields) and all(_requirement_matches(r, node_labels) for r in expressions + fields):
            return True
    return False


def _bound_elsewhere(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    ref = _spec(volume).get("claimRef")
    if not isinstance(ref, dict):
        return False
    meta = claim.get("metadata") or {}
    if ref.get("name") != meta.get("name") or ref.get("namespace") != meta.get("namespace"):
        return True
    return bool(ref.get("uid")) and ref.get("uid") != meta.get("uid")


def matching_volume(claim: Mapping[str, Any], volumes: Iterable[Mapping[str, Any]],
                    node_labels: Mapping[str, str] | None = None) -> Mapping[str, Any] | None:
    """findMatchingVolume: a volume pre-bound to this claim (claimRef) if one fits, else the smallest
    available volume of the claim's class whose capacity, access modes, volume mode, labels (the claim's
    selector) and, given NODE_LABELS, node affinity fit. Volumes being deleted or bound to another claim
    never match."""
    spec = _spec(claim)
    wanted = requested_storage(claim)
    if wanted is None:
        return None
    try:
        selector = label_selector_as_selector(spec.get("selector")) if spec.get("selector") is not None else None
    except SelectorError:
        return None
    best: Mapping[str, Any] | None = None
    best_size: Fraction | None = None
    for volume in volumes:
        vspec, meta = _spec(volume), volume.get("metadata") or {}
        if meta.get("deletionTimestamp") or _bound_elsewhere(volume, claim):
            continue
        size = storage_of(volume)
        if size is None or size < wanted:
            continue
        if str(vspec.get("storageClassName") or "") != claim_class(claim):
            continue
        if not access_modes_fit(vspec.get("accessModes") or [], spec.get("accessModes") or []):
            continue
        if (vspec.get("volumeMode") or "Filesystem") != (spec.get("volumeMode") or "Filesystem"):
            continue
        if selector is not None and not selector.matches(meta.get("labels") or {}):
            continue
        if node_labels is not None and not volume_fits_node(volume, node_labels):
            continue
        pre_bound = isinstance(vspec.get("claimRef"), dict)
        if pre_bound:
            return volume
        phase = (volume.get("status") or {}).get("phase")
        if phase not in (None, "", "Available", "Pending"):
            continue
        if best_size is None or size < best_size:
            best, best_size = volume, size
    return best
