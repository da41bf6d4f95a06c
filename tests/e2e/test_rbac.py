"""RBAC as objects, with unmodified kubectl (the oldest and newest versions we support) against the real apiserver
process over HTTPS: a user bound to a Role in one namespace lists pods there and is refused in another,
`kubectl auth can-i` (one question and --list) and `kubectl auth whoami` say the same, escalation through a Role
or a RoleBinding is refused in upstream's words, and a labelled ClusterRole aggregates into `view`.

Users come from the apiserver's static token file (--token-auth-file), the one credential source kubesim's
apiserver has: the admin (system:masters) and "alice" (group "devs").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.e2e.test_kubectl_apply import VERSIONS, Kubectl, kubectl_runner, require_kubectl, users_apiserver
from tests.waiting import wait_until

USERS = {"admin": ("e2e-admin-token", "kubernetes-admin", ("system:masters",)),
         "alice": ("e2e-alice-token", "alice", ("devs",))}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A real `python -m control.apiserver` on a free loopback port; yields a kubeconfig per user."""
    with users_apiserver(tmp_path_factory.mktemp("rbac"), USERS) as kubeconfigs:
        yield kubeconfigs


@pytest.fixture(params=VERSIONS)
def kubectls(request: pytest.FixtureRequest, cluster: dict[str, Path],
             tmp_path: Path) -> tuple[str, Kubectl, Kubectl]:
    binary = require_kubectl(request.param)
    (tmp_path / "admin").mkdir()
    (tmp_path / "alice").mkdir()
    return (request.param.replace(".", "-"), kubectl_runner(binary, cluster["admin"], tmp_path / "admin"),
            kubectl_runner(binary, cluster["alice"], tmp_path / "alice"))


def test_a_role_in_one_namespace_grants_there_only(kubectls: tuple[str, Kubectl, Kubectl]) -> None:
    version, admin, alice = kubectls
    a, b = f"team-a-{version}", f"team-b-{version}"
    for namespace in (a, b):
        admin("apply", "-f", "-", stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": namespace}}))
    admin("create", "role", "pod-reader", "-n", a, "--verb=get,list,watch", "--resource=pods")
    admin("create", "rolebinding", "alice-reads", "-n", a, "--role=pod-reader", "--user=alice")
    # The binding is decided on the apiserver's watch caches: visible as soon as they have it.
    wait_until(lambda: alice("get", "pods", "-n", a, check=False).returncode == 0, timeout=10,
               message="alice's binding in effect")
    refused = alice("get", "pods", "-n", b, check=False)
    assert refused.returncode != 0
    assert f'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "{b}"' \
        in refused.stderr, refused.stderr

    assert alice("auth", "can-i", "list", "pods", "-n", a).stdout.strip() == "yes"
    no = alice("auth", "can-i", "list", "pods", "-n", b, check=False)
    assert no.returncode == 1 and no.stdout.strip() == "no", no
    assert alice("auth", "can-i", "delete", "pods", "-n", a, check=False).stdout.strip() == "no"

    listed = alice("auth", "can-i", "--list", "-n", a).stdout
    # Resources  Non-Resource URLs  Resource Names  Verbs
    assert any(line.split()[:1] == ["pods"] and line.rstrip().endswith("[get list watch]")
               for line in listed.splitlines()), listed
    assert any(line.startswith("selfsubjectaccessreviews.authorization.k8s.io") for line in listed.splitlines())
    listed_b = alice("auth", "can-i", "--list", "-n", b).stdout
    assert not any(line.split()[:1] == ["pods"] for line in listed_b.splitlines()), listed_b

    whoami = alice("auth", "whoami").stdout
    assert "alice" in whoami and "devs" in whoami and "system:authenticated" in whoami, whoami


def test_escalation_is_refused_unless_held(kubectls: tuple[str, Kubectl, Kubectl]) -> None:
    version, admin, alice = kubectls
    ns = f"team-e-{version}"
    admin("apply", "-f", "-", stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": ns}}))
    # alice may write roles and bindings in ns, and read pods there: no more.
    admin("create", "role", "rbac-writer", "-n", ns, "--verb=create,get,list",
          "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io")
    admin("create", "role", "pod-reader", "-n", ns, "--verb=get,list,watch", "--resource=pods")
    for role in ("rbac-writer", "pod-reader"):
        admin("create", "rolebinding", f"alice-{role}", "-n", ns, f"--role={role}", "--user=alice")
    wait_until(lambda: alice("auth", "can-i", "create", "roles", "-n", ns, check=False).stdout.strip() == "yes",
               timeout=10, message="alice's bindings in effect")

    # A role within what she holds: allowed. One beyond it: refused, naming what is missing.
    alice("create", "role", "reads-pods-too", "-n", ns, "--verb=get,list", "--resource=pods")
    beyond = alice("create", "role", "deletes-pods", "-n", ns, "--verb=delete", "--resource=pods", check=False)
    assert beyond.returncode != 0
    assert 'roles.rbac.authorization.k8s.io "deletes-pods" is forbidden: user "alice" (groups=["devs" ' \
           '"system:authenticated"]) is attempting to grant RBAC permissions not currently held:\n' \
           '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}' in beyond.stderr, beyond.stderr

    # Binding a role she holds: allowed; binding cluster-admin: refused.
    alice("create", "rolebinding", "bob-reads", "-n", ns, "--role=pod-reader", "--user=bob")
    grab = alice("create", "rolebinding", "alice-admin", "-n", ns, "--clusterrole=cluster-admin", "--user=alice",
                 check=False)
    assert grab.returncode != 0
    assert 'rolebindings.rbac.authorization.k8s.io "alice-admin" is forbidden: user "alice"' in grab.stderr and \
        "is attempting to grant RBAC permissions not currently held" in grab.stderr, grab.stderr
    assert alice("auth", "can-i", "delete", "pods", "-n", ns, check=False).stdout.strip() == "no"

    # The admin's printer columns: the role a binding names, and its subjects wide.
    wide = admin("get", "rolebindings", "-n", ns, "-o", "wide").stdout
    assert any(line.split()[:2] == ["bob-reads", "Role/pod-reader"] and "bob" in line for line in wide.splitlines()), \
        wide


def test_a_labelled_cluster_role_aggregates_into_view(kubectls: tuple[str, Kubectl, Kubectl]) -> None:
    version, admin, _ = kubectls
    name = f"widgets-viewer-{version}"
    admin("apply", "-f", "-", stdin=yaml.safe_dump({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": [f"widgets-{version}"], "verbs": ["get"]}]}))

    def aggregated(role: str) -> bool:
        rules = json.loads(admin("get", "clusterrole", role, "-o", "json").stdout).get("rules") or []
        return any(f"widgets-{version}" in (r.get("resources") or []) for r in rules)

    # view aggregates it, and edit (which aggregates view) and admin (which aggregates edit) follow.
    for role in ("view", "edit", "admin"):
        wait_until(lambda role=role: aggregated(role), timeout=10, message=f"{name} aggregated into {role}")
    admin("delete", "clusterrole", name)
    wait_until(lambda: not aggregated("view"), timeout=10, message=f"{name} dropped from view")
