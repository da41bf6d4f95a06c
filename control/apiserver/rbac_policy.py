"""The default RBAC policy kube-apiserver creates at start when absent, as objects: upstream's bootstrap
ClusterRoles and ClusterRoleBindings (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go and
controller_policy.go) for the identities kubesim runs, plus the roles of the add-ons it runs (CoreDNS,
kube-network-policies) as their install manifests give them.

    cluster_roles()    -> [ClusterRole]           every object carries kubernetes.io/bootstrapping=rbac-defaults
    cluster_bindings() -> [ClusterRoleBinding]

Groups kubesim does not serve (extensions, policy, storage.k8s.io) are kept where upstream names them, so the
tables read like upstream's. admin, edit and view are aggregated roles: their rules come from the
system:aggregate-to-* roles (and any ClusterRole a user labels likewise) through aggregation.py.
"""

from __future__ import annotations

from typing import Any

from control.apiserver.rbac import RBAC_GROUP, PolicyRule

READ = ("get", "list", "watch")
READ_UPDATE = ("get", "list", "watch", "update", "patch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
READ_WRITE = (*READ, *WRITE)
CORE, APPS, COORDINATION, DISCOVERY, BATCH = "", "apps", "coordination.k8s.io", "discovery.k8s.io", "batch"
EXTENSIONS, POLICY, NETWORKING, AUTOSCALING = "extensions", "policy", "networking.k8s.io", "autoscaling"
AUTHN, AUTHZ = "authentication.k8s.io", "authorization.k8s.io"
BOOTSTRAP_LABELS = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AUTOUPDATE_KEY = "rbac.authorization.kubernetes.io/autoupdate"
AUTOUPDATE = {AUTOUPDATE_KEY: "true"}


def rule(groups: tuple[str, ...], resources: tuple[str, ...], verbs: tuple[str, ...],
         names: tuple[str, ...] = ()) -> PolicyRule:
    out: PolicyRule = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


def urls(*paths: str, verbs: tuple[str, ...] = ("get",)) -> PolicyRule:
    return {"verbs": list(verbs), "nonResourceURLs": list(paths)}


def events_rule() -> PolicyRule:
    return rule((CORE, "events.k8s.io"), ("events",), ("create", "update", "patch"))


ACCESS_REVIEWS = (rule((AUTHN,), ("tokenreviews",), ("create",)),
                  rule((AUTHZ,), ("subjectaccessreviews",), ("create",)))

AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"

_VIEW = (
    rule((CORE,), ("pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                   "services/status", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status",
                   "configmaps"), READ),
    rule((CORE,), ("limitranges", "resourcequotas", "bindings", "events", "pods/status", "resourcequotas/status",
                   "namespaces/status", "replicationcontrollers/status", "pods/log"), READ),
    # read access to namespaces at the namespace scope means you can read *this* namespace
    rule((CORE,), ("namespaces",), READ),
    rule((DISCOVERY,), ("endpointslices",), READ),
    rule((APPS,), ("controllerrevisions", "statefulsets", "statefulsets/status", "statefulsets/scale", "daemonsets",
                   "daemonsets/status", "deployments", "deployments/status", "deployments/scale", "replicasets",
                   "replicasets/status", "replicasets/scale"), READ),
    rule((AUTOSCALING,), ("horizontalpodautoscalers", "horizontalpodautoscalers/status"), READ),
    rule((BATCH,), ("jobs", "cronjobs", "cronjobs/status", "jobs/status"), READ),
    rule((EXTENSIONS,), ("daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status",
                         "ingresses", "ingresses/status", "replicasets", "replicasets/scale", "replicasets/status",
                         "replicationcontrollers/scale", "networkpolicies"), READ),
    rule((POLICY,), ("poddisruptionbudgets", "poddisruptionbudgets/status"), READ),
    rule((NETWORKING,), ("networkpolicies", "ingresses", "ingresses/status"), READ),
)

_EDIT = (
    rule((CORE,), ("pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy"), READ),
    rule((CORE,), ("serviceaccounts",), ("impersonate",)),
    rule((CORE,), ("pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward"), WRITE),
    rule((CORE,), ("pods/eviction",), ("create",)),
    rule((CORE,), ("replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                   "services/proxy", "persistentvolumeclaims", "configmaps", "secrets"), WRITE),
    rule((CORE,), ("serviceaccounts/token",), ("create",)),
    rule((APPS,), ("statefulsets", "statefulsets/scale", "daemonsets", "deployments", "deployments/scale",
                   "deployments/rollback", "replicasets", "replicasets/scale"), WRITE),
    rule((AUTOSCALING,), ("horizontalpodautoscalers",), WRITE),
    rule((BATCH,), ("jobs", "cronjobs"), WRITE),
    rule((EXTENSIONS,), ("daemonsets", "deployments", "deployments/scale", "deployments/rollback", "ingresses",
                         "replicasets", "replicasets/scale", "replicationcontrollers/scale", "networkpolicies"), WRITE),
    rule((POLICY,), ("poddisruptionbudgets",), WRITE),
    rule((NETWORKING,), ("networkpolicies", "ingresses"), WRITE),
)

_ADMIN = (
    rule((AUTHZ,), ("localsubjectaccessreviews",), ("create",)),
    rule((RBAC_GROUP,), ("roles", "rolebindings"), READ_WRITE),
)

# system:node: what RBAC would give a kubelet. Bound to no one (since 1.8 nodes are authorized by the Node
# authorizer alone), kept because upstream keeps it for clusters that bind it.
_NODE = (
    *ACCESS_REVIEWS[:1], rule((AUTHZ,), ("subjectaccessreviews", "localsubjectaccessreviews"), ("create",)),
    rule((CORE,), ("services",), READ),
    rule((CORE,), ("nodes",), ("create", "get", "list", "watch", "patch", "update")),
    rule((CORE,), ("nodes/status",), ("patch", "update")),
    events_rule(),
    rule((CORE,), ("pods",), READ),
    rule((CORE,), ("pods",), ("create", "delete")),
    rule((CORE,), ("pods/status",), ("update", "patch")),
    rule((CORE,), ("pods/eviction",), ("create",)),
    rule((CORE,), ("secrets", "configmaps"), READ),
    rule((CORE,), ("persistentvolumeclaims", "persistentvolumes"), ("get",)),
    rule((CORE,), ("endpoints",), ("get",)),
    rule(("certificates.k8s.io",), ("certificatesigningrequests",), ("create", "get", "list", "watch")),
    rule((COORDINATION,), ("leases",), ("get", "create", "update", "patch", "delete")),
    rule((CORE,), ("serviceaccounts/token",), ("create",)),
)

# name -> rules (None: an aggregated role), the labels it carries beyond the bootstrap label
_ROLES: dict[str, tuple[tuple[PolicyRule, ...], dict[str, str]]] = {
    "cluster-admin": ((rule(("*",), ("*",), ("*",)), urls("*", verbs=("*",))), {}),
    "system:discovery": ((urls("/livez", "/readyz", "/healthz", "/version", "/version/", "/openapi", "/openapi/*",
                               "/api", "/api/*", "/apis", "/apis/*"),), {}),
    "system:public-info-viewer": ((urls("/livez", "/readyz", "/healthz", "/version", "/version/"),), {}),
    "system:basic-user": ((rule((AUTHZ,), ("selfsubjectaccessreviews", "selfsubjectrulesreviews"), ("create",)),
                           rule((AUTHN,), ("selfsubjectreviews",), ("create",))), {}),
    "system:aggregate-to-admin": (_ADMIN, {f"{AGGREGATE_TO}admin": "true"}),
    "system:aggregate-to-edit": (_EDIT, {f"{AGGREGATE_TO}edit": "true"}),
    "system:aggregate-to-view": (_VIEW, {f"{AGGREGATE_TO}view": "true"}),
    # metrics-server's own manifest adds it: view, edit and admin may read metrics.k8s.io (kubectl top)
    "system:aggregated-metrics-reader": ((rule(("metrics.k8s.io",), ("pods", "nodes"), READ),), {
        f"{AGGREGATE_TO}view": "true", f"{AGGREGATE_TO}edit": "true", f"{AGGREGATE_TO}admin": "true"}),
    "system:auth-delegator": (ACCESS_REVIEWS, {}),
    "system:node": (_NODE, {}),
    "system:node-proxier": ((
        rule((CORE,), ("services", "endpoints"), ("list", "watch")),
        rule((CORE,), ("nodes",), READ),
        events_rule(),
        rule((DISCOVERY,), ("endpointslices",), ("list", "watch")),
    ), {}),
    "system:kube-scheduler": ((
        events_rule(),
        # leader election
        rule((COORDINATION,), ("leases",), ("create",)),
        rule((COORDINATION,), ("leases",), ("get", "update"), ("kube-scheduler",)),
        rule((CORE,), ("endpoints",), ("create",)),
        rule((CORE,), ("endpoints",), ("get", "update"), ("kube-scheduler",)),
        # fundamental resources
        rule((CORE,), ("nodes",), READ),
        rule((CORE,), ("pods",), ("get", "list", "watch", "delete")),
        rule((CORE,), ("pods/binding", "bindings"), ("create",)),
        rule((CORE,), ("pods/status",), ("patch", "update")),
        # things that select pods
        rule((CORE,), ("services", "replicationcontrollers"), READ),
        rule((APPS, EXTENSIONS), ("replicasets",), READ),
        rule((APPS,), ("statefulsets",), READ),
        # things that pods use or that apply to them
        rule((POLICY,), ("poddisruptionbudgets",), READ),
        rule((CORE,), ("persistentvolumeclaims", "persistentvolumes"), READ),
        *ACCESS_REVIEWS,
        rule(("storage.k8s.io",), ("csinodes", "csidrivers", "csistoragecapacities"), READ),
        rule((CORE,), ("namespaces",), READ),  # pod affinity's namespaceSelector
    ), {}),
    "system:volume-scheduler": ((
        rule((CORE,), ("persistentvolumes", "persistentvolumeclaims"), READ_UPDATE),
        rule(("storage.k8s.io",), ("storageclasses",), READ),
    ), {}),
    # The controller-manager's own role: shared informers, leader election, service account set-up. Each
    # controller's powers are in its system:controller:* role below.
    "system:kube-controller-manager": ((
        events_rule(),
        rule((COORDINATION,), ("leases",), ("create",)),
        rule((COORDINATION,), ("leases",), ("get", "update"), ("kube-controller-manager",)),
        rule((CORE,), ("endpoints",), ("create",)),
        rule((CORE,), ("endpoints",), ("get", "update"), ("kube-controller-manager",)),
        rule((CORE,), ("secrets", "serviceaccounts"), ("create",)),
        rule((CORE,), ("secrets",), ("delete",)),
        rule((CORE,), ("namespaces", "secrets", "serviceaccounts", "configmaps"), ("get",)),
        rule((CORE,), ("secrets", "serviceaccounts"), ("update",)),
        *ACCESS_REVIEWS,
        rule(("*",), ("*",), ("list", "watch")),
        rule((CORE,), ("serviceaccounts/token",), ("create",)),
    ), {}),
    "system:controller:deployment-controller": ((
        rule((EXTENSIONS, APPS), ("deployments",), ("get", "list", "watch", "update")),
        rule((EXTENSIONS, APPS), ("deployments/status", "deployments/finalizers"), ("update",)),
        rule((APPS, EXTENSIONS), ("replicasets",), ("get", "list", "watch", "create", "update", "patch", "delete")),
        rule((CORE,), ("pods",), ("get", "list", "watch", "update")),
        events_rule(),
    ), {}),
    "system:controller:replicaset-controller": ((
        rule((APPS, EXTENSIONS), ("replicasets",), ("get", "list", "watch", "update")),
        rule((APPS, EXTENSIONS), ("replicasets/status", "replicasets/finalizers"), ("update",)),
        rule((CORE,), ("pods",), ("list", "watch", "patch", "create", "delete")),
        events_rule(),
    ), {}),
    "system:controller:replication-controller": ((
        rule((CORE,), ("replicationcontrollers",), ("get", "list", "watch", "update")),
        rule((CORE,), ("replicationcontrollers/status", "replicationcontrollers/finalizers"), ("update",)),
        rule((CORE,), ("pods",), ("list", "watch", "patch", "create", "delete")),
        events_rule(),
    ), {}),
    "system:controller:job-controller": ((
        rule((BATCH,), ("jobs",), ("get", "list", "watch", "update", "patch")),
        rule((BATCH,), ("jobs/status", "jobs/finalizers"), ("update", "patch")),
        rule((CORE,), ("pods",), ("list", "watch", "create", "delete", "patch")),
        events_rule(),
    ), {}),
    "system:controller:daemon-set-controller": ((
        rule((EXTENSIONS, APPS), ("daemonsets",), READ),
        rule((EXTENSIONS, APPS), ("daemonsets/status", "daemonsets/finalizers"), ("update",)),
        rule((CORE,), ("nodes",), ("list", "watch")),
        rule((CORE,), ("pods",), ("list", "watch", "create", "delete", "patch")),
        # Upstream's role still grants pods/binding (from before 1.12, when the controller placed daemon pods
        # itself). Daemon pods are pinned by node affinity and bound by the scheduler, and kubesim's
        # controllers share one credential: binding would let every controller place pods.
        rule((APPS,), ("controllerrevisions",), ("get", "list", "watch", "create", "delete", "update", "patch")),
        events_rule(),
    ), {}),
    "system:controller:statefulset-controller": ((
        rule((CORE,), ("pods",), ("list", "watch")),
        rule((APPS,), ("statefulsets",), READ),
        rule((APPS,), ("statefulsets/status", "statefulsets/finalizers"), ("update",)),
        rule((CORE,), ("pods",), ("get", "create", "delete", "update", "patch")),
        rule((APPS,), ("controllerrevisions",), ("get", "create", "delete", "update", "patch", "list", "watch")),
        rule((CORE,), ("persistentvolumeclaims",), ("get", "create", "update", "delete")),
        events_rule(),
    ), {}),
    "system:controller:cronjob-controller": ((
        rule((BATCH,), ("cronjobs",), ("get", "list", "watch", "update")),
        rule((BATCH,), ("jobs",), ("get", "list", "watch", "create", "update", "delete", "patch")),
        rule((BATCH,), ("cronjobs/status", "cronjobs/finalizers"), ("update",)),
        rule((CORE,), ("pods",), ("list", "delete")),
        events_rule(),
    ), {}),
    "system:controller:ttl-after-finished-controller": ((
        rule((BATCH,), ("jobs",), ("get", "list", "watch", "delete")),
        events_rule(),
    ), {}),
    "system:controller:endpoint-controller": ((
        rule((CORE,), ("services", "pods"), READ),
        rule((CORE,), ("endpoints",), ("get", "list", "create", "update", "delete")),
        rule((CORE,), ("endpoints/restricted",), ("create",)),
        events_rule(),
    ), {}),
    "system:controller:endpointslice-controller": ((
        rule((CORE,), ("services", "pods", "nodes"), READ),
        rule((CORE,), ("services/finalizers",), ("update",)),
        rule((DISCOVERY,), ("endpointslices",), ("get", "list", "create", "update", "delete")),
        events_rule(),
    ), {}),
    "system:controller:namespace-controller": ((
        rule((CORE,), ("namespaces",), ("get", "list", "watch", "delete")),
        rule((CORE,), ("namespaces/finalize", "namespaces/status"), ("update",)),
        rule(("*",), ("*",), ("get", "list", "delete", "deletecollection")),
    ), {}),
    "system:controller:root-ca-cert-publisher": ((
        rule((CORE,), ("configmaps",), ("create", "update")),
        events_rule(),
    ), {}),
    "system:controller:service-account-controller": ((
        rule((CORE,), ("serviceaccounts",), ("create",)),
        events_rule(),
    ), {}),
    # node lifecycle and node IPAM both run as the node-controller upstream.
    "system:controller:node-controller": ((
        rule((CORE,), ("nodes",), ("get", "list", "update", "delete", "patch")),
        rule((CORE,), ("nodes/status",), ("patch", "update")),
        rule((CORE,), ("pods/status",), ("patch", "update")),
        rule((CORE,), ("pods",), ("list", "get", "delete")),
        events_rule(),
    ), {}),
    # kubesim's load-balancer IP controller does the service controller's part: services' status.
    "system:controller:service-controller": ((
        rule((CORE,), ("services",), READ),
        rule((CORE,), ("services/status",), ("patch", "update")),
        rule((CORE,), ("nodes",), ("list", "watch")),
        events_rule(),
    ), {}),
    "system:controller:generic-garbage-collector": ((
        rule(("*",), ("*",), ("get", "list", "watch", "patch", "update", "delete")),
        events_rule(),
    ), {}),
    # CoreDNS's own ClusterRole as its deployment manifests give it (kind's and kubeadm's system:coredns):
    # read-only, what the kubernetes plugin's informers need.
    "system:coredns": ((
        rule((CORE,), ("endpoints", "services", "pods", "namespaces"), ("list", "watch")),
        rule((DISCOVERY,), ("endpointslices",), ("list", "watch")),
    ), {}),
    # kube-network-policies' own ClusterRole (install manifest): what a per-node policy agent reads.
    "kube-network-policies": ((
        rule((CORE,), ("pods", "namespaces", "nodes"), ("list", "watch")),
        rule((NETWORKING,), ("networkpolicies",), ("list", "watch")),
        rule(("policy.networking.k8s.io",), ("adminnetworkpolicies", "baselineadminnetworkpolicies"),
             ("list", "watch")),
    ), {}),
}

# endpoints are left out of edit's writes, as upstream has since 1.22 (CVE-2021-25740).

# The aggregated roles: name -> (the label its selector matches, the labels it carries). edit aggregates into
# admin and view into edit, as upstream labels them.
AGGREGATED: dict[str, tuple[str, dict[str, str]]] = {
    "admin": ("admin", {}),
    "edit": ("edit", {f"{AGGREGATE_TO}admin": "true"}),
    "view": ("view", {f"{AGGREGATE_TO}edit": "true"}),
}

# The controllers kubesim's controller-manager runs (control/controllers). Upstream gives each its own
# ServiceAccount in kube-system and binds its role to it; kubesim runs them all with the controller-manager's
# one credential, so each binding also names that user (the one addition to upstream's subjects).
KUBESIM_CONTROLLERS = ("deployment-controller", "replicaset-controller", "replication-controller",
                       "endpoint-controller", "endpointslice-controller", "namespace-controller",
                       "service-account-controller", "root-ca-cert-publisher", "node-controller",
                       "service-controller",
                       "generic-garbage-collector", "job-controller", "ttl-after-finished-controller",
                       "daemon-set-controller", "statefulset-controller", "cronjob-controller")
CONTROLLER_MANAGER = "system:kube-controller-manager"


def _user(name: str) -> dict[str, str]:
    return {"kind": "User", "apiGroup": RBAC_GROUP, "name": name}


def _group(name: str) -> dict[str, str]:
    return {"kind": "Group", "apiGroup": RBAC_GROUP, "name": name}


def _service_account(namespace: str, name: str) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


# binding name (= its ClusterRole's name) -> subjects
_BINDINGS: dict[str, list[dict[str, str]]] = {
    "cluster-admin": [_group("system:masters")],
    "system:discovery": [_group("system:authenticated")],
    "system:basic-user": [_group("system:authenticated")],
    "system:public-info-viewer": [_group("system:authenticated"), _group("system:unauthenticated")],
    "system:node": [],
    "system:node-proxier": [_user("system:kube-proxy")],
    "system:kube-controller-manager": [_user(CONTROLLER_MANAGER)],
    "system:kube-scheduler": [_user("system:kube-scheduler")],
    "system:volume-scheduler": [_user("system:kube-scheduler")],
    **{f"system:controller:{c}": [_service_account("kube-system", c), _user(CONTROLLER_MANAGER)]
       for c in KUBESIM_CONTROLLERS},
    # kubeadm binds system:coredns to the coredns ServiceAccount in kube-system.
    "system:coredns": [_service_account("kube-system", "coredns")],
    "kube-network-policies": [_service_account("kube-system", "kube-network-policies")],
}


def _meta(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "labels": {**BOOTSTRAP_LABELS, **labels}, "annotations": dict(AUTOUPDATE)}


def cluster_roles() -> list[dict[str, Any]]:
    roles = [{"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": _meta(name, labels),
              "rules": [dict(r) for r in rules]} for name, (rules, labels) in _ROLES.items()]
    roles += [{"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRole", "metadata": _meta(name, labels),
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {f"{AGGREGATE_TO}{target}": "true"}}]},
               "rules": []} for name, (target, labels) in AGGREGATED.items()]
    return roles


def cluster_bindings() -> list[dict[str, Any]]:
    return [{"apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(name, {}),
             "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": name},
             "subjects": [dict(s) for s in subjects]} for name, subjects in _BINDINGS.items()]


__all__ = ["AGGREGATED", "KUBESIM_CONTROLLERS", "cluster_bindings", "cluster_roles", "rule", "urls"]
