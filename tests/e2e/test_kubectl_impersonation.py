"""Impersonation with unmodified kubectl (the oldest and newest versions we support, `--as` / `--as-group`)
against the real apiserver process over HTTPS: the admin acting as jane holds what jane's RoleBinding grants,
a user without `impersonate` is refused in upstream's words, one granted `impersonate` on the user jane may act
as jane and as nobody else, and a ServiceAccount impersonated shows its groups in `kubectl auth whoami`.

Users come from the apiserver's static token file: the admin (system:masters), "bob" (no rights) and "carol"
(granted `impersonate` on users named jane by the test).
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
         "bob": ("e2e-bob-token", "bob", ()),
         "carol": ("e2e-carol-token", "carol", ())}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """A real `python -m control.apiserver` on a free loopback port; yields a kubeconfig per user."""
    with users_apiserver(tmp_path_factory.mktemp("impersonate"), USERS) as kubeconfigs:
        yield kubeconfigs


@pytest.fixture(params=VERSIONS)
def kubectls(request: pytest.FixtureRequest, cluster: dict[str, Path], tmp_path: Path) -> dict[str, Kubectl]:
    binary = require_kubectl(request.param)
    runners: dict[str, Kubectl] = {}
    for who in USERS:
        (tmp_path / who).mkdir()
        runners[who] = kubectl_runner(binary, cluster[who], tmp_path / who)
    runners["version"] = lambda: request.param.replace(".", "-")  # type: ignore[assignment,return-value]
    return runners


def test_admin_as_jane_holds_what_janes_binding_grants(kubectls: dict[str, Kubectl]) -> None:
    admin, version = kubectls["admin"], kubectls["version"]()
    team = f"team-{version}"
    admin("apply", "-f", "-", stdin=yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace",
                                                     "metadata": {"name": team}}))
    refused = admin("get", "pods", "-n", team, "--as=jane", check=False)
    assert refused.returncode != 0 and (
        f'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "{team}"'
        in refused.stderr), refused.stderr
    admin("create", "role", "pod-reader", "-n", team, "--verb=get,list,watch", "--resource=pods")
    admin("create", "rolebinding", "jane-reads", "-n", team, "--role=pod-reader", "--user=jane")
    wait_until(lambda: admin("get", "pods", "-n", team, "--as=jane", check=False).returncode == 0, timeout=10,
               message="jane's binding in effect for the admin acting as jane")
    assert admin("auth", "can-i", "list", "pods", "-n", team, "--as=jane").stdout.strip() == "yes"
    assert admin("auth", "can-i", "delete", "pods", "-n", team, "--as=jane", check=False).stdout.strip() == "no"
    listed = admin("auth", "can-i", "--list", "-n", team, "--as=jane").stdout
    pods = [line for line in listed.splitlines() if line.startswith("pods ")]
    assert pods and "[get list watch]" in pods[0], listed
    assert "*.*" not in listed, listed  # not the admin's own rules
    whoami = admin("auth", "whoami", "--as=jane", "--as-group=devs", "-o", "json").stdout
    assert json.loads(whoami)["status"]["userInfo"] == {"username": "jane",
                                                        "groups": ["devs", "system:authenticated"]}, whoami


def test_impersonate_is_refused_without_the_right(kubectls: dict[str, Kubectl]) -> None:
    bob = kubectls["bob"]
    # kubectl's discovery reads a refusal's body as raw bytes and says only "Forbidden: unknown"; a typed request
    # (the SelfSubjectAccessReview of `auth can-i`) shows the Status message
    refused = bob("get", "namespaces", "--as=jane", check=False)
    assert refused.returncode != 0 and "Error from server (Forbidden)" in refused.stderr, refused.stderr
    refused = bob("auth", "can-i", "list", "pods", "--as=jane", check=False)
    assert refused.returncode != 0
    assert ('Error from server (Forbidden): users "jane" is forbidden: User "bob" cannot impersonate resource '
            '"users" in API group "" at the cluster scope') in refused.stderr, refused.stderr


def test_impersonate_on_one_user_only(kubectls: dict[str, Kubectl]) -> None:
    admin, carol, version = kubectls["admin"], kubectls["carol"], kubectls["version"]()
    name = f"impersonate-jane-{version}"
    admin("create", "clusterrole", name, "--verb=impersonate", "--resource=users", "--resource-name=jane")
    admin("create", "clusterrolebinding", name, f"--clusterrole={name}", "--user=carol")
    wait_until(lambda: carol("auth", "whoami", "--as=jane", check=False).returncode == 0, timeout=10,
               message="carol's impersonate grant in effect")
    whoami = json.loads(carol("auth", "whoami", "--as=jane", "-o", "json").stdout)["status"]["userInfo"]
    assert whoami == {"username": "jane", "groups": ["system:authenticated"]}, whoami
    refused = carol("auth", "can-i", "list", "pods", "--as=dave", check=False)
    assert refused.returncode != 0 and ('users "dave" is forbidden: User "carol" cannot impersonate resource '
                                        '"users" in API group "" at the cluster scope') in refused.stderr
    # a group is one more thing to be allowed to act as
    refused = carol("auth", "can-i", "list", "pods", "--as=jane", "--as-group=devs", check=False)
    assert refused.returncode != 0 and 'groups "devs" is forbidden: User "carol"' in refused.stderr, refused.stderr


def test_a_service_account_impersonated_has_its_groups(kubectls: dict[str, Kubectl]) -> None:
    whoami = kubectls["admin"]("auth", "whoami", "--as=system:serviceaccount:default:x", "-o", "json").stdout
    assert json.loads(whoami)["status"]["userInfo"] == {
        "username": "system:serviceaccount:default:x",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]}, whoami
