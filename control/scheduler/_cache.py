"""The scheduler's cache: nodes with the pods on them, including pods it has assumed but whose binding
the apiserver has not yet confirmed (upstream's internal/cache/cache.go).

Assuming a pod charges its requests to the chosen node at once, before the bind call returns, so the
next pod in line cannot be placed on a slot that is already promised. The assumption ends when the
informer delivers the bound pod (confirmed: the informer's copy replaces the assumed one, on whatever
node the apiserver says) or when binding fails (forgotten).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from control.scheduler._types import JsonObject, NodeInfo, PodInfo


def _relevant(node: Mapping[str, Any]) -> tuple[Any, ...]:
    """What about a node can change a scheduling decision (upstream's nodeSchedulingPropertiesChange):
    not heartbeats or image lists, which change all the time."""
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    return (meta.get("labels"), spec.get("unschedulable"), spec.get("taints"), status.get("allocatable"),
            sorted((str(c.get("type")), str(c.get("status"))) for c in status.get("conditions") or ()))


class Cache:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeInfo] = {}
        self._pods: dict[str, PodInfo] = {}  # key -> the PodInfo charged to a node
        self._assumed: set[str] = set()
        self._binding_finished: set[str] = set()
        self._node_list: list[NodeInfo] | None = None

    # --- nodes -------------------------------------------------------------------------------------

    def node_list(self) -> list[NodeInfo]:
        """The nodes (with a Node object), in a stable order; rebuilt only when nodes come or go."""
        if self._node_list is None:
            self._node_list = [n for n in self._nodes.values() if n.has_node]
        return self._node_list

    def node(self, name: str) -> NodeInfo | None:
        return self._nodes.get(name)

    def add_node(self, node: JsonObject) -> None:
        name = str((node.get("metadata") or {}).get("name") or "")
        info = self._nodes.get(name)
        if info is None:
            self._nodes[name] = NodeInfo(node)
        else:
            info.set_node(node)
        self._node_list = None

    def update_node(self, old: JsonObject, new: JsonObject) -> bool:
        """Stores NEW; True if the change may make a pending pod schedulable."""
        self.add_node(new)
        return _relevant(old) != _relevant(new)

    def remove_node(self, name: str) -> None:
        info = self._nodes.get(name)
        if info is None:
            return
        if info.pods:
            # Pods still bound there keep a placeholder until they go (upstream does the same).
            info.obj = {}
        else:
            del self._nodes[name]
        self._node_list = None

    # --- pods --------------------------------------------------------------------------------------

    def _charge(self, pod: PodInfo) -> None:
        info = self._nodes.get(pod.node_name)
        if info is None:
            info = self._nodes[pod.node_name] = NodeInfo(name=pod.node_name)
        info.add_pod(pod)
        self._pods[pod.key] = pod

    def _discharge(self, key: str) -> PodInfo | None:
        pod = self._pods.pop(key, None)
        if pod is None:
            return None
        info = self._nodes.get(pod.node_name)
        if info is not None:
            info.remove_pod(key)
            if not info.has_node and not info.pods:
                del self._nodes[pod.node_name]
        return pod

    def is_assumed(self, key: str) -> bool:
        return key in self._assumed

    def assume_pod(self, pod: PodInfo, node_name: str) -> PodInfo:
        """Charges POD to NODE_NAME before the binding is confirmed; returns the assumed PodInfo."""
        assumed = dataclasses.replace(pod, node_name=node_name)
        self._discharge(pod.key)
        self._charge(assumed)
        self._assumed.add(pod.key)
        return assumed

    def finish_binding(self, key: str) -> None:
        if key in self._assumed:
            self._binding_finished.add(key)

    def forget_pod(self, key: str) -> None:
        """Drops an assumption (the binding failed); a confirmed pod is left alone."""
        if key in self._assumed:
            self._assumed.discard(key)
            self._binding_finished.discard(key)
            self._discharge(key)

    def add_pod(self, pod: PodInfo) -> None:
        """A bound pod from the informer: confirms an assumption, or charges a pod bound by others."""
        self._assumed.discard(pod.key)
        self._binding_finished.discard(pod.key)
        self._discharge(pod.key)
        self._charge(pod)

    update_pod = add_pod

    def remove_pod(self, key: str) -> None:
        self._assumed.discard(key)
        self._binding_finished.discard(key)
        self._discharge(key)

    def pod(self, key: str) -> PodInfo | None:
        return self._pods.get(key)

    def __len__(self) -> int:
        return len(self._pods)
