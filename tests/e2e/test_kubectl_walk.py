"""kubectl (the oldest and newest versions we support) walks everything the real apiserver process serves
(API-only: no cluster): one object of each kind issue 12 names, and of the other kinds served, made from
one multi-document manifest; then for every resource `kubectl api-resources` lists, `kubectl explain`
names the same kind and version, `kubectl get -o wide` answers without error and its rows are the objects
stored, `kubectl describe` reads each object made; `kubectl delete -f` removes them all.

The walk takes what is served from discovery, so a resource added later is walked too without a change
here (its objects, if none are made below, are whatever the server bootstraps)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.test_kubectl_apply import VERSIONS, Kubectl, users_apiserver, versioned_kubectl

USERS = {"admin": ("e2e-admin-token", "kubernetes-admin", ("system:masters",))}
POD_SPEC = {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
TEMPLATE = {"metadata": {"labels": {"app": "walk"}}, "spec": POD_SPEC}
SELECTOR = {"matchLabels": {"app": "walk"}}
RBAC = "rbac.authorization.k8s.io/v1"
ANP = "policy.networking.k8s.io/v1alpha1"


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with users_apiserver(tmp_path_factory.mktemp("walk"), USERS) as kubeconfigs:
        yield kubeconfigs["admin"]


@pytest.fixture(params=VERSIONS)
def kubectl(request: pytest.FixtureRequest, kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return versioned_kubectl(request.param, kubeconfig, tmp_path)


def objects(ns: str, suffix: str) -> list[dict[str, Any]]:
    """One object of every kind served that a user makes (reviews are asked, not stored), as users write them;
    cluster-scoped names carry SUFFIX, so each kubectl version makes its own."""
    def meta(name: str, **more: Any) -> dict[str, Any]:
        return {"name": name, "namespace": ns, **more}

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("settings"), "data": {"mode": "fast"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": meta("creds"), "stringData": {"password": "s3cret"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta("web"),
         "spec": {"type": "NodePort", "selector": {"app": "walk"}, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("robot")},
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta("solo", labels={"app": "solo"}), "spec": POD_SPEC},
        {"apiVersion": "v1", "kind": "PodTemplate", "metadata": meta("stamp"), "template": TEMPLATE},
        {"apiVersion": "v1", "kind": "ReplicationController", "metadata": meta("legacy"),
         "spec": {"replicas": 1, "selector": {"app": "legacy"},
                  "template": {"metadata": {"labels": {"app": "legacy"}}, "spec": POD_SPEC}}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta("manual"),
         "subsets": [{"addresses": [{"ip": "10.244.1.5"}], "ports": [{"port": 8080}]}]},
        {"apiVersion": "v1", "kind": "Event", "metadata": meta("solo.walk"),
         "involvedObject": {"kind": "Pod", "name": "solo", "namespace": ns, "apiVersion": "v1"},
         "reason": "Walked", "message": "kubectl walked here", "type": "Normal",
         "source": {"component": "walker"}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"walk-node-{suffix}"},
         "spec": {"podCIDR": "10.244.9.0/24"}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("web"),
         "spec": {"replicas": 2, "selector": SELECTOR, "template": TEMPLATE}},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta("loose"),
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "loose"}},
                  "template": {"metadata": {"labels": {"app": "loose"}}, "spec": POD_SPEC}}},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("agent"),
         "spec": {"selector": SELECTOR, "template": TEMPLATE}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta("db"),
         "spec": {"serviceName": "web", "replicas": 2, "selector": SELECTOR, "template": TEMPLATE}},
        {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta("agent-1"), "revision": 1,
         "data": {"spec": {"template": TEMPLATE}}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta("once"),
         "spec": {"completions": 3, "parallelism": 2,
                  "template": {"spec": {**POD_SPEC, "restartPolicy": "Never"}}}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta("tick"),
         "spec": {"schedule": "*/1 * * * *",
                  "jobTemplate": {"spec": {"template": {"spec": {**POD_SPEC, "restartPolicy": "Never"}}}}}},
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta("leader"),
         "spec": {"holderIdentity": "walker", "leaseDurationSeconds": 15}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": meta("manual-x1", labels={"kubernetes.io/service-name": "manual"}), "addressType": "IPv4",
         "endpoints": [{"addresses": ["10.244.1.5"]}], "ports": [{"port": 8080, "protocol": "TCP"}]},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("deny-all"),
         "spec": {"podSelector": {}}},
        {"apiVersion": ANP, "kind": "AdminNetworkPolicy", "metadata": {"name": f"deny-walk-{suffix}"},
         "spec": {"priority": 10, "subject": {"namespaces": {"matchLabels": {"ns": ns}}},
                  "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}]}},
        {"apiVersion": RBAC, "kind": "Role", "metadata": meta("reader"),
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]},
        {"apiVersion": RBAC, "kind": "RoleBinding", "metadata": meta("alice-reads"),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]},
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": f"walker-{suffix}"},
         "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]},
        {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": f"walker-{suffix}"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"walker-{suffix}"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]},
    ]


def served(kubectl: Kubectl) -> list[dict[str, str]]:
    """`kubectl api-resources -o wide`'s rows: name, api version, kind and verbs of each resource."""
    lines = kubectl("api-resources", "-o", "wide").stdout.splitlines()
    columns = lines[0].split()
    starts = [lines[0].index(column) for column in columns]
    rows = []
    for line in lines[1:]:
        cells = dict(zip(columns, (line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)),
                         strict=True))
        group = cells["APIVERSION"].rpartition("/")[0]
        rows.append({"resource": f"{cells['NAME']}.{group}" if group else cells["NAME"],
                     "version": cells["APIVERSION"], "kind": cells["KIND"], "verbs": cells["VERBS"]})
    return rows


def names_in(printed: str) -> set[str]:
    """The NAME cells of a multi-resource `kubectl get -o wide` (kind/name), found at the NAME column's offset
    in each table's header: the column need not be the first (events print it last, as a wide column)."""
    found = set()
    for block in printed.split("\n\n"):
        header, *lines = block.strip("\n").splitlines()
        at = re.search(r"(?<!\S)NAME(?!\S)", header)
        assert at, header
        found |= {line[at.start():].split()[0] for line in lines}
    return found


def test_every_served_resource_explained_listed_wide_and_described(kubectl: Kubectl, tmp_path: Path) -> None:
    suffix = kubectl.version.replace(".", "-")  # type: ignore[attr-defined]
    ns = f"walk-{suffix}"
    made = objects(ns, suffix)
    path = tmp_path / "everything.yaml"
    path.write_text(yaml.safe_dump_all(made))
    applied = kubectl("apply", "-f", str(path))
    assert len(applied.stdout.splitlines()) == len(made) and applied.stderr == "", applied

    resources = served(kubectl)
    by_kind = {(r["version"], r["kind"]): r["resource"] for r in resources}
    # every kind made above is served, and under the resource name discovery gives
    assert {(o["apiVersion"], o["kind"]) for o in made} <= set(by_kind), set(by_kind)

    for r in resources:
        explained = kubectl("explain", r["resource"]).stdout
        kind = re.search(r"^KIND:\s+(\S+)", explained, re.MULTILINE)
        version = re.search(r"^VERSION:\s+(\S+)", explained, re.MULTILINE)
        assert kind and version, (r, explained)
        assert (kind.group(1), version.group(1)) == (r["kind"], r["version"].rpartition("/")[2]), (r, explained)

    listable = [r["resource"] for r in resources if "list" in r["verbs"].split(",")]
    # One get of all of them: the rows -o wide prints are the objects -o json gives, for every resource.
    wide = kubectl("get", ",".join(listable), "-n", ns, "-o", "wide")
    assert wide.stderr == "", wide.stderr
    rows = names_in(wide.stdout)
    stored = json.loads(kubectl("get", ",".join(listable), "-n", ns, "-o", "json").stdout)["items"]
    for item in stored:
        group = item["apiVersion"].rpartition("/")[0]
        resource = by_kind[(item["apiVersion"], item["kind"])]
        prefix = item["kind"].lower() + (f".{group}" if group else "")
        assert f"{prefix}/{item['metadata']['name']}" in rows, (item["kind"], item["metadata"]["name"], wide.stdout)
    assert len(rows) == len(stored), wide.stdout
    names = {(o["kind"], o["metadata"]["name"]) for o in made}
    assert names <= {(i["kind"], i["metadata"]["name"]) for i in stored}

    for o in made:
        resource = by_kind[(o["apiVersion"], o["kind"])]
        described = kubectl("describe", resource, o["metadata"]["name"], "-n", ns)
        assert re.search(rf"^Name:\s+{re.escape(o['metadata']['name'])}$", described.stdout, re.MULTILINE), \
            (o["kind"], described.stdout)
        assert described.stderr == "", (o["kind"], described.stderr)

    # --wait=false: with no namespace controller here the namespace never goes (see below)
    deleted = kubectl("delete", "-f", str(path), "--wait=false")
    assert len(deleted.stdout.splitlines()) == len(made), deleted.stdout
    # No namespace controller runs here to empty it and remove its finalizer: it stays Terminating.
    phase = kubectl("get", "namespace", ns, "-o", "jsonpath={.status.phase}").stdout
    assert phase == "Terminating"
    for o in made[1:]:
        gone = kubectl("get", by_kind[(o["apiVersion"], o["kind"])], o["metadata"]["name"], "-n", ns, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, (o["kind"], gone.stdout, gone.stderr)
