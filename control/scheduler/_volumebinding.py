"""The VolumeBinding plugin (pkg/scheduler/framework/plugins/volumebinding), in kubesim's shape:

    PreFilter   every claim the pod names exists and is not being deleted; an unbound claim whose class
                binds Immediately must be bound first (the PV controller does that): otherwise the pod
                is unschedulable everywhere, with upstream's message.
    Filter      a bound claim's volume admits the node (its nodeAffinity); an unbound WaitForFirstConsumer
                claim has a volume the node can reach or a class that provisions.
    PreBind     (claims_to_select) the scheduler writes volume.kubernetes.io/selected-node on each unbound
                WaitForFirstConsumer claim before binding the pod; the PV controller and provisioner take
                it from there, and the kubelet waits for the claim to be bound before it mounts.

Upstream's PreBind also binds static volumes itself and waits for the claims to be bound before binding
the pod; kubesim leaves both to the PV controller, so a pod may be bound while its claim is still being
provisioned (its kubelet shows it ContainerCreating until then).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from control.api.storage import (
    NO_PROVISIONER,
    WAIT_FOR_FIRST_CONSUMER,
    claim_class,
    claim_names,
    matching_volume,
    volume_fits_node,
)
from control.scheduler._plugins import SKIP, FilterPlugin
from control.scheduler._types import Code, JsonObject, NodeInfo, PodInfo, Status

__all__ = ["VolumeBinding", "VolumeLister", "claims_to_select"]

NODE_CONFLICT = "node(s) had volume node affinity conflict"
NO_VOLUME = "node(s) didn't find available persistent volumes to bind"
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
MISSING_VOLUME = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"


@dataclass(frozen=True)
class VolumeLister:
    """The scheduler's views of claims, volumes and classes (its informers' stores)."""

    claim: Callable[[str, str], JsonObject | None]  # (namespace, name)
    volume: Callable[[str], JsonObject | None]
    storage_class: Callable[[str], JsonObject | None]
    volumes: Callable[[], Iterable[JsonObject]]


@dataclass(frozen=True)
class _Claims:
    bound: tuple[JsonObject, ...]  # the volumes of the bound claims
    delayed: tuple[tuple[JsonObject, bool], ...]  # unbound WaitForFirstConsumer claims: (claim, provisionable)


def _node_labels(node: NodeInfo) -> dict[str, str]:
    return {**node.labels, "metadata.name": node.name}


class VolumeBinding(FilterPlugin):
    name = "VolumeBinding"

    def __init__(self, lister: VolumeLister) -> None:
        self.lister = lister

    def pre_filter(self, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Any:
        names = claim_names(pod.obj)
        if not names:
            return SKIP
        bound: list[JsonObject] = []
        delayed: list[tuple[JsonObject, bool]] = []
        for name in names:
            claim = self.lister.claim(pod.namespace, name)
            if claim is None:
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (f'persistentvolumeclaim "{name}" not found',),
                              self.name)
            if (claim.get("metadata") or {}).get("deletionTimestamp"):
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE,
                              (f'persistentvolumeclaim "{name}" is being deleted',), self.name)
            volume_name = (claim.get("spec") or {}).get("volumeName")
            if volume_name:
                volume = self.lister.volume(str(volume_name))
                if volume is None:
                    return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (MISSING_VOLUME,), self.name)
                bound.append(volume)
                continue
            storage_class = self.lister.storage_class(claim_class(claim)) if claim_class(claim) else None
            if storage_class is None or storage_class.get("volumeBindingMode") != WAIT_FOR_FIRST_CONSUMER:
                return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (UNBOUND_IMMEDIATE,), self.name)
            provisionable = str(storage_class.get("provisioner") or NO_PROVISIONER) != NO_PROVISIONER
            delayed.append((claim, provisionable))
        return _Claims(tuple(bound), tuple(delayed))

    def filter(self, pod: PodInfo, node: NodeInfo, state: Any) -> Status | None:
        assert isinstance(state, _Claims)
        labels = _node_labels(node)
        if any(not volume_fits_node(volume, labels) for volume in state.bound):
            return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, (NODE_CONFLICT,), self.name)
        for claim, provisionable in state.delayed:
            if provisionable:
                continue
            if matching_volume(claim, self.lister.volumes(), labels) is None:
                return Status(Code.UNSCHEDULABLE, (NO_VOLUME,), self.name)
        return None


def claims_to_select(pod: JsonObject, lister: VolumeLister) -> list[str]:
    """The pod's unbound WaitForFirstConsumer claims: those that get the selected-node annotation."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    chosen = []
    for name in claim_names(pod):
        claim = lister.claim(namespace, name)
        if claim is None or (claim.get("spec") or {}).get("volumeName"):
            continue
        storage_class = lister.storage_class(claim_class(claim)) if claim_class(claim) else None
        if storage_class is not None and storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER:
            chosen.append(name)
    return chosen
