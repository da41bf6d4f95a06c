"""The VolumeBinding plugin (pkg/scheduler/framework/plugins/volumebinding), in kubesim's shape:

    PreFilter   every claim the pod names exists and is not being deleted; an unbound claim whose class
                binds Immediately must be bound first (the PV controller does that): otherwise the pod
                is unschedulable everywhere, with upstream's message.
    Filter      a bound claim's volume admits the node (its nodeAffinity); an unbound WaitForFirstConsumer
                claim has a volume the node can reach or a class that provisions.
    PreBind     (claims_to_select, then check_bindings) the scheduler writes volume.kubernetes.io/selected-node
                on each unbound WaitForFirstConsumer claim, then waits, before binding the pod, until every
                one of them is fully bound (spec.volumeName and pv.kubernetes.io/bind-completed, to a volume
                that admits the node): the PV controller and the provisioner do the binding meanwhile.
                The wait ends in failure, failing the binding cycle, when a claim is deleted, its
                selected-node annotation is reset (how a provisioner asks for the pod to be rescheduled:
                sig-storage-lib-external-provisioner's rescheduleProvisioning) or names another node, its
                volume does not admit the node, or the bind timeout passes (upstream's bindTimeoutSeconds,
                600 s by default; kubesim's is shorter and a Scheduler parameter). The pod then goes back to
                the queue with backoff, its assumed place is forgotten (Unreserve) and a FailedScheduling
                event says why.

Upstream's PreBind also binds static volumes itself; kubesim leaves that to the PV controller (it does so
once the node is selected) and waits for it the same way, so the end state is upstream's: a pod is bound
to its node only once its claims are bound there, and the kubelet never sees it while its claim is still
being provisioned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from control.api.storage import (
    ANN_BIND_COMPLETED,
    ANN_SELECTED_NODE,
    NO_PROVISIONER,
    WAIT_FOR_FIRST_CONSUMER,
    claim_class,
    claim_names,
    matching_volume,
    volume_fits_node,
)
from control.scheduler._plugins import SKIP, FilterPlugin
from control.scheduler._types import Code, JsonObject, NodeInfo, PodInfo, Status

__all__ = ["DEFAULT_BIND_TIMEOUT", "VolumeBinding", "VolumeBindingFailed", "VolumeLister", "check_bindings",
           "claims_to_select"]

#: Seconds PreBind waits for the claims to be bound (upstream's bindTimeoutSeconds is 600; a kubesim claim is
#: provisioned by a local directory in well under a second, so two minutes already means it never will be).
DEFAULT_BIND_TIMEOUT = 120.0

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


class VolumeBindingFailed(Exception):
    """PreBind's wait for the pod's claims ended in failure: the binding cycle fails with this message."""


def _version(obj: JsonObject) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


def check_bindings(namespace: str, names: Sequence[str], node: NodeInfo, lister: VolumeLister,
                   assumed: Mapping[str, JsonObject] | None = None) -> bool:
    """Whether every claim of NAMES (those PreBind selected NODE for) is fully bound, as upstream's
    checkBindings: True when all are, False while some are still being bound or provisioned, and
    VolumeBindingFailed when one of them never will be on this node.

    ASSUMED has the claims as the scheduler's own writes returned them (by name): until the informer
    brings that version or a newer one, the written one counts (upstream's assume cache, which compares
    resourceVersions as integers too)."""
    info = node
    labels = _node_labels(info)
    for name in names:
        claim = lister.claim(namespace, name)
        mine = (assumed or {}).get(name)
        if claim is not None and mine is not None and _version(claim) < _version(mine):
            claim = mine
        if claim is None:
            raise VolumeBindingFailed(f'pvc "{namespace}/{name}" was deleted')
        meta = claim.get("metadata") or {}
        selected = (meta.get("annotations") or {}).get(ANN_SELECTED_NODE)
        volume_name = (claim.get("spec") or {}).get("volumeName")
        if not volume_name:
            # Still being bound or provisioned, unless the provisioner gave up on this node.
            if not selected:
                raise VolumeBindingFailed(f'selectedNode annotation reset for PVC "{name}"')
            if selected != info.name:
                raise VolumeBindingFailed(f'selectedNode annotation value "{selected}" not set to scheduled node '
                                          f'"{info.name}"')
            return False
        if (meta.get("annotations") or {}).get(ANN_BIND_COMPLETED) != "yes":
            return False  # the PV controller has set volumeName but not yet finished the binding
        volume = lister.volume(str(volume_name))
        if volume is None:
            return False  # bound to a volume this scheduler's informer has not seen yet
        if not volume_fits_node(volume, labels):
            raise VolumeBindingFailed(f'pv "{volume_name}" node affinity does not match node "{info.name}": '
                                      "no matching NodeSelectorTerms")
    return True
