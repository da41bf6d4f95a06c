"""RBAC through the real HTTP layer (tests/harness.py's in-process apiserver): objects written by the admin
decide a ServiceAccount's requests, escalation is refused unless `escalate` / `bind` is held, the reviews answer,
and a labelled ClusterRole aggregates into view."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.harness import LocalAPIServer, local_apiserver
from tests.security.authz_kit import call

RBAC = "/apis/rbac.authorization.k8s.io/v1"
TEAM = "team"
WHO = "coredns"  # system:serviceaccount:kube-system:coredns: holds only system:coredns to begin with
REVIEWS = "/apis/authorization.k8s.io/v1"


def role(name: str, rules: list[dict[str, Any]], kind: str = "Role") -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": {"name": name},
            "rules": rules}


def binding(name: str, role_kind: str, role_name: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
            "roleRef": {"kind": role_kind, "name": role_name},
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]}


def rule(verbs: list[str], resources: list[str], group: str = "") -> dict[str, Any]:
    return {"verbs": verbs, "apiGroups": [group], "resources": resources}


async def until(check: Any) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")


def run(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            status, _ = await call(session, api, "admin", "POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": TEAM}})
            assert status == 201
            await scenario(api, session)

    asyncio.run(main())


def test_objects_decide_and_escalation_is_refused(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        ns = f"{RBAC}/namespaces/{TEAM}"
        assert (await call(session, api, WHO, "GET", f"/api/v1/namespaces/{TEAM}/configmaps"))[0] == 403
        writer = role("writer", [rule(["create", "update"], ["roles", "rolebindings"], "rbac.authorization.k8s.io"),
                                 rule(["get", "list"], ["configmaps"])])
        assert (await call(session, api, "admin", "POST", f"{ns}/roles", writer))[0] == 201
        status, created = await call(session, api, "admin", "POST", f"{ns}/rolebindings",
                                     binding("writer", "Role", "writer"))
        assert status == 201 and created["roleRef"]["apiGroup"] == "rbac.authorization.k8s.io"  # defaulted

        async def can_list() -> bool:
            return (await call(session, api, WHO, "GET", f"/api/v1/namespaces/{TEAM}/configmaps"))[0] == 200
        await until(can_list)
        assert (await call(session, api, WHO, "GET", "/api/v1/namespaces/default/configmaps"))[0] == 403

        # within what it holds: allowed; beyond: refused in upstream's words
        assert (await call(session, api, WHO, "POST", f"{ns}/roles",
                           role("lister", [rule(["list"], ["configmaps"])])))[0] == 201
        status, refused = await call(session, api, WHO, "POST", f"{ns}/roles",
                                     role("deleter", [rule(["delete"], ["configmaps"])]))
        assert status == 403 and refused["message"] == (
            'roles.rbac.authorization.k8s.io "deleter" is forbidden: user "system:serviceaccount:kube-system:coredns" '
            '(groups=["system:serviceaccounts" "system:serviceaccounts:kube-system" "system:authenticated"]) is '
            'attempting to grant RBAC permissions not currently held:\n'
            '{APIGroups:[""], Resources:["configmaps"], Verbs:["delete"]}')
        status, refused = await call(session, api, WHO, "POST", f"{ns}/rolebindings",
                                     binding("grab", "ClusterRole", "cluster-admin"))
        assert status == 403 and "is attempting to grant RBAC permissions not currently held" in refused["message"]
        assert (await call(session, api, WHO, "POST", f"{ns}/rolebindings",
                           binding("missing", "Role", "no-such-role")))[0] == 404

        # `escalate` and `bind` lift the checks, for the names they are granted on
        lift = role("lift", [{"verbs": ["escalate"], "apiGroups": ["rbac.authorization.k8s.io"],
                              "resources": ["roles"]},
                             {"verbs": ["bind"], "apiGroups": ["rbac.authorization.k8s.io"],
                              "resources": ["clusterroles"], "resourceNames": ["view"]}])
        assert (await call(session, api, "admin", "POST", f"{ns}/roles", lift))[0] == 201
        assert (await call(session, api, "admin", "POST", f"{ns}/rolebindings", binding("lift", "Role", "lift")))[0] \
            == 201

        async def escalates() -> bool:
            return (await call(session, api, WHO, "POST", f"{ns}/roles",
                               role("deleter", [rule(["delete"], ["configmaps"])])))[0] == 201
        await until(escalates)
        assert (await call(session, api, WHO, "POST", f"{ns}/rolebindings", binding("v", "ClusterRole", "view")))[0] \
            == 201
        assert (await call(session, api, WHO, "POST", f"{ns}/rolebindings",
                           binding("e", "ClusterRole", "edit")))[0] == 403

    run(tmp_path, scenario)


def test_reviews_answer(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        def ssar(verb: str, resource: str, namespace: str = "") -> dict[str, Any]:
            return {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace}}}

        status, answer = await call(session, api, WHO, "POST", f"{REVIEWS}/selfsubjectaccessreviews",
                                    ssar("list", "services"))
        assert status == 201 and answer["status"]["allowed"] is True
        assert 'ClusterRoleBinding "system:coredns"' in answer["status"]["reason"]
        status, answer = await call(session, api, WHO, "POST", f"{REVIEWS}/selfsubjectaccessreviews",
                                    ssar("delete", "services", "default"))
        assert status == 201 and answer["status"] == {"allowed": False}
        status, answer = await call(session, api, WHO, "POST", f"{REVIEWS}/selfsubjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"nonResourceAttributes": {"verb": "get", "path": "/apis/apps"}}})
        assert status == 201 and answer["status"]["allowed"] is True  # system:discovery
        status, answer = await call(session, api, WHO, "POST", f"{REVIEWS}/selfsubjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}})
        assert status == 422 and answer["details"]["causes"][0]["field"] == "spec.resourceAttributes"

        # what may it do? the rules of every binding it is a subject of
        status, answer = await call(session, api, WHO, "POST", f"{REVIEWS}/selfsubjectrulesreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": TEAM}})
        assert status == 201 and answer["status"]["incomplete"] is False
        assert {"verbs": ["list", "watch"], "apiGroups": [""],
                "resources": ["endpoints", "services", "pods", "namespaces"]} in answer["status"]["resourceRules"]
        assert any("/apis/*" in r["nonResourceURLs"] for r in answer["status"]["nonResourceRules"])

        # SubjectAccessReview needs the power to ask about others; the admin has it
        sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
               "spec": {"user": "system:kube-proxy", "resourceAttributes": {"verb": "list", "resource": "services"}}}
        assert (await call(session, api, WHO, "POST", f"{REVIEWS}/subjectaccessreviews", sar))[0] == 403
        status, answer = await call(session, api, "admin", "POST", f"{REVIEWS}/subjectaccessreviews", sar)
        assert status == 201 and answer["status"]["allowed"] is True
        status, answer = await call(session, api, "admin", "POST", f"{REVIEWS}/namespaces/{TEAM}/"
                                    "localsubjectaccessreviews", {
                                        "apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
                                        "spec": {"user": "x", "resourceAttributes": {"verb": "get",
                                                                                     "resource": "pods",
                                                                                     "namespace": "other"}}})
        assert status == 422 and "must match metadata.namespace" in answer["message"]

        # who am I, and whose token is this
        status, answer = await call(session, api, WHO, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                                    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        assert status == 201 and answer["status"]["userInfo"]["username"] == \
            "system:serviceaccount:kube-system:coredns"
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "token-scheduler"}}
        status, answer = await call(session, api, "admin", "POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                                    review)
        assert status == 201 and answer["status"]["authenticated"] is True
        assert answer["status"]["user"]["username"] == "system:kube-scheduler"
        status, answer = await call(session, api, "admin", "POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                                    {**review, "spec": {"token": "wrong"}})
        assert status == 201 and answer["status"] == {}
        # never stored: no list, no get
        assert (await call(session, api, "admin", "GET", f"{REVIEWS}/selfsubjectaccessreviews"))[0] == 405

    run(tmp_path, scenario)


def test_a_labelled_cluster_role_aggregates_into_view_and_out_again(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        extra = {"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"]}
        labelled = {**role("widgets", [extra], "ClusterRole"),
                    "metadata": {"name": "widgets", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}}
        assert (await call(session, api, "admin", "POST", f"{RBAC}/clusterroles", labelled))[0] == 201

        def holds(name: str, present: bool) -> Any:
            async def check() -> bool:
                _, body = await call(session, api, "admin", "GET", f"{RBAC}/clusterroles/{name}")
                return (extra in body.get("rules", [])) is present
            return check

        for name in ("view", "edit", "admin"):
            await until(holds(name, True))
        assert (await call(session, api, "admin", "DELETE", f"{RBAC}/clusterroles/widgets"))[0] == 200
        for name in ("view", "edit", "admin"):
            await until(holds(name, False))

    run(tmp_path, scenario)


def test_a_restart_gives_back_what_the_defaults_lost(tmp_path: Path) -> None:
    from control.apiserver.bootstrap import bootstrap_rbac

    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        path = f"{RBAC}/clusterroles/system:node-proxier"
        _, proxier = await call(session, api, "admin", "GET", path)
        default_rules = proxier["rules"]
        mine = rule(["get"], ["widgets"], "example.com")
        assert (await call(session, api, "admin", "PUT", path, {**proxier, "rules": [mine]}))[0] == 200
        await bootstrap_rbac(api.registry)  # what the next start does
        _, after = await call(session, api, "admin", "GET", path)
        assert after["rules"] == [mine, *default_rules]

    run(tmp_path, scenario)
