"""RBAC's pure parts: rule matching (rbac.go's RuleAllows), subjects, the resolver over the four kinds,
escalation's Covers and its message, aggregation, validation and the default policy."""

from __future__ import annotations

from typing import Any

import pytest

from control.apiserver.aggregation import aggregated_rules
from control.apiserver.auth import User
from control.apiserver.rbac import (
    RBACIndex,
    Request,
    RuleResolver,
    escalation_message,
    missing_rules,
    rule_allows,
    subject_applies,
)
from control.apiserver.rbac_policy import cluster_bindings, cluster_roles
from control.apiserver.validation import validate, validate_update


def rule(verbs: list[str], groups: list[str] | None = None, resources: list[str] | None = None,
         names: list[str] | None = None, urls: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"verbs": verbs}
    if groups is not None:
        out["apiGroups"] = groups
    if resources is not None:
        out["resources"] = resources
    if names is not None:
        out["resourceNames"] = names
    if urls is not None:
        out["nonResourceURLs"] = urls
    return out


def pods(verb: str, *, sub: str = "", name: str = "", group: str = "") -> Request:
    return Request(verb, group, "pods", sub, name, "ns")


@pytest.mark.parametrize(("the_rule", "request_", "allowed"), [
    # verbs
    (rule(["get"], [""], ["pods"]), pods("get"), True),
    (rule(["get"], [""], ["pods"]), pods("list"), False),
    (rule(["*"], [""], ["pods"]), pods("delete"), True),
    # groups
    (rule(["get"], ["apps"], ["pods"]), pods("get"), False),
    (rule(["get"], ["*"], ["pods"]), pods("get", group="example.com"), True),
    # resources and subresources
    (rule(["get"], [""], ["*"]), pods("get", sub="status"), True),
    (rule(["get"], [""], ["pods"]), pods("get", sub="status"), False),
    (rule(["get"], [""], ["pods/status"]), pods("get", sub="status"), True),
    (rule(["get"], [""], ["pods/status"]), pods("get"), False),
    (rule(["get"], [""], ["*/status"]), pods("get", sub="status"), True),
    (rule(["get"], [""], ["*/status"]), pods("get", sub="log"), False),
    (rule(["get"], [""], ["*/status"]), pods("get"), False),
    (rule(["get"], [""], ["services"]), pods("get"), False),
    # resourceNames: only requests naming one of them
    (rule(["get"], [""], ["pods"], ["web"]), pods("get", name="web"), True),
    (rule(["get"], [""], ["pods"], ["web"]), pods("get", name="db"), False),
    (rule(["list"], [""], ["pods"], ["web"]), pods("list"), False),
    (rule(["get"], [""], ["pods"], []), pods("get", name="anything"), True),
    # non-resource URLs
    (rule(["get"], urls=["/healthz"]), Request("get", path="/healthz"), True),
    (rule(["get"], urls=["/healthz"]), Request("get", path="/healthz/etcd"), False),
    (rule(["get"], urls=["/apis/*"]), Request("get", path="/apis/apps/v1"), True),
    (rule(["get"], urls=["/apis/*"]), Request("get", path="/api"), False),
    (rule(["*"], urls=["*"]), Request("post", path="/anything"), True),
    (rule(["get"], urls=["/healthz"]), Request("post", path="/healthz"), False),
    # a resource rule never matches a path, nor a URL rule a resource
    (rule(["*"], ["*"], ["*"]), Request("get", path="/healthz"), False),
    (rule(["*"], urls=["*"]), pods("get"), False),
])
def test_rule_allows(the_rule: dict[str, Any], request_: Request, allowed: bool) -> None:
    assert rule_allows(the_rule, request_) is allowed


ALICE = User("alice", ("devs", "system:authenticated"))
SA = User("system:serviceaccount:team:builder", ("system:serviceaccounts",))


@pytest.mark.parametrize(("subject", "user", "namespace", "applies"), [
    ({"kind": "User", "name": "alice"}, ALICE, "", True),
    ({"kind": "User", "name": "bob"}, ALICE, "", False),
    ({"kind": "Group", "name": "devs"}, ALICE, "", True),
    ({"kind": "Group", "name": "alice"}, ALICE, "", False),
    ({"kind": "ServiceAccount", "name": "builder", "namespace": "team"}, SA, "", True),
    # a ServiceAccount without a namespace is the binding's own namespace's, and nobody's in a cluster binding
    ({"kind": "ServiceAccount", "name": "builder"}, SA, "team", True),
    ({"kind": "ServiceAccount", "name": "builder"}, SA, "other", False),
    ({"kind": "ServiceAccount", "name": "builder"}, SA, "", False),
    ({"kind": "Robot", "name": "alice"}, ALICE, "", False),
])
def test_subjects(subject: dict[str, Any], user: User, namespace: str, applies: bool) -> None:
    assert subject_applies(subject, user, namespace) is applies


class Cache:
    """What RBACIndex reads of a watch cache: its objects by key, and its change listeners."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.listeners: list[Any] = []

    def put(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[f"{meta.get('namespace', '')}/{meta['name']}"] = obj
        for listener in self.listeners:
            listener(None, "")


def _obj(name: str, namespace: str | None = None, **fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"metadata": meta, **fields}


def _binding(name: str, role_kind: str, role: str, subjects: list[dict[str, Any]],
             namespace: str | None = None) -> dict[str, Any]:
    return _obj(name, namespace, roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
                subjects=subjects)


@pytest.fixture
def caches() -> dict[str, Cache]:
    return {plural: Cache() for plural in ("clusterroles", "roles", "clusterrolebindings", "rolebindings")}


def test_resolver_follows_bindings_to_roles(caches: dict[str, Cache]) -> None:
    resolver = RuleResolver(RBACIndex(caches))  # type: ignore[arg-type]
    alice = {"kind": "User", "name": "alice"}
    caches["roles"].put(_obj("reader", "a", rules=[rule(["get", "list"], [""], ["pods"])]))
    caches["clusterroles"].put(_obj("secrets", rules=[rule(["get"], [""], ["secrets"])]))
    caches["clusterroles"].put(_obj("nodes", rules=[rule(["list"], [""], ["nodes"])]))
    caches["rolebindings"].put(_binding("r", "Role", "reader", [alice], "a"))
    caches["rolebindings"].put(_binding("s", "ClusterRole", "secrets", [alice], "a"))
    assert resolver.allows(ALICE, Request("list", "", "pods", namespace="a"))[0]
    assert not resolver.allows(ALICE, Request("list", "", "pods", namespace="b"))[0]
    # a RoleBinding to a ClusterRole grants it in the binding's namespace only
    assert resolver.allows(ALICE, Request("get", "", "secrets", namespace="a"))[0]
    assert not resolver.allows(ALICE, Request("get", "", "secrets", namespace="b"))[0]
    assert not resolver.allows(ALICE, Request("list", "", "nodes"))[0]
    # a change to a cache is seen on the next question: the index is rebuilt
    caches["clusterrolebindings"].put(_binding("n", "ClusterRole", "nodes", [{"kind": "Group", "name": "devs"}]))
    allowed, reason = resolver.allows(ALICE, Request("list", "", "nodes"))
    assert allowed and reason == 'RBAC: allowed by ClusterRoleBinding "n" of ClusterRole "nodes"'
    # a binding to a missing role grants nothing and says so
    caches["rolebindings"].put(_binding("gone", "Role", "missing", [alice], "b"))
    assert resolver.allows(ALICE, Request("get", "", "pods", namespace="b")) == \
        (False, 'RBAC: role.rbac.authorization.k8s.io "missing" not found')
    rules, errors = resolver.rules_for(ALICE, "a")
    assert rule(["get", "list"], [""], ["pods"]) in rules and errors == []


def test_covers_breaks_rules_down_to_what_is_missing() -> None:
    owner = [rule(["get", "list"], [""], ["pods"]), rule(["*"], ["apps"], ["*/scale"]),
             rule(["get"], [""], ["configmaps"], ["app-config"]), rule(["get"], urls=["/healthz", "/apis/*"])]
    assert missing_rules(owner, [rule(["get"], [""], ["pods"])]) == []
    assert missing_rules(owner, [rule(["update"], ["apps"], ["deployments/scale"])]) == []
    assert missing_rules(owner, [rule(["get"], [""], ["configmaps"], ["app-config"])]) == []
    assert missing_rules(owner, [rule(["get"], urls=["/apis/apps"])]) == []
    assert missing_rules(owner, [rule(["get", "delete"], [""], ["pods", "secrets"])]) == [
        rule(["delete"], [""], ["pods"]), rule(["get"], [""], ["secrets"]), rule(["delete"], [""], ["secrets"])]
    # names narrow: a name-limited grant does not cover all names
    assert missing_rules(owner, [rule(["get"], [""], ["configmaps"])]) == [rule(["get"], [""], ["configmaps"])]
    assert missing_rules([rule(["*"], ["*"], ["*"])], [rule(["get"], urls=["/metrics"])]) == \
        [rule(["get"], urls=["/metrics"])]


def test_escalation_message_is_upstreams() -> None:
    missing = missing_rules([], [rule(["get", "delete"], [""], ["pods"]), rule(["get"], urls=["/metrics"])])
    assert escalation_message(ALICE, missing, []) == (
        'user "alice" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently '
        'held:\n{APIGroups:[""], Resources:["pods"], Verbs:["get" "delete"]}\n'
        '{NonResourceURLs:["/metrics"], Verbs:["get"]}')


def test_aggregation_unions_matching_roles_in_name_order_once() -> None:
    selector = {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}},
                                         {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["x"]}]}]}
    target = _obj("target", aggregationRule=selector, rules=[])
    shared = rule(["get"], [""], ["pods"])
    roles = [target,
             _obj("b", rules=[shared, rule(["list"], [""], ["pods"])]) | {"metadata": {"name": "b", "labels": {
                 "agg": "yes"}}},
             _obj("a", rules=[shared]) | {"metadata": {"name": "a", "labels": {"tier": "x"}}},
             _obj("c", rules=[rule(["delete"], [""], ["pods"])]) | {"metadata": {"name": "c", "labels": {"agg": "no"}}}]
    assert aggregated_rules(target, roles) == [shared, rule(["list"], [""], ["pods"])]
    assert aggregated_rules(roles[1], roles) is None  # not an aggregated role


def test_default_policy_aggregates_and_binds_as_upstream() -> None:
    roles = {r["metadata"]["name"]: r for r in cluster_roles()}
    bindings = {b["metadata"]["name"]: b for b in cluster_bindings()}
    for name in ("cluster-admin", "admin", "edit", "view", "system:basic-user", "system:discovery",
                 "system:public-info-viewer", "system:node-proxier", "system:kube-scheduler",
                 "system:kube-controller-manager", "system:node"):
        assert name in roles and roles[name]["metadata"]["labels"]["kubernetes.io/bootstrapping"] == "rbac-defaults"
        assert validate("ClusterRole", roles[name]) == []
    assert roles["view"]["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]
    assert bindings["system:node"]["subjects"] == []  # nodes: the Node authorizer
    assert bindings["cluster-admin"]["subjects"] == [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"}]
    for binding in bindings.values():
        assert validate("ClusterRoleBinding", binding) == [], binding["metadata"]["name"]


def _messages(errors: list[Any]) -> list[str]:
    return [f"{e.field}: {e.message}" for e in errors]


def test_validation_in_upstreams_words() -> None:
    role = {"metadata": {"name": "r", "namespace": "a"}, "rules": [
        {"verbs": [], "apiGroups": [""], "resources": ["pods"]},
        {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
        {"verbs": ["get"]}]}
    assert _messages(validate("Role", role)) == [
        "rules[0].verbs: Required value: verbs must contain at least one value",
        'rules[1].nonResourceURLs: Invalid value: []string{"/healthz"}: namespaced rules cannot apply to '
        "non-resource URLs",
        "rules[2].apiGroups: Required value: resource rules must supply at least one api group",
        "rules[2].resources: Required value: resource rules must supply at least one resource"]
    assert _messages(validate("ClusterRole", {"metadata": {"name": "a/b"}, "aggregationRule": {}})) == [
        "metadata.name: Invalid value: \"a/b\": may not contain '/'",
        "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if "
        "aggregationRule is non-nil"]
    binding = {"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                      "name": "x"},
               "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "User", "name": "u", "apiGroup": ""},
                            {"kind": "Robot", "name": "r"}]}
    assert _messages(validate("ClusterRoleBinding", binding)) == [
        'roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole"',
        "subjects[0].namespace: Required value",
        'subjects[1].apiGroup: Unsupported value: "": supported values: "rbac.authorization.k8s.io"',
        'subjects[2].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group"']
    old = {**binding, "roleRef": {**binding["roleRef"], "kind": "ClusterRole"}, "subjects": []}
    changed = {**old, "roleRef": {**old["roleRef"], "name": "y"}}
    assert any("cannot change roleRef" in m for m in _messages(validate_update("ClusterRoleBinding", changed, old)))


def test_a_restart_reconciles_the_defaults_without_taking_anything_away() -> None:
    from control.apiserver.bootstrap import reconciled

    wanted = next(r for r in cluster_roles() if r["metadata"]["name"] == "system:node-proxier")
    mine = rule(["get"], ["example.com"], ["widgets"])
    stale = {**wanted, "rules": [wanted["rules"][0], mine]}
    updated = reconciled("ClusterRole", stale, wanted)
    assert updated is not None and updated["rules"][:2] == [wanted["rules"][0], mine]
    assert missing_rules(updated["rules"], wanted["rules"]) == []
    assert reconciled("ClusterRole", updated, wanted) is None  # nothing more to do
    opted_out = {**stale, "metadata": {**stale["metadata"], "annotations": {
        "rbac.authorization.kubernetes.io/autoupdate": "false"}}}
    assert reconciled("ClusterRole", opted_out, wanted) is None

    binding = next(b for b in cluster_bindings() if b["metadata"]["name"] == "system:basic-user")
    extra = {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}
    updated = reconciled("ClusterRoleBinding", {**binding, "subjects": [extra]}, binding)
    assert updated is not None and updated["subjects"] == [extra, *binding["subjects"]]
    view = next(r for r in cluster_roles() if r["metadata"]["name"] == "view")
    assert reconciled("ClusterRole", {**view, "aggregationRule": {"clusterRoleSelectors": []}}, view) == \
        {**view, "aggregationRule": view["aggregationRule"]}
