"""What upstream's REST strategies do to an object before it is validated and stored, beyond defaulting.

    prepare_for_create(kind, obj)        the status a new object starts with (PrepareForCreate)
    patch_allocated_values(new, old)     an updated Service keeps the IPs and ports allocated for it

Sources: pkg/registry/core/pod/strategy.go (a new pod is Pending with its QoS class, whatever status the
caller sent), pkg/registry/core/service/strategy.go and storage/storage.go (a new Service's status is
empty; an update that leaves clusterIP, clusterIPs, a nodePort or healthCheckNodePort unset keeps what
was allocated, so that re-submitting the YAML a Service was created from succeeds),
pkg/registry/apps/{deployment,replicaset,daemonset,statefulset}/strategy.go,
batch/cronjob/strategy.go and core/replicationcontroller/strategy.go
(controllers' status starts empty). "Empty" is Go's zero value, serialized: the status fields upstream
declares without omitempty (k8s.io/api apps/v1 and core/v1 types.go) appear as 0, and typed clients that
require them (the Python client's V1DaemonSetStatus, V1StatefulSetStatus) fail to read an object without.
"""

from __future__ import annotations

from typing import Any

from control.api.qos import pod_qos_class

__all__ = ["patch_allocated_values", "prepare_for_create"]

# Kinds whose status belongs to their controller: a create never sets it.
_EMPTY_STATUS_ON_CREATE = frozenset({"Deployment", "ReplicaSet", "ReplicationController", "DaemonSet",
                                     "StatefulSet", "CronJob"})
# Their status fields without omitempty: an "empty" status still carries them, as zeros.
_ALWAYS_SERIALIZED = {
    "DaemonSet": ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady"),
    "StatefulSet": ("replicas", "availableReplicas"),
    "ReplicaSet": ("replicas",),
    "ReplicationController": ("replicas",),
}


def prepare_for_create(kind: str, obj: dict[str, Any]) -> None:
    """Reset obj's status as upstream's strategy does on create (in place; after defaulting)."""
    if kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": pod_qos_class(obj)}
    elif kind == "Service":
        obj["status"] = {"loadBalancer": {}}
    elif kind in _EMPTY_STATUS_ON_CREATE:
        obj["status"] = dict.fromkeys(_ALWAYS_SERIALIZED.get(kind, ()), 0)
    elif kind in ("PersistentVolume", "PersistentVolumeClaim"):
        # Phases belong to the PV controller; a new volume or claim waits for it (Pending).
        obj["status"] = {"phase": "Pending"}
    elif kind == "Job":
        obj["status"] = {}
        _generate_job_selector(obj)


# The labels a Job's pods carry so that its generated selector finds them (batch/v1 well-known labels;
# the unprefixed ones are the legacy names, still set).
JOB_NAME_LABELS = ("job-name", "batch.kubernetes.io/job-name")
CONTROLLER_UID_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid")


def _generate_job_selector(job: dict[str, Any]) -> None:
    """generateSelector (pkg/registry/batch/job/strategy.go): unless spec.manualSelector, the template is
    labelled with the Job's name and uid and the selector matches the uid, which no other Job has."""
    spec = job.get("spec")
    if not isinstance(spec, dict) or spec.get("manualSelector") is True:
        return
    template = spec.get("template")
    if not isinstance(template, dict):
        return
    meta = job.get("metadata") or {}
    template_meta = template.setdefault("metadata", {})
    labels = template_meta.get("labels")
    if not isinstance(labels, dict):
        labels = template_meta["labels"] = {}
    for key in JOB_NAME_LABELS:
        labels.setdefault(key, meta.get("name", ""))
    for key in CONTROLLER_UID_LABELS:
        labels.setdefault(key, meta.get("uid", ""))
    selector = spec.get("selector")
    if not isinstance(selector, dict):
        selector = spec["selector"] = {}
    match_labels = selector.get("matchLabels")
    if not isinstance(match_labels, dict):
        match_labels = selector["matchLabels"] = {}
    match_labels.setdefault(CONTROLLER_UID_LABELS[1], meta.get("uid", ""))


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _ports(spec: dict[str, Any]) -> list[dict[str, Any]]:
    ports = spec.get("ports")
    return [p for p in ports if isinstance(p, dict)] if isinstance(ports, list) else []


def _needs_cluster_ip(spec: dict[str, Any]) -> bool:
    return bool(spec.get("type", "ClusterIP") != "ExternalName")


def _needs_node_port(spec: dict[str, Any]) -> bool:
    svc_type = spec.get("type", "ClusterIP")
    return svc_type == "NodePort" or (svc_type == "LoadBalancer"
                                      and spec.get("allocateLoadBalancerNodePorts") is not False)


def _needs_health_check_node_port(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def patch_allocated_values(new: dict[str, Any], old: dict[str, Any]) -> None:
    """Fill what NEW (an update of Service OLD) leaves unset from OLD's allocations, in place: clusterIP and
    clusterIPs while both need one; a port's nodePort from OLD's port of the same name, unless NEW already
    uses that number elsewhere; the health-check node port (upstream's patchAllocatedValues)."""
    spec, old_spec = _spec(new), _spec(old)
    if not isinstance(new.get("spec"), dict):
        return
    if _needs_cluster_ip(old_spec) and _needs_cluster_ip(spec):
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIPs") and old_spec.get("clusterIPs"):
            spec["clusterIPs"] = list(old_spec["clusterIPs"])
    if _needs_node_port(old_spec) and _needs_node_port(spec):
        used_old = {p["nodePort"] for p in _ports(old_spec) if p.get("nodePort")}
        used_new = {p["nodePort"] for p in _ports(spec) if p.get("nodePort")}
        kept = used_old & used_new  # numbers NEW itself names: never patched onto another port
        by_name = {p.get("name") or "": p.get("nodePort") for p in _ports(old_spec)}
        for port in _ports(spec):
            if not port.get("nodePort"):
                candidate = by_name.get(port.get("name") or "")
                if candidate and candidate not in kept:
                    port["nodePort"] = candidate
    if (_needs_health_check_node_port(old_spec) and _needs_health_check_node_port(spec)
            and not spec.get("healthCheckNodePort") and old_spec.get("healthCheckNodePort")):
        spec["healthCheckNodePort"] = old_spec["healthCheckNodePort"]
