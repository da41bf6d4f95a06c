"""Authentication (static bearer tokens) and authorization: upstream's Node authorizer for kubelets, then
RBAC with the default ClusterRoles and ClusterRoleBindings of the identities kubesim runs.

The token file has kube-apiserver's --token-auth-file format: `token,user,uid,"group1,group2"`.
Tokens are compared in constant time and never logged.

    authorize(attributes) -> Decision(allowed, reason)
        a node's identity (system:node:<name> in system:nodes): NodeAuthorizer, which also needs the
        NodeRestriction admission (noderestriction.py) for what depends on the object's content
        anyone else: RBAC over CLUSTER_ROLES through USER_BINDINGS / GROUP_BINDINGS
"""

from __future__ import annotations

import csv
import hmac
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from control.apiserver.errors import APIError
from control.apiserver.nodegraph import NodeGraph
from control.apiserver.selectors import FieldRequirement, parse_field_selector


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def node_name(self) -> str | None:
        """The node a kubelet credential belongs to (system:node:<name> in group system:nodes)."""
        if "system:nodes" in self.groups and self.name.startswith("system:node:"):
            return self.name[len("system:node:"):] or None
        return None


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


class TokenAuthenticator:
    def __init__(self, entries: dict[str, User]):
        self._entries = entries

    @classmethod
    def from_file(cls, path: str | Path) -> TokenAuthenticator:
        entries: dict[str, User] = {}
        for row in csv.reader(io.StringIO(Path(path).read_text())):
            if len(row) < 2 or row[0].startswith("#"):
                continue
            groups = tuple(g for g in (row[3].split(",") if len(row) > 3 else []) if g)
            entries[row[0]] = User(row[1], groups)
        return cls(entries)

    def authenticate(self, authorization: str | None) -> User | None:
        """The user of an `Authorization: Bearer <token>` header, or None (401). The scheme is
        case-insensitive and anything after the token is ignored, as upstream's bearertoken
        authenticator does; a header of any other shape is simply not a credential."""
        parts = (authorization or "").split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
            return None
        # surrogateescape: a header with bytes that are not UTF-8 still compares (and fails), never raises.
        presented = parts[1].encode("utf-8", "surrogateescape")
        for token, user in self._entries.items():
            if hmac.compare_digest(token.encode("utf-8", "surrogateescape"), presented):
                return user
        return None


def write_token_file(path: str | Path, rows: list[tuple[str, str, tuple[str, ...]]]) -> None:
    """rows: (token, user, groups). The file is readable by root only."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL)
    for token, user, groups in rows:
        writer.writerow([token, user, user, ",".join(groups)])
    target = Path(path)
    target.touch(mode=0o600, exist_ok=True)
    target.write_text(out.getvalue())


# -- request attributes and decisions -------------------------------------------------------------------

@dataclass(frozen=True)
class Attributes:
    """What authorizers decide on (k8s.io/apiserver/pkg/authorization/authorizer.Attributes)."""
    user: User
    verb: str
    group: str
    resource: str
    subresource: str | None = None
    namespace: str | None = None
    name: str | None = None
    field_selector: str | None = None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


def deny(reason: str = "") -> Decision:
    return Decision(False, reason)


def request_name(verb: str, name: str | None, field_selector: str | None, resource: str) -> str | None:
    """The name a request is about. A list or watch narrowed by `metadata.name=X` is about X, as
    upstream's RequestInfoFactory makes it (that is how kubelets watch a single configmap)."""
    if name or verb not in ("list", "watch"):
        return name
    for requirement in _field_requirements(field_selector, resource):
        if requirement.field == "metadata.name" and requirement.op == "=":
            return requirement.value
    return None


def _field_requirements(field_selector: str | None, resource: str) -> list[FieldRequirement]:
    try:
        return parse_field_selector(field_selector, resource)
    except APIError:
        return []  # a malformed selector narrows nothing; the request itself will answer 400


# -- RBAC -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """An RBAC PolicyRule: "*" matches every group, resource (and subresource) or verb; "*/scale"
    matches the scale subresource of any resource; with names, only requests naming one of them match."""
    groups: tuple[str, ...]
    resources: tuple[str, ...]  # "pods", "pods/status"
    verbs: tuple[str, ...]
    names: tuple[str, ...] = ()

    def allows(self, verb: str, group: str, resource: str, subresource: str | None, name: str | None) -> bool:
        return ("*" in self.verbs or verb in self.verbs) and ("*" in self.groups or group in self.groups) and \
            self._resource_matches(resource, subresource) and (not self.names or name in self.names)

    def _resource_matches(self, resource: str, subresource: str | None) -> bool:
        combined = f"{resource}/{subresource}" if subresource else resource
        return any(r == "*" or r == combined or (subresource is not None and r == f"*/{subresource}")
                   for r in self.resources)


READ = ("get", "list", "watch")
READ_UPDATE = ("get", "list", "watch", "update", "patch")
CORE, APPS, COORDINATION, DISCOVERY = "", "apps", "coordination.k8s.io", "discovery.k8s.io"
BATCH = "batch"
EVENTS = Rule((CORE, "events.k8s.io"), ("events",), ("create", "update", "patch"))  # upstream's eventsRule()
ACCESS_REVIEWS = (Rule(("authentication.k8s.io",), ("tokenreviews",), ("create",)),
                  Rule(("authorization.k8s.io",), ("subjectaccessreviews",), ("create",)))

# Upstream's default ClusterRoles (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go and
# controller_policy.go), for the identities kubesim runs. Groups kubesim does not serve (extensions,
# policy, storage.k8s.io) are kept where upstream names them, so the table reads like upstream's.
CLUSTER_ROLES: dict[str, tuple[Rule, ...]] = {
    "cluster-admin": (Rule(("*",), ("*",), ("*",)),),
    "system:node-proxier": (
        Rule((CORE,), ("services", "endpoints"), ("list", "watch")),
        Rule((CORE,), ("nodes",), READ),
        EVENTS,
        Rule((DISCOVERY,), ("endpointslices",), ("list", "watch")),
    ),
    "system:kube-scheduler": (
        EVENTS,
        # leader election
        Rule((COORDINATION,), ("leases",), ("create",)),
        Rule((COORDINATION,), ("leases",), ("get", "update"), ("kube-scheduler",)),
        Rule((CORE,), ("endpoints",), ("create",)),
        Rule((CORE,), ("endpoints",), ("get", "update"), ("kube-scheduler",)),
        # fundamental resources
        Rule((CORE,), ("nodes",), READ),
        Rule((CORE,), ("pods",), ("get", "list", "watch", "delete")),
        Rule((CORE,), ("pods/binding", "bindings"), ("create",)),
        Rule((CORE,), ("pods/status",), ("patch", "update")),
        # things that select pods
        Rule((CORE,), ("services", "replicationcontrollers"), READ),
        Rule((APPS, "extensions"), ("replicasets",), READ),
        Rule((APPS,), ("statefulsets",), READ),
        # things that pods use or that apply to them
        Rule(("policy",), ("poddisruptionbudgets",), READ),
        Rule((CORE,), ("persistentvolumeclaims", "persistentvolumes"), READ),
        *ACCESS_REVIEWS,
        Rule(("storage.k8s.io",), ("csinodes", "csidrivers", "csistoragecapacities"), READ),
        Rule((CORE,), ("namespaces",), READ),  # pod affinity's namespaceSelector
    ),
    "system:volume-scheduler": (
        Rule((CORE,), ("persistentvolumes", "persistentvolumeclaims"), READ_UPDATE),
        Rule(("storage.k8s.io",), ("storageclasses",), READ),
    ),
    # The controller-manager's own role: shared informers, leader election, service account set-up. Each
    # controller's powers are in its system:controller:* role below.
    "system:kube-controller-manager": (
        EVENTS,
        Rule((COORDINATION,), ("leases",), ("create",)),
        Rule((COORDINATION,), ("leases",), ("get", "update"), ("kube-controller-manager",)),
        Rule((CORE,), ("endpoints",), ("create",)),
        Rule((CORE,), ("endpoints",), ("get", "update"), ("kube-controller-manager",)),
        Rule((CORE,), ("secrets", "serviceaccounts"), ("create",)),
        Rule((CORE,), ("secrets",), ("delete",)),
        Rule((CORE,), ("namespaces", "secrets", "serviceaccounts", "configmaps"), ("get",)),
        Rule((CORE,), ("secrets", "serviceaccounts"), ("update",)),
        *ACCESS_REVIEWS,
        Rule(("*",), ("*",), ("list", "watch")),
        Rule((CORE,), ("serviceaccounts/token",), ("create",)),
    ),
    "system:controller:deployment-controller": (
        Rule(("extensions", APPS), ("deployments",), ("get", "list", "watch", "update")),
        Rule(("extensions", APPS), ("deployments/status", "deployments/finalizers"), ("update",)),
        Rule((APPS, "extensions"), ("replicasets",), ("get", "list", "watch", "create", "update", "patch", "delete")),
        Rule((CORE,), ("pods",), ("get", "list", "watch", "update")),
        EVENTS,
    ),
    "system:controller:replicaset-controller": (
        Rule((APPS, "extensions"), ("replicasets",), ("get", "list", "watch", "update")),
        Rule((APPS, "extensions"), ("replicasets/status", "replicasets/finalizers"), ("update",)),
        Rule((CORE,), ("pods",), ("list", "watch", "patch", "create", "delete")),
        EVENTS,
    ),
    "system:controller:replication-controller": (
        Rule((CORE,), ("replicationcontrollers",), ("get", "list", "watch", "update")),
        Rule((CORE,), ("replicationcontrollers/status", "replicationcontrollers/finalizers"), ("update",)),
        Rule((CORE,), ("pods",), ("list", "watch", "patch", "create", "delete")),
        EVENTS,
    ),
    "system:controller:job-controller": (
        Rule((BATCH,), ("jobs",), ("get", "list", "watch", "update", "patch")),
        Rule((BATCH,), ("jobs/status", "jobs/finalizers"), ("update", "patch")),
        Rule((CORE,), ("pods",), ("list", "watch", "create", "delete", "patch")),
        EVENTS,
    ),
    "system:controller:daemon-set-controller": (
        Rule(("extensions", APPS), ("daemonsets",), READ),
        Rule(("extensions", APPS), ("daemonsets/status", "daemonsets/finalizers"), ("update",)),
        Rule((CORE,), ("nodes",), ("list", "watch")),
        Rule((CORE,), ("pods",), ("list", "watch", "create", "delete", "patch")),
        Rule((CORE,), ("pods/binding",), ("create",)),
        Rule((APPS,), ("controllerrevisions",), ("get", "list", "watch", "create", "delete", "update", "patch")),
        EVENTS,
    ),
    "system:controller:statefulset-controller": (
        Rule((CORE,), ("pods",), ("list", "watch")),
        Rule((APPS,), ("statefulsets",), READ),
        Rule((APPS,), ("statefulsets/status", "statefulsets/finalizers"), ("update",)),
        Rule((CORE,), ("pods",), ("get", "create", "delete", "update", "patch")),
        Rule((APPS,), ("controllerrevisions",), ("get", "create", "delete", "update", "patch", "list", "watch")),
        Rule((CORE,), ("persistentvolumeclaims",), ("get", "create", "update", "delete")),
        EVENTS,
    ),
    "system:controller:cronjob-controller": (
        Rule((BATCH,), ("cronjobs",), ("get", "list", "watch", "update")),
        Rule((BATCH,), ("jobs",), ("get", "list", "watch", "create", "update", "delete", "patch")),
        Rule((BATCH,), ("cronjobs/status", "cronjobs/finalizers"), ("update",)),
        Rule((CORE,), ("pods",), ("list", "delete")),
        EVENTS,
    ),
    "system:controller:ttl-after-finished-controller": (
        Rule((BATCH,), ("jobs",), ("get", "list", "watch", "delete")),
        EVENTS,
    ),
    "system:controller:endpoint-controller": (
        Rule((CORE,), ("services", "pods"), READ),
        Rule((CORE,), ("endpoints",), ("get", "list", "create", "update", "delete")),
        Rule((CORE,), ("endpoints/restricted",), ("create",)),
        EVENTS,
    ),
    "system:controller:endpointslice-controller": (
        Rule((CORE,), ("services", "pods", "nodes"), READ),
        Rule((CORE,), ("services/finalizers",), ("update",)),
        Rule((DISCOVERY,), ("endpointslices",), ("get", "list", "create", "update", "delete")),
        EVENTS,
    ),
    "system:controller:namespace-controller": (
        Rule((CORE,), ("namespaces",), ("get", "list", "watch", "delete")),
        Rule((CORE,), ("namespaces/finalize", "namespaces/status"), ("update",)),
        Rule(("*",), ("*",), ("get", "list", "delete", "deletecollection")),
    ),
    "system:controller:service-account-controller": (
        Rule((CORE,), ("serviceaccounts",), ("create",)),
        EVENTS,
    ),
    # node lifecycle and node IPAM both run as the node-controller upstream.
    "system:controller:node-controller": (
        Rule((CORE,), ("nodes",), ("get", "list", "update", "delete", "patch")),
        Rule((CORE,), ("nodes/status",), ("patch", "update")),
        Rule((CORE,), ("pods/status",), ("patch", "update")),
        Rule((CORE,), ("pods",), ("list", "get", "delete")),
        EVENTS,
    ),
    # kubesim's load-balancer IP controller does the service controller's part: services' status.
    "system:controller:service-controller": (
        Rule((CORE,), ("services",), READ),
        Rule((CORE,), ("services/status",), ("patch", "update")),
        Rule((CORE,), ("nodes",), ("list", "watch")),
        EVENTS,
    ),
    "system:controller:generic-garbage-collector": (
        Rule(("*",), ("*",), ("get", "list", "watch", "patch", "update", "delete")),
        EVENTS,
    ),
    # CoreDNS's own ClusterRole as its deployment manifests give it (kind's and kubeadm's system:coredns):
    # read-only, what the kubernetes plugin's informers need.
    "system:coredns": (
        Rule((CORE,), ("endpoints", "services", "pods", "namespaces"), ("list", "watch")),
        Rule((DISCOVERY,), ("endpointslices",), ("list", "watch")),
    ),
    # kube-network-policies' own ClusterRole (install manifest): what a per-node policy agent reads.
    "kube-network-policies": (
        Rule((CORE,), ("pods", "namespaces", "nodes"), ("list", "watch")),
        Rule(("networking.k8s.io",), ("networkpolicies",), ("list", "watch")),
        Rule(("policy.networking.k8s.io",), ("adminnetworkpolicies", "baselineadminnetworkpolicies"),
             ("list", "watch")),
    ),
}

# The controllers kubesim's controller-manager runs (control/controllers). Upstream gives each its own
# service account; kubesim runs them all with one credential, so that credential holds the union.
KUBESIM_CONTROLLERS = ("deployment-controller", "replicaset-controller", "replication-controller",
                       "endpoint-controller", "endpointslice-controller", "namespace-controller",
                       "service-account-controller", "node-controller", "service-controller",
                       "generic-garbage-collector", "job-controller", "ttl-after-finished-controller",
                       "daemon-set-controller", "statefulset-controller", "cronjob-controller")

USER_BINDINGS: dict[str, tuple[str, ...]] = {
    "system:kube-proxy": ("system:node-proxier",),
    # kubeadm binds system:coredns to the coredns ServiceAccount in kube-system.
    "system:serviceaccount:kube-system:coredns": ("system:coredns",),
    "system:serviceaccount:kube-system:kube-network-policies": ("kube-network-policies",),
    "system:kube-scheduler": ("system:kube-scheduler", "system:volume-scheduler"),
    "system:kube-controller-manager": ("system:kube-controller-manager",
                                       *(f"system:controller:{c}" for c in KUBESIM_CONTROLLERS)),
}
# No binding for system:nodes: since 1.8 upstream's system:node binding has no subjects, and nodes are
# authorized by the Node authorizer alone.
GROUP_BINDINGS: dict[str, tuple[str, ...]] = {"system:masters": ("cluster-admin",)}


def rbac_allows(attrs: Attributes) -> bool:
    roles = [*USER_BINDINGS.get(attrs.user.name, ()),
             *(role for group in attrs.user.groups for role in GROUP_BINDINGS.get(group, ()))]
    return any(rule.allows(attrs.verb, attrs.group, attrs.resource, attrs.subresource, attrs.name)
               for role in roles for rule in CLUSTER_ROLES[role])


# -- the Node authorizer ----------------------------------------------------------------------------------

# What every node may do regardless of the graph (upstream's NodeRules(), for the kinds kubesim serves;
# pods, nodes, leases, configmaps, secrets, PVCs and PVs are decided per object below).
NODE_RULES: tuple[Rule, ...] = (
    *ACCESS_REVIEWS,
    Rule((CORE,), ("services",), READ),  # the kubelet's service lister (service environment variables)
    EVENTS,
    Rule((CORE,), ("endpoints",), ("get",)),
    Rule(("certificates.k8s.io",), ("certificatesigningrequests",), ("create", "get", "list", "watch")),
)

GraphSource = Callable[[], NodeGraph]


class NodeAuthorizer:
    """plugin/pkg/auth/authorizer/node/node_authorizer.go, with AuthorizeNodeWithSelectors (on by default
    since 1.32): a node reads only its own Node, the pods bound to it and what they reference."""

    def __init__(self, graph: GraphSource):
        self._graph = graph
        # The kinds decided per object; every other kind by NODE_RULES.
        self._deciders: dict[tuple[str, str], Callable[[str, Attributes], Decision]] = {
            (CORE, "configmaps"): self._read_referenced,
            (CORE, "secrets"): self._read_referenced,
            (CORE, "persistentvolumeclaims"): self._get_referenced,
            (CORE, "persistentvolumes"): self._get_referenced,
            (COORDINATION, "leases"): self._lease,
            (CORE, "nodes"): self._node,
            (CORE, "pods"): self._pod,
        }

    def authorize(self, node: str, attrs: Attributes) -> Decision:
        decide = self._deciders.get((attrs.group, attrs.resource))
        if decide is not None:
            return decide(node, attrs)
        if any(rule.allows(attrs.verb, attrs.group, attrs.resource, attrs.subresource, attrs.name)
               for rule in NODE_RULES):
            return ALLOW
        return deny()

    def _related(self, node: str, attrs: Attributes) -> Decision:
        if not attrs.name:
            return deny("No Object name found")
        if self._graph().has_path(node, attrs.resource, attrs.namespace or "", attrs.name):
            return ALLOW
        return deny(f"no relationship found between node '{node}' and this object")

    def _read_referenced(self, node: str, attrs: Attributes) -> Decision:
        """Secrets and configmaps: one object at a time (get, or a list/watch narrowed to its name)."""
        if attrs.verb not in READ:
            return deny("can only read resources of this type")
        if attrs.subresource:
            return deny("cannot read subresource")
        if not attrs.namespace:
            return deny("can only read namespaced object of this type")
        return self._related(node, attrs)

    def _get_referenced(self, node: str, attrs: Attributes) -> Decision:
        if attrs.verb != "get":
            return deny("can only get individual resources of this type")
        if attrs.subresource:
            return deny("cannot get subresource")
        return self._related(node, attrs)

    @staticmethod
    def _lease(node: str, attrs: Attributes) -> Decision:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return deny("can only get, create, update, patch, or delete a node lease")
        if attrs.namespace != "kube-node-lease":
            return deny('can only access leases in the "kube-node-lease" system namespace')
        # A create carries no name in its URL: NodeRestriction checks the object's name instead.
        if attrs.verb != "create" and attrs.name != node:
            return deny("can only access node lease with the same name as the requesting node")
        return ALLOW

    @staticmethod
    def _node(node: str, attrs: Attributes) -> Decision:
        if not attrs.subresource and attrs.verb in ("create", "update", "patch"):
            return ALLOW  # NodeRestriction limits the node to its own Node object
        if attrs.subresource == "status" and attrs.verb in ("update", "patch"):
            return ALLOW  # likewise, its own status
        if not attrs.subresource and attrs.verb in READ:
            if attrs.name == node:
                return ALLOW
            if not attrs.name:
                return deny(f"node '{node}' cannot read all nodes, only its own Node object")
            return deny(f"node '{node}' cannot read '{attrs.name}', only its own Node object")
        return deny()

    def _pod(self, node: str, attrs: Attributes) -> Decision:
        verb, sub = attrs.verb, attrs.subresource
        if not sub and verb == "get":
            return self._related(node, attrs)
        if not sub and verb in ("list", "watch"):
            if any(r.field == "spec.nodeName" and r.op == "=" and r.value == node
                   for r in _field_requirements(attrs.field_selector, "pods")):
                return ALLOW
            if attrs.name:
                return self._related(node, attrs)
            return deny("can only list/watch pods with spec.nodeName field selector")
        if not sub and verb == "create":
            # Upstream lets a node create only the mirror pods of its static pods. kubesim runs no static
            # pods, so a node has no pod to create.
            return deny(f"node '{node}' can not create pods: kubesim has no static pods, so a node creates no "
                        "(mirror) pods")
        if not sub and verb == "delete":
            return ALLOW  # NodeRestriction: only pods bound to the node
        if sub == "status" and verb in ("update", "patch"):
            return ALLOW  # NodeRestriction: only pods bound to the node
        if sub == "eviction" and verb == "create":
            return ALLOW  # NodeRestriction: only pods bound to the node
        return deny()


class Authorizer:
    """The apiserver's authorizer chain: Node, then RBAC (kube-apiserver --authorization-mode=Node,RBAC)."""

    def __init__(self, graph: GraphSource):
        self.nodes = NodeAuthorizer(graph)

    def authorize(self, attrs: Attributes) -> Decision:
        node = attrs.user.node_name
        if node is not None:
            decision = self.nodes.authorize(node, attrs)
            if decision.allowed:
                return decision
            return decision if not rbac_allows(attrs) else ALLOW
        return ALLOW if rbac_allows(attrs) else deny()


PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})

__all__ = [
    "ANONYMOUS",
    "CLUSTER_ROLES",
    "PUBLIC_PATHS",
    "Attributes",
    "Authorizer",
    "Decision",
    "NodeAuthorizer",
    "Rule",
    "TokenAuthenticator",
    "User",
    "rbac_allows",
    "request_name",
    "write_token_file",
]
