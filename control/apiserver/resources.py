"""The resources the apiserver serves, as a data table: one row per resource with
what discovery, routing, storage and kubectl need to know about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Whether status is a subresource: then the main resource ignores status changes and
    # /status ignores everything else (upstream's PrepareForUpdate strategies).
    status_subresource: bool = False
    # Whether spec changes bump metadata.generation (objects with a spec and a controller).
    tracks_generation: bool = False
    # False for the reviews: answered by the apiserver, never stored, so no watch cache.
    stored: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def key_prefix(self, namespace: str | None = None) -> str:
        """Where objects live in the store: /registry/<resource>/[<namespace>/]<name>, as upstream."""
        base = f"/registry/{self.plural}/"
        if self.group not in ("", "apps", "batch", "networking.k8s.io", "storage.k8s.io"):
            base = f"/registry/{self.group}/{self.plural}/"
        return f"{base}{namespace}/" if self.namespaced and namespace else base

    def key(self, namespace: str | None, name: str) -> str:
        return f"{self.key_prefix(namespace if self.namespaced else None)}{name}"

    # Hooks a custom resource (crd/catalog.py) overrides: its watch cache's key in the registry, the object
    # as read from / written to storage (defaults, the served apiVersion), and what bumps its generation.
    @property
    def cache_key(self) -> str:
        return self.plural

    def from_storage(self, obj: dict[str, Any]) -> dict[str, Any]:
        return obj

    def to_storage(self, obj: dict[str, Any]) -> dict[str, Any]:
        return obj

    def generation_changed(self, new: dict[str, Any], old: dict[str, Any]) -> bool:
        return bool(new.get("spec") != old.get("spec"))

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        ns = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{root}{ns}/{self.plural}" + (f"/{name}" if name else "")


RESOURCES: tuple[Resource, ...] = (
    Resource("", "v1", "Namespace", "namespaces", "namespace", False, ("ns",), (), ("status", "finalize"),
             ("create", "delete", "get", "list", "patch", "update", "watch"), status_subresource=True),
    Resource("", "v1", "Node", "nodes", "node", False, ("no",), (), ("status",), status_subresource=True),
    Resource("", "v1", "Pod", "pods", "pod", True, ("po",), ("all",),
             ("status", "binding", "log", "exec", "attach", "portforward", "ephemeralcontainers"),
             status_subresource=True),
    Resource("", "v1", "Service", "services", "service", True, ("svc",), ("all",), ("status",),
             ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
             status_subresource=True),
    Resource("", "v1", "Endpoints", "endpoints", "endpoints", True, ("ep",)),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", True, ("sa",), (), ("token",)),
    Resource("", "v1", "Event", "events", "event", True, ("ev",)),
    Resource("", "v1", "ConfigMap", "configmaps", "configmap", True, ("cm",)),
    Resource("", "v1", "Secret", "secrets", "secret", True),
    Resource("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", False, ("pv",), (), ("status",),
             status_subresource=True),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", True, ("pvc",), (),
             ("status",), status_subresource=True),
    Resource("", "v1", "PodTemplate", "podtemplates", "podtemplate", True),
    Resource("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", True, ("rc",),
             ("all",), ("scale", "status"), status_subresource=True, tracks_generation=True),
    Resource("apps", "v1", "Deployment", "deployments", "deployment", True, ("deploy",), ("all",),
             ("scale", "status"), status_subresource=True, tracks_generation=True),
    Resource("apps", "v1", "ReplicaSet", "replicasets", "replicaset", True, ("rs",), ("all",), ("scale", "status"),
             status_subresource=True, tracks_generation=True),
    Resource("batch", "v1", "Job", "jobs", "job", True, (), ("all",), ("status",), status_subresource=True,
             tracks_generation=True),
    Resource("apps", "v1", "DaemonSet", "daemonsets", "daemonset", True, ("ds",), ("all",), ("status",),
             status_subresource=True, tracks_generation=True),
    Resource("apps", "v1", "StatefulSet", "statefulsets", "statefulset", True, ("sts",), ("all",), ("scale", "status"),
             status_subresource=True, tracks_generation=True),
    Resource("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", True),
    Resource("batch", "v1", "CronJob", "cronjobs", "cronjob", True, ("cj",), ("all",), ("status",),
             status_subresource=True, tracks_generation=True),
    Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", True),
    Resource("coordination.k8s.io", "v1", "Lease", "leases", "lease", True),
    Resource("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", False, ("sc",)),
    Resource("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", True, ("netpol",)),
    # sig-network's network-policy-api CRDs (v0.1.x), served as built-ins: cluster-scoped, with status.
    Resource("policy.networking.k8s.io", "v1alpha1", "AdminNetworkPolicy", "adminnetworkpolicies",
             "adminnetworkpolicy", False, ("anp",), (), ("status",), status_subresource=True, tracks_generation=True),
    Resource("policy.networking.k8s.io", "v1alpha1", "BaselineAdminNetworkPolicy", "baselineadminnetworkpolicies",
             "baselineadminnetworkpolicy", False, ("banp",), (), ("status",), status_subresource=True,
             tracks_generation=True),
    *(Resource("rbac.authorization.k8s.io", "v1", kind, plural, plural[:-1], namespaced)
      for kind, plural, namespaced in (("ClusterRole", "clusterroles", False),
                                       ("ClusterRoleBinding", "clusterrolebindings", False),
                                       ("Role", "roles", True), ("RoleBinding", "rolebindings", True))),
    # CustomResourceDefinitions (crd/): deleting one first deletes its instances, under this finalizer.
    Resource("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
             "customresourcedefinition", False, ("crd", "crds"), ("api-extensions",), ("status",),
             status_subresource=True, tracks_generation=True,
             extra={"deleteFinalizer": "customresourcecleanup.apiextensions.k8s.io"}),
    Resource("apiregistration.k8s.io", "v1", "APIService", "apiservices", "apiservice", False, (),
             ("api-extensions",), ("status",), status_subresource=True, tracks_generation=True),
    # The reviews (reviews.py): create-only, answered from the authenticator and authorizer, never stored.
    *(Resource(group, "v1", kind, plural, plural[:-1], namespaced, verbs=("create",), stored=False)
      for group, kind, plural, namespaced in (
          ("authentication.k8s.io", "TokenReview", "tokenreviews", False),
          ("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", False),
          ("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", True),
          ("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
          ("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False),
          ("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", False))),
    # kubectl 1.27's `auth whoami` asks the beta version (the kind is v1 since 1.28). After the v1 rows, so that
    # discovery prefers v1 and BY_KIND (first row wins) names v1.
    Resource("authentication.k8s.io", "v1beta1", "SelfSubjectReview", "selfsubjectreviews", "selfsubjectreview",
             False, verbs=("create",), stored=False),
)

BY_PATH: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND: dict[str, Resource] = {}
for _r in RESOURCES:
    BY_KIND.setdefault(_r.kind, _r)


def group_versions() -> dict[str, list[str]]:
    """Named groups (not core) and their versions, in discovery order."""
    groups: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group and r.version not in groups.setdefault(r.group, []):
            groups[r.group].append(r.version)
    return groups
