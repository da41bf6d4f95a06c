"""Impersonation: the Impersonate-* headers parsed as upstream's filter reads them, and, through the real HTTP
layer (tests/harness.py's in-process apiserver), `impersonate` checked on each piece before the request runs
as the impersonated user."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from control.apiserver.errors import APIError
from control.apiserver.impersonation import ImpersonationRequest, parse, split_service_account, without_impersonation
from tests.harness import LocalAPIServer, local_apiserver

WHO = "system:serviceaccount:kube-system:coredns"  # the harness's "coredns" identity: no impersonate rights


def headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


# -- parsing ---------------------------------------------------------------------------------------------

def test_no_headers_ask_for_nothing() -> None:
    assert parse(headers(("Authorization", "Bearer x"))) == []
    assert parse(headers(("Impersonate-User", ""))) == []  # an empty user is no user, as Header.Get is upstream


def test_user_groups_uid_and_extras_in_upstream_order() -> None:
    asked = parse(headers(("Impersonate-User", "jane"), ("impersonate-group", "devs"), ("Impersonate-Group", "ops"),
                          ("Impersonate-Uid", "1234"), ("Impersonate-Extra-Scopes", "view"),
                          ("Impersonate-Extra-scopes", "edit"), ("Impersonate-Extra-example.com%2fteam", "a")))
    assert asked == [
        ImpersonationRequest("User", "jane"),
        ImpersonationRequest("Group", "devs"), ImpersonationRequest("Group", "ops"),
        # header names are case-insensitive; the key is lower-cased, then percent-decoded
        ImpersonationRequest("UserExtra", "a", field_path="example.com/team"),
        ImpersonationRequest("UserExtra", "view", field_path="scopes"),
        ImpersonationRequest("UserExtra", "edit", field_path="scopes"),
        ImpersonationRequest("UID", "1234"),
    ]


def test_a_service_account_user_is_asked_for_as_the_service_account() -> None:
    assert parse(headers(("Impersonate-User", "system:serviceaccount:default:x"))) == [
        ImpersonationRequest("ServiceAccount", "x", "default")]
    assert split_service_account("system:serviceaccount:default:x") == ("default", "x")
    for not_one in ("system:serviceaccount:default", "system:serviceaccount:a:b:c", "system:serviceaccount::x",
                    "system:serviceaccount:Bad_NS:x", "jane"):
        assert split_service_account(not_one) is None, not_one
    # a name that is not a valid ServiceAccount's is impersonated as a plain user, as upstream
    assert parse(headers(("Impersonate-User", "system:serviceaccount:a:b:c"))) == [
        ImpersonationRequest("User", "system:serviceaccount:a:b:c")]


@pytest.mark.parametrize("header", [("Impersonate-Group", "devs"), ("Impersonate-Uid", "1"),
                                    ("Impersonate-Extra-scopes", "view")])
def test_groups_uid_or_extras_without_a_user_are_a_bad_request(header: tuple[str, str]) -> None:
    with pytest.raises(APIError) as refused:
        parse(headers(header))
    assert refused.value.code == 400 and refused.value.reason == "BadRequest"
    assert refused.value.message.startswith("requested [{Kind:") and \
        refused.value.message.endswith("] without impersonating a user")


def test_every_impersonation_header_is_removed() -> None:
    kept = without_impersonation(headers(("Impersonate-User", "jane"), ("IMPERSONATE-GROUP", "g"),
                                         ("Impersonate-Uid", "1"), ("impersonate-extra-a", "b"),
                                         ("Authorization", "Bearer t"), ("Accept", "application/json")))
    assert list(kept.items()) == [("Authorization", "Bearer t"), ("Accept", "application/json")]


# -- through the apiserver -------------------------------------------------------------------------------

async def call(session: aiohttp.ClientSession, api: LocalAPIServer, who: str, method: str, path: str,
               body: Any = None, *impersonation: tuple[str, str]) -> tuple[int, dict[str, Any]]:
    sent = CIMultiDict([("Authorization", f"Bearer token-{who}"), ("Content-Type", "application/json"),
                        *impersonation])
    data = None if body is None else json.dumps(body).encode()
    async with session.request(method, api.url + path, data=data, headers=sent) as response:
        return response.status, json.loads(await response.text() or "{}")


WHOAMI = ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
          {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})


async def whoami(session: aiohttp.ClientSession, api: LocalAPIServer, who: str,
                 *impersonation: tuple[str, str]) -> tuple[int, dict[str, Any]]:
    status, review = await call(session, api, who, *WHOAMI, *impersonation)
    return status, review["status"]["userInfo"] if status == 201 else review


def run(tmp_path: Path, scenario: Any) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            await scenario(api, session)
    asyncio.run(main())


def test_the_impersonated_identity(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        status, info = await whoami(session, api, "admin", ("Impersonate-User", "jane"),
                                    ("Impersonate-Group", "devs"), ("Impersonate-Uid", "u-1"),
                                    ("Impersonate-Extra-Scopes", "view"), ("Impersonate-Extra-Scopes", "edit"),
                                    ("Impersonate-Extra-team", "a"))
        assert status == 201, info
        assert info == {"username": "jane", "groups": ["devs", "system:authenticated"], "uid": "u-1",
                        "extra": {"scopes": ["view", "edit"], "team": ["a"]}}
        status, info = await whoami(session, api, "admin", ("Impersonate-User", "system:serviceaccount:default:x"))
        assert info == {"username": "system:serviceaccount:default:x", "groups": [
            "system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]}
        # groups given replace the ServiceAccount's fixed ones; system:unauthenticated keeps authenticated out
        # (system:masters is asked for too: nobody unauthenticated may create a SelfSubjectReview)
        status, info = await whoami(session, api, "admin", ("Impersonate-User", "system:serviceaccount:default:x"),
                                    ("Impersonate-Group", "system:masters"),
                                    ("Impersonate-Group", "system:unauthenticated"))
        assert info["groups"] == ["system:masters", "system:unauthenticated"], info
        status, info = await whoami(session, api, "admin", ("Impersonate-User", "system:anonymous"),
                                    ("Impersonate-Group", "system:masters"))
        assert info == {"username": "system:anonymous", "groups": ["system:masters", "system:unauthenticated"]}
        status, refused = await whoami(session, api, "admin", ("Impersonate-Group", "devs"))
        assert status == 400 and refused["reason"] == "BadRequest", refused
    run(tmp_path, scenario)


def test_impersonate_is_authorized_per_piece(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        status, refused = await whoami(session, api, "coredns", ("Impersonate-User", "jane"))
        assert status == 403 and refused["reason"] == "Forbidden"
        assert refused["message"] == (f'users "jane" is forbidden: User "{WHO}" cannot impersonate resource "users" '
                                      'in API group "" at the cluster scope')
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "impersonate-jane"},
                "rules": [{"verbs": ["impersonate"], "apiGroups": [""], "resources": ["users"],
                           "resourceNames": ["jane"]}]}
        assert (await call(session, api, "admin", "POST", f"{rbac}/clusterroles", role))[0] == 201
        grant = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                 "metadata": {"name": "impersonate-jane"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                             "name": "impersonate-jane"},
                 "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]}
        assert (await call(session, api, "admin", "POST", f"{rbac}/clusterrolebindings", grant))[0] == 201
        for _ in range(200):  # the binding is decided on the watch caches: in effect once they have it
            status, info = await whoami(session, api, "coredns", ("Impersonate-User", "jane"))
            if status == 201:
                break
            await asyncio.sleep(0.02)
        assert info == {"username": "jane", "groups": ["system:authenticated"]}
        status, refused = await whoami(session, api, "coredns", ("Impersonate-User", "dave"))
        assert status == 403 and refused["message"].startswith(f'users "dave" is forbidden: User "{WHO}"'), refused
        # each further piece needs its own grant: a group, an extra, a ServiceAccount (in its namespace)
        status, refused = await whoami(session, api, "coredns", ("Impersonate-User", "jane"),
                                       ("Impersonate-Group", "devs"))
        assert status == 403 and refused["message"] == (
            f'groups "devs" is forbidden: User "{WHO}" cannot impersonate resource "groups" in API group "" '
            'at the cluster scope'), refused
        status, refused = await whoami(session, api, "coredns", ("Impersonate-User", "jane"),
                                       ("Impersonate-Extra-scopes", "view"))
        assert status == 403 and refused["message"] == (
            f'userextras.authentication.k8s.io "view" is forbidden: User "{WHO}" cannot impersonate resource '
            '"userextras/scopes" in API group "authentication.k8s.io" at the cluster scope'), refused
        status, refused = await whoami(session, api, "coredns", ("Impersonate-User", "system:serviceaccount:default:x"))
        assert status == 403 and refused["message"] == (
            f'serviceaccounts "x" is forbidden: User "{WHO}" cannot impersonate resource "serviceaccounts" '
            'in API group "" in the namespace "default"'), refused
    run(tmp_path, scenario)


def test_the_request_is_authorized_as_the_impersonated_user(tmp_path: Path) -> None:
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        as_jane = ("Impersonate-User", "jane")
        status, refused = await call(session, api, "admin", "GET", "/api/v1/namespaces/default/configmaps", None,
                                     as_jane)
        assert status == 403 and refused["message"].startswith(
            'configmaps is forbidden: User "jane" cannot list resource "configmaps"'), refused
        # system:masters asked for as a group is what jane then holds
        status, _ = await call(session, api, "admin", "GET", "/api/v1/namespaces/default/configmaps", None,
                               as_jane, ("Impersonate-Group", "system:masters"))
        assert status == 200
    run(tmp_path, scenario)


def test_edit_in_a_namespace_impersonates_its_service_accounts_only(tmp_path: Path) -> None:
    """The default `edit` role holds `impersonate` on serviceaccounts: bound in one namespace, it lets the holder act
    as that namespace's ServiceAccounts (the check carries the SA's namespace) and no others."""
    async def scenario(api: LocalAPIServer, session: aiohttp.ClientSession) -> None:
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}
        assert (await call(session, api, "admin", "POST", "/api/v1/namespaces", namespace))[0] == 201
        grant = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                 "metadata": {"name": "edit", "namespace": "team"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                 "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]}
        assert (await call(session, api, "admin", "POST",
                           "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", grant))[0] == 201
        as_x = ("Impersonate-User", "system:serviceaccount:team:x")
        for _ in range(200):
            status, info = await whoami(session, api, "coredns", as_x)
            if status == 201:
                break
            await asyncio.sleep(0.02)
        assert info == {"username": "system:serviceaccount:team:x", "groups": [
            "system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"]}
        status, refused = await whoami(session, api, "coredns", ("Impersonate-User", "system:serviceaccount:other:x"))
        assert status == 403 and refused["message"].endswith('in the namespace "other"'), refused
    run(tmp_path, scenario)
