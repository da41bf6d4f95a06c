"""Defaulting of the built-in kinds, in place, as kube-apiserver does it before validation.

    default("Pod", pod)   # restartPolicy Always, dnsPolicy ClusterFirst, container imagePullPolicy, ...

Sources: pkg/apis/core/v1/defaults.go (pods, containers, probes, services, endpoints, replication
controllers), pkg/apis/apps/v1/defaults.go (deployments, replica sets,
daemon sets, stateful sets), pkg/apis/batch/v1/defaults.go (jobs, cron jobs), pkg/apis/discovery/v1/defaults.go
(endpoint slice ports), pkg/apis/networking/v1/defaults.go (network policy ports and policyTypes), plus
what upstream's admission and REST layers fill in on create: the ServiceAccount admission plugin's
`serviceAccountName: default` on pods, and the service REST's single-stack IP family fields.
Only missing fields are filled; nothing set by the caller changes.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from control.api.quantity import QuantityError, parse_quantity

__all__ = ["DEFAULTERS", "default", "image_pull_policy"]

DEFAULT_CLIENT_IP_TIMEOUT = 10800  # 3 hours (core.DefaultClientIPServiceAffinitySeconds)


def _dict(parent: dict[str, Any], key: str) -> dict[str, Any]:
    """parent[key] as a dict, created if missing; a non-dict value is left alone (validation reports it)."""
    value = parent.get(key)
    if value is None:
        value = parent[key] = {}
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _is_quantity(value: Any) -> bool:
    try:
        parse_quantity(value)
    except QuantityError:
        return False
    return True


def image_pull_policy(image: str) -> str:
    """Always for `:latest` or no tag (and no digest), else IfNotPresent (SetDefaults_Container via
    parsers.ParseImageName, which supplies the tag "latest" when an image has neither tag nor digest)."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2] if ":" in last else ""
    if not tag and not digest:
        tag = "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    for key in ("timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        if probe[key] == 0:  # upstream's zero value means "not set"
            probe[key] = {"timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}[key]
    _http_get(probe.get("httpGet"))


def _http_get(action: Any) -> None:
    if isinstance(action, dict):
        if not action.get("path"):
            action["path"] = "/"
        if not action.get("scheme"):
            action["scheme"] = "HTTP"


def _container(container: dict[str, Any], host_network: bool) -> None:
    if not container.get("terminationMessagePath"):
        container["terminationMessagePath"] = "/dev/termination-log"
    if not container.get("terminationMessagePolicy"):
        container["terminationMessagePolicy"] = "File"
    if not container.get("imagePullPolicy"):
        # Upstream ignores a parse error here (an empty image): no tag, so IfNotPresent.
        image = container.get("image")
        container["imagePullPolicy"] = image_pull_policy(image) if isinstance(image, str) and image else "IfNotPresent"
    for port in _items(container.get("ports")):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if host_network and not port.get("hostPort") and port.get("containerPort"):
            port["hostPort"] = port["containerPort"]
    for var in _items(container.get("env")):
        field_ref = (var.get("valueFrom") or {}).get("fieldRef") if isinstance(var.get("valueFrom"), dict) else None
        if isinstance(field_ref, dict) and not field_ref.get("apiVersion"):
            field_ref["apiVersion"] = "v1"
    resources = container.get("resources")
    if resources is None:
        container["resources"] = {}
    elif isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
        # Limits without requests: the requests default to the limits (SetDefaults_Pod).
        requests = _dict(resources, "requests")
        for name, limit in resources["limits"].items():
            if _is_quantity(limit):  # a bad limit is reported once, by validation
                requests.setdefault(name, limit)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(container.get(probe))
    lifecycle = container.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            if isinstance(lifecycle.get(hook), dict):
                _http_get(lifecycle[hook].get("httpGet"))


def _volume(volume: dict[str, Any]) -> None:
    sources = [k for k in volume if k != "name"]
    if not sources:
        volume["emptyDir"] = {}  # SetDefaults_Volume
    for source in ("secret", "configMap", "downwardAPI", "projected"):
        if isinstance(volume.get(source), dict):
            volume[source].setdefault("defaultMode", 0o644)


def pod_spec(spec: dict[str, Any]) -> None:
    """SetDefaults_PodSpec and what it reaches (containers, ports, probes, volumes)."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = 30
    if not spec.get("schedulerName"):
        spec["schedulerName"] = "default-scheduler"
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    host_network = spec.get("hostNetwork") is True
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in _items(spec.get(group)):
            _container(container, host_network)
    for volume in _items(spec.get("volumes")):
        _volume(volume)


def _template(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        pod_spec(_dict(template, "spec"))


def pod(obj: dict[str, Any]) -> None:
    spec = _dict(obj, "spec")
    pod_spec(spec)
    # The ServiceAccount admission plugin (plugin/pkg/admission/serviceaccount) names the default account;
    # the v1 conversion mirrors it into the deprecated serviceAccount field.
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    if not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]


def service(obj: dict[str, Any]) -> None:
    spec = _dict(obj, "spec")
    if not spec.get("sessionAffinity"):
        spec["sessionAffinity"] = "None"
    if not spec.get("type"):
        spec["type"] = "ClusterIP"
    svc_type = spec["type"]
    for port in _items(spec.get("ports")):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
        if port.get("targetPort") in (None, 0, "") and port.get("port") is not None:
            port["targetPort"] = port["port"]
    externally_accessible = svc_type in ("NodePort", "LoadBalancer") or (svc_type == "ClusterIP" and
                                                                         bool(spec.get("externalIPs")))
    if externally_accessible and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if svc_type != "ExternalName" and not spec.get("internalTrafficPolicy"):
        spec["internalTrafficPolicy"] = "Cluster"
    if svc_type == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True
    if spec["sessionAffinity"] == "ClientIP":
        client_ip = _dict(_dict(spec, "sessionAffinityConfig"), "clientIP")
        if client_ip.get("timeoutSeconds") is None:
            client_ip["timeoutSeconds"] = DEFAULT_CLIENT_IP_TIMEOUT
    if svc_type != "ExternalName":
        # A single-stack IPv4 cluster: the service REST layer's choice (pkg/registry/core/service/storage).
        if not spec.get("ipFamilyPolicy"):
            spec["ipFamilyPolicy"] = "SingleStack"
        if not spec.get("ipFamilies"):
            spec["ipFamilies"] = ["IPv4"]


def deployment(obj: dict[str, Any]) -> None:
    spec = _dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    strategy = _dict(spec, "strategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = "25%"
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = "25%"
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    if spec.get("progressDeadlineSeconds") is None:
        spec["progressDeadlineSeconds"] = 600
    _template(spec)


def replica_set(obj: dict[str, Any]) -> None:
    spec = _dict(obj, "spec")
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _template(spec)


def daemon_set(obj: dict[str, Any]) -> None:
    """SetDefaults_DaemonSet: RollingUpdate one node at a time (maxUnavailable 1, maxSurge 0), 10 revisions."""
    spec = _dict(obj, "spec")
    strategy = _dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        if rolling.get("maxUnavailable") is None:
            rolling["maxUnavailable"] = 1
        if rolling.get("maxSurge") is None:
            rolling["maxSurge"] = 0
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _template(spec)


def stateful_set(obj: dict[str, Any]) -> None:
    """SetDefaults_StatefulSet: OrderedReady, RollingUpdate from partition 0, one replica, 10 revisions, and
    PVCs retained on deletion and scale-down."""
    spec = _dict(obj, "spec")
    if not spec.get("podManagementPolicy"):
        spec["podManagementPolicy"] = "OrderedReady"
    strategy = _dict(spec, "updateStrategy")
    if not strategy.get("type"):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        rolling = _dict(strategy, "rollingUpdate")
        if rolling.get("partition") is None:
            rolling["partition"] = 0
    policy = _dict(spec, "persistentVolumeClaimRetentionPolicy")
    for when in ("whenDeleted", "whenScaled"):
        if not policy.get(when):
            policy[when] = "Retain"
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    if spec.get("revisionHistoryLimit") is None:
        spec["revisionHistoryLimit"] = 10
    _template(spec)


def cron_job(obj: dict[str, Any]) -> None:
    """SetDefaults_CronJob: Allow, not suspended, keep 3 successful Jobs and 1 failed; the Job template's pod
    spec is defaulted as a pod's (the JobSpec itself is defaulted only when a Job is made from it)."""
    spec = _dict(obj, "spec")
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    job_template = spec.get("jobTemplate")
    if isinstance(job_template, dict):
        _template(_dict(job_template, "spec"))


def replication_controller(obj: dict[str, Any]) -> None:
    """SetDefaults_ReplicationController: the selector and labels default to the template's labels."""
    spec = _dict(obj, "spec")
    template = spec.get("template")
    metadata = template.get("metadata") if isinstance(template, dict) else None
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    if isinstance(labels, dict) and labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        meta = _dict(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(labels)
    if spec.get("replicas") is None:
        spec["replicas"] = 1
    _template(spec)


def pod_template(obj: dict[str, Any]) -> None:
    """A PodTemplate's pod spec is defaulted as a pod's would be (SetDefaults_PodSpec through its template)."""
    _template(obj)


def endpoint_slice(obj: dict[str, Any]) -> None:
    for port in _items(obj.get("ports")):
        if port.get("name") is None:
            port["name"] = ""
        if not port.get("protocol"):
            port["protocol"] = "TCP"


def endpoints(obj: dict[str, Any]) -> None:
    for subset in _items(obj.get("subsets")):
        for port in _items(subset.get("ports")):
            if not port.get("protocol"):
                port["protocol"] = "TCP"


def node(obj: dict[str, Any]) -> None:
    status = obj.get("status")
    if isinstance(status, dict) and isinstance(status.get("capacity"), dict) and status.get("allocatable") is None:
        status["allocatable"] = dict(status["capacity"])  # SetDefaults_NodeStatus


def network_policy(obj: dict[str, Any]) -> None:
    spec = _dict(obj, "spec")
    for rule in (*_items(spec.get("ingress")), *_items(spec.get("egress"))):
        for port in _items(rule.get("ports")):
            if port.get("protocol") is None:
                port["protocol"] = "TCP"
    # An unset policyTypes is inferred: every policy isolates ingress; it isolates egress only if it has
    # egress rules (SetDefaults_NetworkPolicy), so a policy written before egress existed keeps its meaning.
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if _items(spec.get("egress")) else ["Ingress"]


def admin_network_policy(obj: dict[str, Any]) -> None:
    """The CRDs' `default: TCP` on portNumber.protocol and portRange.protocol (network-policy-api v1alpha1)."""
    spec = _dict(obj, "spec")
    for rule in (*_items(spec.get("ingress")), *_items(spec.get("egress"))):
        for port in _items(rule.get("ports")):
            for kind in ("portNumber", "portRange"):
                if isinstance(port.get(kind), dict) and port[kind].get("protocol") is None:
                    port[kind]["protocol"] = "TCP"


def job(obj: dict[str, Any]) -> None:
    """SetDefaults_Job (pkg/apis/batch/v1/defaults.go): both completions and parallelism 1 when neither is
    set, else parallelism 1; backoffLimit 6; NonIndexed; not suspended; the Job's labels from its template."""
    spec = _dict(obj, "spec")
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2**31 - 1 if spec.get("backoffLimitPerIndex") is not None else 6
    if not spec.get("completionMode"):
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if not spec.get("podReplacementPolicy") and spec.get("podFailurePolicy") is None:
        spec["podReplacementPolicy"] = "TerminatingOrFailed"
    template = spec.get("template")
    labels = (template.get("metadata") or {}).get("labels") if isinstance(template, dict) else None
    meta = _dict(obj, "metadata")
    if isinstance(labels, dict) and labels and not meta.get("labels"):
        meta["labels"] = dict(labels)
    _template(spec)


def secret(obj: dict[str, Any]) -> None:
    """SetDefaults_Secret (type Opaque), and the v1 conversion's merge of the write-only stringData into
    data: each key's text, base64 as data holds it, wins over the same key in data; stringData is never
    stored (upstream's internal type has no such field)."""
    if not obj.get("type"):
        obj["type"] = "Opaque"
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = _dict(obj, "data")
        for key, value in string_data.items():
            if isinstance(value, str):
                data[key] = base64.b64encode(value.encode()).decode()


def default_binding(obj: dict[str, Any]) -> None:
    """SetDefaults_Subject and SetDefaults_RoleRef (pkg/apis/rbac/v1/defaults.go): User and Group subjects and
    the roleRef are in the RBAC group unless they say otherwise; ServiceAccounts are in the core group."""
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = "rbac.authorization.k8s.io"
    for subject in obj.get("subjects") or []:
        if isinstance(subject, dict) and not subject.get("apiGroup") and subject.get("kind") in ("User", "Group"):
            subject["apiGroup"] = "rbac.authorization.k8s.io"


def persistent_volume(obj: dict[str, Any]) -> None:
    """SetDefaults_PersistentVolume: Pending, reclaim Retain, Filesystem; a hostPath's type is "" (unset)."""
    spec = _dict(obj, "spec")
    if not spec.get("persistentVolumeReclaimPolicy"):
        spec["persistentVolumeReclaimPolicy"] = "Retain"
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    if isinstance(spec.get("hostPath"), dict) and spec["hostPath"].get("type") is None:
        spec["hostPath"]["type"] = ""
    status = _dict(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"


def persistent_volume_claim(obj: dict[str, Any]) -> None:
    """SetDefaults_PersistentVolumeClaim(Spec): Filesystem, and a claim's status starts Pending."""
    spec = _dict(obj, "spec")
    if spec.get("volumeMode") is None:
        spec["volumeMode"] = "Filesystem"
    status = _dict(obj, "status")
    if not status.get("phase"):
        status["phase"] = "Pending"


def storage_class(obj: dict[str, Any]) -> None:
    """SetDefaults_StorageClass: reclaim Delete, bind Immediate."""
    if not obj.get("reclaimPolicy"):
        obj["reclaimPolicy"] = "Delete"
    if not obj.get("volumeBindingMode"):
        obj["volumeBindingMode"] = "Immediate"


DEFAULTERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "PersistentVolume": persistent_volume,
    "PersistentVolumeClaim": persistent_volume_claim,
    "StorageClass": storage_class,
    "Pod": pod,
    "Service": service,
    "Deployment": deployment,
    "ReplicaSet": replica_set,
    "ReplicationController": replication_controller,
    "PodTemplate": pod_template,
    "EndpointSlice": endpoint_slice,
    "Endpoints": endpoints,
    "Node": node,
    "NetworkPolicy": network_policy,
    "AdminNetworkPolicy": admin_network_policy,
    "BaselineAdminNetworkPolicy": admin_network_policy,
    "Secret": secret,
    "Job": job,
    "DaemonSet": daemon_set,
    "StatefulSet": stateful_set,
    "CronJob": cron_job,
    "RoleBinding": default_binding,
    "ClusterRoleBinding": default_binding,
}


def default(kind: str, obj: dict[str, Any]) -> None:
    """Fill in obj's defaults in place (kinds without defaults are left as they are)."""
    defaulter = DEFAULTERS.get(kind)
    if defaulter is not None and isinstance(obj, dict):
        defaulter(obj)
