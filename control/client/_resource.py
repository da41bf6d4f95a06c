"""Which resource a request is about, and the URL path Kubernetes gives it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


def _segment(value: str, what: str) -> str:
    # A name with "/" or ".." must never change which path we hit; Kubernetes names can't hold them anyway.
    if not value or value in (".", ".."):
        raise ValueError(f"{what} {value!r} is not a valid path segment: give a Kubernetes object name")
    return quote(value, safe="")


def resource_path(
    group: str,
    version: str,
    resource: str,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The API path: `/api/v1/...` for the core group (""), `/apis/GROUP/VERSION/...` for the others.

    resource_path("", "v1", "pods", "default", "web", "status") -> "/api/v1/namespaces/default/pods/web/status"
    resource_path("apps", "v1", "deployments") -> "/apis/apps/v1/deployments" (all namespaces)
    """
    if subresource and not name:
        raise ValueError(f"subresource {subresource!r} of {resource} needs an object name")
    parts = ["/api", _segment(version, "version")] if not group else [
        "/apis", _segment(group, "group"), _segment(version, "version")]
    if namespace is not None:
        parts += ["namespaces", _segment(namespace, "namespace")]
    parts.append(_segment(resource, "resource"))
    if name is not None:
        parts.append(_segment(name, "name"))
    if subresource:
        parts.append(_segment(subresource, "subresource"))
    return "/".join(parts)


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource type: group ("" for core), version, plural name, whether it lives in namespaces, its kind."""

    group: str
    version: str
    plural: str
    namespaced: bool = True
    kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        if not self.namespaced and namespace is not None:
            raise ValueError(f"{self.plural} are cluster-scoped: drop namespace={namespace!r}")
        if self.namespaced and name is not None and namespace is None:
            raise ValueError(f"{self.plural} live in namespaces: give namespace= for {name!r}")
        return resource_path(self.group, self.version, self.plural, namespace, name, subresource)


NAMESPACES = Resource("", "v1", "namespaces", namespaced=False, kind="Namespace")
NODES = Resource("", "v1", "nodes", namespaced=False, kind="Node")
PODS = Resource("", "v1", "pods", kind="Pod")
SERVICES = Resource("", "v1", "services", kind="Service")
ENDPOINTS = Resource("", "v1", "endpoints", kind="Endpoints")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", kind="ServiceAccount")
EVENTS = Resource("", "v1", "events", kind="Event")
CONFIG_MAPS = Resource("", "v1", "configmaps", kind="ConfigMap")
PERSISTENT_VOLUMES = Resource("", "v1", "persistentvolumes", namespaced=False, kind="PersistentVolume")
PERSISTENT_VOLUME_CLAIMS = Resource("", "v1", "persistentvolumeclaims", kind="PersistentVolumeClaim")
STORAGE_CLASSES = Resource("storage.k8s.io", "v1", "storageclasses", namespaced=False, kind="StorageClass")
SECRETS = Resource("", "v1", "secrets", kind="Secret")
REPLICATION_CONTROLLERS = Resource("", "v1", "replicationcontrollers", kind="ReplicationController")
DEPLOYMENTS = Resource("apps", "v1", "deployments", kind="Deployment")
JOBS = Resource("batch", "v1", "jobs", kind="Job")
CRON_JOBS = Resource("batch", "v1", "cronjobs", kind="CronJob")
DAEMON_SETS = Resource("apps", "v1", "daemonsets", kind="DaemonSet")
STATEFUL_SETS = Resource("apps", "v1", "statefulsets", kind="StatefulSet")
CONTROLLER_REVISIONS = Resource("apps", "v1", "controllerrevisions", kind="ControllerRevision")
REPLICA_SETS = Resource("apps", "v1", "replicasets", kind="ReplicaSet")
ENDPOINT_SLICES = Resource("discovery.k8s.io", "v1", "endpointslices", kind="EndpointSlice")
LEASES = Resource("coordination.k8s.io", "v1", "leases", kind="Lease")
NETWORK_POLICIES = Resource("networking.k8s.io", "v1", "networkpolicies", kind="NetworkPolicy")
ADMIN_NETWORK_POLICIES = Resource("policy.networking.k8s.io", "v1alpha1", "adminnetworkpolicies", namespaced=False,
                                  kind="AdminNetworkPolicy")
BASELINE_ADMIN_NETWORK_POLICIES = Resource("policy.networking.k8s.io", "v1alpha1", "baselineadminnetworkpolicies",
                                           namespaced=False, kind="BaselineAdminNetworkPolicy")
