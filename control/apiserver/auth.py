"""Authentication (static bearer tokens) and authorization (a role table mirroring Kubernetes' default
cluster roles for the identities kubesim runs, plus the Node authorizer's NodeRestriction rule).

The token file has kube-apiserver's --token-auth-file format: `token,user,uid,"group1,group2"`.
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import csv
import hmac
import io
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()

    @property
    def node_name(self) -> str | None:
        """The node a kubelet credential belongs to (system:node:<name> in group system:nodes)."""
        if "system:nodes" in self.groups and self.name.startswith("system:node:"):
            return self.name[len("system:node:"):]
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
        if not authorization or not authorization.startswith("Bearer "):
            return None
        presented = authorization[len("Bearer "):].strip().encode()
        for token, user in self._entries.items():
            if hmac.compare_digest(token.encode(), presented):
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


@dataclass(frozen=True)
class Rule:
    groups: tuple[str, ...]  # API groups; "*" for all
    resources: tuple[str, ...]  # "pods", "pods/status"; "*" for all
    verbs: tuple[str, ...]  # "*" for all

    def allows(self, verb: str, group: str, resource: str) -> bool:
        return (("*" in self.groups or group in self.groups) and ("*" in self.resources or resource in self.resources)
                and ("*" in self.verbs or verb in self.verbs))


READ = ("get", "list", "watch")
WRITE_EVENTS = Rule(("", "events.k8s.io"), ("events",), ("create", "patch", "update"))

# Mirrors the default ClusterRoles bound to these identities (plugin/pkg/auth/authorizer/rbac/
# bootstrappolicy/policy.go): system:node-proxier, system:kube-scheduler, system:node.
ROLES: dict[str, tuple[Rule, ...]] = {
    "system:masters": (Rule(("*",), ("*",), ("*",)),),
    "system:kube-proxy": (
        Rule(("",), ("services", "endpoints", "nodes"), READ),
        Rule(("discovery.k8s.io",), ("endpointslices",), READ),
        WRITE_EVENTS,
    ),
    "system:kube-scheduler": (
        Rule(("",), ("pods", "nodes", "namespaces", "services", "replicationcontrollers", "persistentvolumeclaims",
                     "persistentvolumes"), READ),
        Rule(("apps",), ("replicasets", "statefulsets"), READ),
        Rule(("",), ("pods",), ("delete",)),
        Rule(("",), ("bindings", "pods/binding"), ("create",)),
        Rule(("",), ("pods/status",), ("patch", "update")),
        Rule(("coordination.k8s.io",), ("leases",), ("create", "get", "update")),
        WRITE_EVENTS,
    ),
    # kube-controller-manager runs every controller; with one credential it needs their union.
    "system:kube-controller-manager": (Rule(("*",), ("*",), ("*",)),),
    "system:nodes": (
        Rule(("",), ("nodes",), ("create", "get", "list", "watch", "update", "patch")),
        Rule(("",), ("nodes/status",), ("patch", "update")),
        Rule(("",), ("pods",), ("get", "list", "watch", "create", "delete")),
        Rule(("",), ("pods/status",), ("patch", "update")),
        Rule(("",), ("services", "endpoints", "configmaps", "namespaces"), READ),
        Rule(("discovery.k8s.io",), ("endpointslices",), READ),
        Rule(("coordination.k8s.io",), ("leases",), ("get", "create", "update", "patch", "list", "watch")),
        WRITE_EVENTS,
    ),
}

PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


def authorize(user: User, verb: str, group: str, resource: str, subresource: str | None) -> bool:
    full = f"{resource}/{subresource}" if subresource else resource
    identities = (user.name, *user.groups)
    return any(rule.allows(verb, group, full) for who in identities for rule in ROLES.get(who, ()))


def node_restriction(user: User, verb: str, resource: str, subresource: str | None, namespace: str | None,
                     name: str | None, bound_node: str | None) -> str | None:
    """The NodeRestriction rule: a node may change only its own Node and Lease and pods bound to it.
    Returns why not, or None. BOUND_NODE is the pod's spec.nodeName for pod requests."""
    node = user.node_name
    if node is None or verb in ("get", "list", "watch"):
        return None
    if resource == "nodes" and name not in (None, node):
        return f"node \"{node}\" is not allowed to modify node \"{name}\""
    if resource == "leases" and (namespace != "kube-node-lease" or name not in (None, node)):
        return f"node \"{node}\" is not allowed to modify lease {namespace}/{name}"
    if resource == "pods" and verb != "create" and bound_node != node:
        return f"node \"{node}\" can only modify pods bound to it"
    return None
