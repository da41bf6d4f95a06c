"""Authentication (static bearer tokens) and authorization: upstream's Node authorizer for kubelets, then
RBAC with the default ClusterRoles and ClusterRoleBindings of the identities kubesim runs.

The token file has kube-apiserver's --token-auth-file format: `token,user,uid,"group1,group2"`.
Tokens are compared in constant time and never logged.

    authorize(attributes) -> Decision(allowed, reason)
        a node's identity (system:node:<name> in system:nodes): NodeAuthorizer, which also needs the
        NodeRestriction admission (noderestriction.py) for what depends on the object's content
        system:masters: allowed, before any authorizer (kube-apiserver's privileged-group authorizer)
        anyone, after the Node authorizer: RBAC over the Role/ClusterRole/*Binding objects (rbac.py)

Every authenticated user also belongs to system:authenticated (upstream's AuthenticatedGroupAdder); the
default policy (rbac_policy.py) binds discovery and the self-reviews to that group.
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
from control.apiserver.rbac import Request as RBACRequest
from control.apiserver.rbac import RuleResolver
from control.apiserver.selectors import FieldRequirement, parse_field_selector


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    # UserInfo.extra as sorted (key, values) pairs: a tuple keeps User hashable and comparable.
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def node_name(self) -> str | None:
        """The node a kubelet credential belongs to (system:node:<name> in group system:nodes)."""
        if "system:nodes" in self.groups and self.name.startswith("system:node:"):
            return self.name[len("system:node:"):] or None
        return None


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


AUTHENTICATED = "system:authenticated"
MASTERS = "system:masters"


def with_authenticated_group(user: User) -> User:
    return user if AUTHENTICATED in user.groups else User(user.name, (*user.groups, AUTHENTICATED))


class TokenAuthenticator:
    def __init__(self, entries: dict[str, User]):
        self._entries = {token: with_authenticated_group(user) for token, user in entries.items()}

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
    path: str | None = None  # a non-resource request's path (resource is then "")

    def rbac_request(self) -> RBACRequest:
        return RBACRequest(self.verb, self.group, self.resource, self.subresource or "", self.name or "",
                           self.namespace or "", self.path or "")


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
CORE, COORDINATION = "", "coordination.k8s.io"
EVENTS = Rule((CORE, "events.k8s.io"), ("events",), ("create", "update", "patch"))  # upstream's eventsRule()
ACCESS_REVIEWS = (Rule(("authentication.k8s.io",), ("tokenreviews",), ("create",)),
                  Rule(("authorization.k8s.io",), ("subjectaccessreviews",), ("create",)))


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
            (CORE, "serviceaccounts"): self._service_account,
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

    def _service_account(self, node: str, attrs: Attributes) -> Decision:
        """Tokens of the ServiceAccounts of the node's pods (the server checks the token's bound pod)."""
        if attrs.verb != "create" or attrs.subresource != "token":
            return deny("can only create tokens for individual service accounts")
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
    """The apiserver's authorizer chain: system:masters, then Node, then RBAC (kube-apiserver
    --authorization-mode=Node,RBAC). A node's request RBAC would allow is allowed, as the union is upstream."""

    def __init__(self, graph: GraphSource, rbac: RuleResolver):
        self.nodes = NodeAuthorizer(graph)
        self.rbac = rbac

    def authorize(self, attrs: Attributes) -> Decision:
        if MASTERS in attrs.user.groups:
            return ALLOW
        node = attrs.user.node_name
        node_decision: Decision | None = None
        if node is not None and attrs.resource:
            node_decision = self.nodes.authorize(node, attrs)
            if node_decision.allowed:
                return node_decision
        allowed, reason = self.rbac.allows(attrs.user, attrs.rbac_request())
        if allowed:
            return Decision(True, reason)
        return node_decision if node_decision is not None and node_decision.reason else deny(reason)


PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})

__all__ = [
    "ANONYMOUS",
    "AUTHENTICATED",
    "PUBLIC_PATHS",
    "Attributes",
    "Authorizer",
    "Decision",
    "NodeAuthorizer",
    "Rule",
    "TokenAuthenticator",
    "User",
    "request_name",
    "write_token_file",
]
