"""RBAC as objects: Roles, ClusterRoles, RoleBindings and ClusterRoleBindings decide every request.

    rule_allows(rule, request)             one PolicyRule against one request (plugin/pkg/auth/authorizer/rbac/rbac.go)
    RBACIndex(caches)                      the four kinds as the watch caches hold them, re-indexed when they change:
                                           the informer-style view every request is decided on, with no store read
    RuleResolver(index).allows(request)    whether any binding of the user's grants it (RBACAuthorizer.Authorize)
                      .rules_for(user, ns) every rule the user holds there (for SelfSubjectRulesReview, escalation)
    missing_rules(owner, requested)        what requested grants that owner does not (validation.Covers)
    escalation_message(user, missing)      upstream's Forbidden wording for an escalation

Rules and objects are the JSON shapes of rbac.authorization.k8s.io/v1 (PolicyRule, Subject, RoleRef).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from control.apiserver.auth import User
    from control.apiserver.watchcache import WatchCache, WatchEvent

RBAC_GROUP = "rbac.authorization.k8s.io"
PolicyRule = dict[str, Any]


@dataclass(frozen=True)
class Request:
    """What RBAC decides on: a resource request (resource set) or a non-resource one (path set)."""
    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    namespace: str = ""
    path: str = ""

    @property
    def is_resource(self) -> bool:
        return bool(self.resource)


def _list(rule: PolicyRule, field: str) -> list[str]:
    value = rule.get(field)
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def verb_matches(rule: PolicyRule, verb: str) -> bool:
    verbs = _list(rule, "verbs")
    return "*" in verbs or verb in verbs


def group_matches(rule: PolicyRule, group: str) -> bool:
    groups = _list(rule, "apiGroups")
    return "*" in groups or group in groups


def resource_matches(rule: PolicyRule, combined: str, subresource: str) -> bool:
    """"*" matches everything, "pods/status" exactly that, "*/status" the status of any resource."""
    for resource in _list(rule, "resources"):
        if resource == "*" or resource == combined:
            return True
        if subresource and resource == f"*/{subresource}":
            return True
    return False


def name_matches(rule: PolicyRule, name: str) -> bool:
    names = _list(rule, "resourceNames")
    return not names or name in names


def url_matches(rule: PolicyRule, path: str) -> bool:
    """"*" matches every path; "/apis/*" every path with that prefix; anything else only itself."""
    for url in _list(rule, "nonResourceURLs"):
        if url == "*" or url == path:
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(rule: PolicyRule, request: Request) -> bool:
    if request.is_resource:
        combined = f"{request.resource}/{request.subresource}" if request.subresource else request.resource
        return verb_matches(rule, request.verb) and group_matches(rule, request.group) and \
            resource_matches(rule, combined, request.subresource) and name_matches(rule, request.name)
    return verb_matches(rule, request.verb) and url_matches(rule, request.path)


def service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def subject_applies(subject: Any, user: User, namespace: str) -> bool:
    """appliesToUser: a ServiceAccount subject without a namespace means the binding's own namespace."""
    if not isinstance(subject, dict):
        return False
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == user.name)
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        sa_namespace = subject.get("namespace") or namespace
        return bool(sa_namespace) and service_account_username(sa_namespace, str(name)) == user.name
    return False


# -- the index over the watch caches --------------------------------------------------------------------

KINDS = ("clusterroles", "roles", "clusterrolebindings", "rolebindings")


class RBACIndex:
    """Roles by name and bindings by namespace, rebuilt on the first question after any of the four caches
    changed. The caches are the apiserver's own watch caches, so this is as current as any watch."""

    def __init__(self, caches: Mapping[str, WatchCache]):
        self._caches = caches
        self._dirty = True
        self.cluster_roles: dict[str, dict[str, Any]] = {}
        self.roles: dict[tuple[str, str], dict[str, Any]] = {}
        self.cluster_bindings: list[dict[str, Any]] = []
        self.bindings: dict[str, list[dict[str, Any]]] = {}
        for plural in KINDS:
            caches[plural].listeners.append(self._changed)

    def _changed(self, event: WatchEvent, key: str) -> None:
        self._dirty = True

    def refresh(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        self.cluster_roles = {o["metadata"]["name"]: o for o in self._caches["clusterroles"].objects.values()}
        self.roles = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o
                      for o in self._caches["roles"].objects.values()}
        self.cluster_bindings = sorted(self._caches["clusterrolebindings"].objects.values(),
                                       key=lambda o: str(o["metadata"]["name"]))
        bindings: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for obj in sorted(self._caches["rolebindings"].objects.values(), key=lambda o: str(o["metadata"]["name"])):
            bindings[obj["metadata"].get("namespace", "")].append(obj)
        self.bindings = dict(bindings)


@dataclass(frozen=True)
class Grant:
    """The rules one binding gives, and what to call it in a reason."""
    rules: list[PolicyRule]
    source: str


class RoleNotFound(LookupError):
    pass


class RuleResolver:
    """DefaultRuleResolver over the index: ClusterRoleBindings first, then the RoleBindings of the namespace."""

    def __init__(self, index: RBACIndex):
        self.index = index

    def role_rules(self, role_ref: Any, namespace: str) -> list[PolicyRule]:
        """GetRoleReferenceRules; RoleNotFound (with the kind's resource and the name) when it does not exist."""
        ref = role_ref if isinstance(role_ref, dict) else {}
        kind, name = ref.get("kind"), str(ref.get("name", ""))
        self.index.refresh()
        if kind == "ClusterRole":
            role = self.index.cluster_roles.get(name)
            if role is None:
                raise RoleNotFound("clusterroles", name)
        elif kind == "Role":
            role = self.index.roles.get((namespace, name))
            if role is None:
                raise RoleNotFound("roles", name)
        else:
            raise RoleNotFound("roles", name)
        rules = role.get("rules")
        return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []

    def grants(self, user: User, namespace: str) -> Iterator[Grant | RoleNotFound]:
        self.index.refresh()
        for binding in self.index.cluster_bindings:
            if any(subject_applies(s, user, "") for s in binding.get("subjects") or []):
                yield self._grant("ClusterRoleBinding", binding, "")
        if namespace:
            for binding in self.index.bindings.get(namespace, []):
                if any(subject_applies(s, user, namespace) for s in binding.get("subjects") or []):
                    yield self._grant("RoleBinding", binding, namespace)

    def _grant(self, kind: str, binding: dict[str, Any], namespace: str) -> Grant | RoleNotFound:
        ref = binding.get("roleRef") or {}
        where = f"{binding['metadata']['name']}" + (f'" in namespace "{namespace}' if namespace else "")
        try:
            rules = self.role_rules(ref, namespace)
        except RoleNotFound as missing:
            return missing
        return Grant(rules, f'{kind} "{where}" of {ref.get("kind")} "{ref.get("name")}"')

    def allows(self, user: User, request: Request) -> tuple[bool, str]:
        """(allowed, reason): the reason names the binding that allowed it, or the roles that were missing."""
        errors: list[str] = []
        for grant in self.grants(user, request.namespace):
            if isinstance(grant, RoleNotFound):
                resource, name = grant.args
                errors.append(f'{resource[:-1]}.{RBAC_GROUP} "{name}" not found')
                continue
            if any(rule_allows(rule, request) for rule in grant.rules):
                return True, f"RBAC: allowed by {grant.source}"
        return False, ("RBAC: " + ", ".join(errors)) if errors else ""

    def rules_for(self, user: User, namespace: str) -> tuple[list[PolicyRule], list[str]]:
        rules: list[PolicyRule] = []
        errors: list[str] = []
        for grant in self.grants(user, namespace):
            if isinstance(grant, RoleNotFound):
                resource, name = grant.args
                errors.append(f'{resource[:-1]}.{RBAC_GROUP} "{name}" not found')
            else:
                rules.extend(grant.rules)
        return rules, errors


# -- escalation (pkg/registry/rbac/validation/policy_comparator.go) --------------------------------------

def breakdown(rule: PolicyRule) -> list[PolicyRule]:
    """One rule per group, resource, verb (and name): the atoms Covers compares."""
    atoms: list[PolicyRule] = []
    names = _list(rule, "resourceNames")
    for group in _list(rule, "apiGroups"):
        for resource in _list(rule, "resources"):
            for verb in _list(rule, "verbs"):
                if names:
                    atoms += [{"apiGroups": [group], "resources": [resource], "verbs": [verb],
                               "resourceNames": [n]} for n in names]
                else:
                    atoms.append({"apiGroups": [group], "resources": [resource], "verbs": [verb]})
    for url in _list(rule, "nonResourceURLs"):
        atoms += [{"nonResourceURLs": [url], "verbs": [verb]} for verb in _list(rule, "verbs")]
    return atoms


def _resources_cover(owned: list[str], wanted: list[str]) -> bool:
    if "*" in owned:
        return True
    for resource in wanted:
        if resource in owned:
            continue
        if "/" not in resource or f"*/{resource.split('/', 1)[1]}" not in owned:
            return False
    return True


def _urls_cover(owned: list[str], wanted: list[str]) -> bool:
    return all(any(o == w or (o.endswith("*") and w.startswith(o.rstrip("*"))) for o in owned) for w in wanted)


def rule_covers(owner: PolicyRule, sub: PolicyRule) -> bool:
    verbs, groups = _list(owner, "verbs"), _list(owner, "apiGroups")
    owned_names, wanted_names = _list(owner, "resourceNames"), _list(sub, "resourceNames")
    names_ok = not owned_names or (bool(wanted_names) and set(wanted_names) <= set(owned_names))
    return ("*" in verbs or set(_list(sub, "verbs")) <= set(verbs)) and \
        ("*" in groups or set(_list(sub, "apiGroups")) <= set(groups)) and \
        _resources_cover(_list(owner, "resources"), _list(sub, "resources")) and \
        _urls_cover(_list(owner, "nonResourceURLs"), _list(sub, "nonResourceURLs")) and names_ok


def missing_rules(owner: list[PolicyRule], requested: list[PolicyRule]) -> list[PolicyRule]:
    missing: list[PolicyRule] = []
    for rule in requested:
        for atom in breakdown(rule):
            if not any(rule_covers(o, atom) for o in owner) and atom not in missing:
                missing.append(atom)
    return missing


def compact(rules: list[PolicyRule]) -> list[PolicyRule]:
    """CompactRules: atoms of one group and resource without names merge their verbs."""
    merged: dict[tuple[str, str], PolicyRule] = {}
    out: list[PolicyRule] = []
    for rule in rules:
        simple = len(_list(rule, "apiGroups")) == 1 and len(_list(rule, "resources")) == 1 and \
            not rule.get("resourceNames") and not rule.get("nonResourceURLs")
        if not simple:
            out.append(rule)
            continue
        key = (rule["apiGroups"][0], rule["resources"][0])
        if key in merged:
            merged[key]["verbs"] += [v for v in rule["verbs"] if v not in merged[key]["verbs"]]
        else:
            merged[key] = {**rule, "verbs": list(rule["verbs"])}
            out.append(merged[key])
    return out


def _go_quote(values: list[str]) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(v) for v in values) + "]"


def compact_string(rule: PolicyRule) -> str:
    """PolicyRule.CompactString: {APIGroups:[""], Resources:["pods"], Verbs:["get"]}."""
    parts = [f"{label}:{_go_quote(_list(rule, field))}" for label, field in (
        ("APIGroups", "apiGroups"), ("Resources", "resources"), ("NonResourceURLs", "nonResourceURLs"),
        ("ResourceNames", "resourceNames"), ("Verbs", "verbs")) if _list(rule, field) or
        (field == "apiGroups" and rule.get("apiGroups"))]
    return "{" + ", ".join(parts) + "}"


def escalation_message(user: User, missing: list[PolicyRule], resolution_errors: list[str]) -> str:
    described = sorted({compact_string(r) for r in compact(missing)})
    message = (f"user {json.dumps(user.name)} (groups={_go_quote(list(user.groups))}) is attempting to grant RBAC "
               "permissions not currently held:\n" + "\n".join(described))
    if resolution_errors:
        message += f"; resolution errors: [{' '.join(resolution_errors)}]"
    return message


__all__ = [
    "RBAC_GROUP",
    "Grant",
    "RBACIndex",
    "Request",
    "RoleNotFound",
    "RuleResolver",
    "breakdown",
    "compact_string",
    "escalation_message",
    "missing_rules",
    "rule_allows",
    "rule_covers",
    "service_account_username",
    "subject_applies",
]
