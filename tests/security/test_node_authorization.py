"""Defect 2: NodeRestriction was bypassed on create, and a kubelet could read every ConfigMap.

Each test drives a kubelet's token (system:node:worker-1) through real HTTP against the in-process
apiserver and checks upstream's Node authorizer + NodeRestriction admission answers."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control.apiserver.errors import APIError
from control.apiserver.nodegraph import NodeGraph, pod_references
from control.apiserver.noderestriction import admission_for
from control.apiserver.resources import BY_KIND
from control.client import LEASES as LEASES_RES
from control.client import NODES as NODES_RES
from control.client import PODS as PODS_RES
from control.client import Informer, NotFound
from tests.harness import IDENTITIES, LocalAPIServer, local_apiserver
from tests.security.authz_kit import (
    CM,
    LEASES,
    MERGE_PATCH,
    NODES,
    PODS,
    Row,
    call,
    check_table,
    lease,
    node,
    pod,
    pods_cached,
    seed,
)

K1 = "kubelet-worker-1"


def run_with_seeded_cluster(tmp_path: Path, rows: list[Row]) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            await seed(api)
            await check_table(api, rows)

    asyncio.run(main())


def test_kubelet_creates_no_pods_bound_elsewhere_unbound_or_its_own(tmp_path: Path) -> None:
    run_with_seeded_cluster(tmp_path, [
        Row(K1, "POST", PODS, 403, pod("to-other", "worker-2")),
        Row(K1, "POST", PODS, 403, pod("unbound-by-node", None)),
        # kubesim has no static pods, so not even a pod bound to the node itself (a mirror pod upstream).
        Row(K1, "POST", PODS, 403, pod("to-self", "worker-1")),
        Row(K1, "POST", "/api/v1/namespaces/default/pods", 403, {**pod("gen", "worker-2"),
                                                                   "metadata": {"generateName": "g-"}}),
        Row("admin", "GET", f"{PODS}/to-other", 404),  # and nothing was half-made
    ])


def test_kubelet_pod_create_refusal_names_the_user_and_the_reason(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            status, body = await call(session, api, K1, "POST", PODS, pod("x", "worker-2"))
            assert status == 403
            assert body["kind"] == "Status" and body["status"] == "Failure" and body["reason"] == "Forbidden"
            assert body["details"] == {"name": "", "kind": "pods"}
            assert body["message"] == (
                'pods is forbidden: User "system:node:worker-1" cannot create resource "pods" in API group "" in '
                'the namespace "kube-system": node \'worker-1\' can not create pods: kubesim has no static pods, '
                "so a node creates no (mirror) pods")

    asyncio.run(main())


def test_kubelet_deletes_and_writes_status_only_of_pods_bound_to_it(tmp_path: Path) -> None:
    status_patch = {"status": {"phase": "Running"}}
    run_with_seeded_cluster(tmp_path, [
        Row(K1, "PATCH", f"{PODS}/on-2/status", 403, status_patch, MERGE_PATCH),
        Row(K1, "PATCH", f"{PODS}/unbound/status", 403, status_patch, MERGE_PATCH),
        Row(K1, "PATCH", f"{PODS}/on-1/status", 200, status_patch, MERGE_PATCH),
        Row(K1, "PUT", f"{PODS}/on-2/status", 403, {**pod("on-2", "worker-2"), **status_patch}),
        Row(K1, "PATCH", f"{PODS}/on-1", 403, {"metadata": {"labels": {"a": "b"}}}, MERGE_PATCH),
        Row(K1, "DELETE", f"{PODS}/on-2", 403),
        Row(K1, "DELETE", f"{PODS}/unbound", 403),
        Row(K1, "DELETE", PODS, 403),  # deletecollection
        Row(K1, "POST", f"{PODS}/on-2/binding", 403, {"target": {"name": "worker-1"}}),
        Row("admin", "GET", f"{PODS}/on-2", 200),
        Row("admin", "GET", f"{PODS}/unbound", 200),
        Row(K1, "DELETE", f"{PODS}/on-1", 200),
    ])


def test_kubelet_pod_delete_refusal_is_upstreams_admission_message(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            await seed(api)
            status, body = await call(session, api, K1, "DELETE", f"{PODS}/on-2")
            assert status == 403
            assert body["message"] == ('pods "on-2" is forbidden: node "worker-1" can only delete pods with '
                                       "spec.nodeName set to itself")

    asyncio.run(main())


def test_kubelet_reads_pods_only_bound_to_it_and_lists_only_with_its_node_selector(tmp_path: Path) -> None:
    run_with_seeded_cluster(tmp_path, [
        Row(K1, "GET", f"{PODS}/on-1", 200),
        Row(K1, "GET", f"{PODS}/on-2", 403),
        Row(K1, "GET", f"{PODS}/unbound", 403),
        Row(K1, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dworker-1", 200),
        Row(K1, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dworker-2", 403),
        Row(K1, "GET", "/api/v1/pods?fieldSelector=spec.nodeName%21%3Dworker-1", 403),
        Row(K1, "GET", "/api/v1/pods", 403),
        Row(K1, "GET", f"{PODS}?watch=1&timeoutSeconds=1&fieldSelector=spec.nodeName%3Dworker-1", 200),
        Row(K1, "GET", f"{PODS}?watch=1&timeoutSeconds=1", 403),
        Row(K1, "GET", f"{PODS}/on-1/log", 403),
    ])


def test_kubelet_writes_only_its_own_node_by_the_objects_name_on_create(tmp_path: Path) -> None:
    own_labels = {"metadata": {"labels": {"kubernetes.io/hostname": "worker-1"}}}
    run_with_seeded_cluster(tmp_path, [
        Row(K1, "POST", NODES, 403, node("worker-3")),
        Row(K1, "POST", NODES, 403, {"apiVersion": "v1", "kind": "Node", "metadata": {"generateName": "worker-1"}}),
        Row(K1, "POST", NODES, 409, node("worker-1")),  # its own name: admitted, and it already exists
        Row(K1, "PATCH", f"{NODES}/worker-2", 403, own_labels, MERGE_PATCH),
        Row(K1, "PATCH", f"{NODES}/worker-2/status", 403, {"status": {"phase": "Running"}}, MERGE_PATCH),
        Row(K1, "PUT", f"{NODES}/worker-2", 403, node("worker-2")),
        Row(K1, "DELETE", f"{NODES}/worker-2", 403),
        Row(K1, "DELETE", f"{NODES}/worker-1", 403),
        Row(K1, "PATCH", f"{NODES}/worker-1", 200, own_labels, MERGE_PATCH),
        Row(K1, "PATCH", f"{NODES}/worker-1/status", 200, {"status": {"phase": "Running"}}, MERGE_PATCH),
        Row(K1, "GET", f"{NODES}/worker-1", 200),
        Row(K1, "GET", f"{NODES}/worker-2", 403),
        Row(K1, "GET", NODES, 403),
        Row(K1, "GET", f"{NODES}?fieldSelector=metadata.name%3Dworker-1", 200),
        Row("admin", "GET", f"{NODES}/worker-3", 404),
    ])


def test_kubelet_may_not_change_its_taints_or_restricted_labels(tmp_path: Path) -> None:
    run_with_seeded_cluster(tmp_path, [
        Row(K1, "PATCH", f"{NODES}/worker-1", 403, {"spec": {"taints": None}}, MERGE_PATCH),
        Row(K1, "PATCH", f"{NODES}/worker-1", 403,
            {"metadata": {"labels": {"node-restriction.kubernetes.io/pci": "yes"}}}, MERGE_PATCH),
        Row(K1, "PATCH", f"{NODES}/worker-1", 403,
            {"metadata": {"labels": {"tier.node-restriction.kubernetes.io/pci": "yes"}}}, MERGE_PATCH),
        Row(K1, "PATCH", f"{NODES}/worker-1", 200, {"metadata": {"labels": {"team": "a"}}}, MERGE_PATCH),
        Row(K1, "PATCH", f"{NODES}/worker-1", 200,
            {"metadata": {"labels": {"node-restriction.kubernetes.io.example/x": "y"}}}, MERGE_PATCH),
        Row("admin", "PATCH", f"{NODES}/worker-1", 200, {"spec": {"taints": None}}, MERGE_PATCH),
    ])


def test_kubelet_registering_a_new_node_keeps_its_taints_but_not_restricted_labels(tmp_path: Path) -> None:
    tainted = node("worker-1", [{"key": "k", "value": "v", "effect": "NoSchedule"}])
    labelled = {**node("worker-1"), "metadata": {"name": "worker-1",
                                                 "labels": {"node-restriction.kubernetes.io/x": "y"}}}

    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            await check_table(api, [Row(K1, "POST", NODES, 403, labelled), Row(K1, "POST", NODES, 201, tainted)])

    asyncio.run(main())


def test_kubelet_writes_only_its_own_lease_by_the_objects_name_on_create(tmp_path: Path) -> None:
    renew = {"spec": {"renewTime": "2026-01-01T00:00:00.000000Z"}}
    run_with_seeded_cluster(tmp_path, [
        Row(K1, "POST", LEASES, 403, lease("worker-2")),
        Row(K1, "POST", LEASES, 403, {**lease(""), "metadata": {"generateName": "worker-1"}}),
        Row(K1, "POST", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", 403, lease("worker-1")),
        Row(K1, "POST", LEASES, 201, lease("worker-1")),
        Row("admin", "POST", LEASES, 201, lease("worker-2")),
        Row(K1, "PATCH", f"{LEASES}/worker-2", 403, renew, MERGE_PATCH),
        Row(K1, "DELETE", f"{LEASES}/worker-2", 403),
        Row(K1, "GET", f"{LEASES}/worker-2", 403),
        Row(K1, "GET", LEASES, 403),
        Row(K1, "PATCH", f"{LEASES}/worker-1", 200, renew, MERGE_PATCH),
        Row(K1, "GET", f"{LEASES}/worker-1", 200),
        Row(K1, "DELETE", f"{LEASES}/worker-1", 200),
    ])


def test_kubelet_cannot_list_or_watch_configmaps(tmp_path: Path) -> None:
    run_with_seeded_cluster(tmp_path, [
        Row(K1, "GET", CM, 403),
        Row(K1, "GET", "/api/v1/configmaps", 403),
        Row(K1, "GET", f"{CM}?watch=1&timeoutSeconds=1", 403),
        Row(K1, "GET", f"{CM}?labelSelector=a%3Db", 403),
        Row(K1, "POST", CM, 403, {"metadata": {"name": "new"}}),
        Row(K1, "PATCH", f"{CM}/cm-volume", 403, {"data": {"k": "w"}}, MERGE_PATCH),
        Row(K1, "DELETE", f"{CM}/cm-volume", 403),
    ])


def test_kubelet_gets_only_configmaps_that_pods_bound_to_it_reference(tmp_path: Path) -> None:
    run_with_seeded_cluster(tmp_path, [
        Row(K1, "GET", f"{CM}/cm-volume", 200),
        Row(K1, "GET", f"{CM}/cm-env", 200),
        Row(K1, "GET", f"{CM}/cm-envfrom", 200),
        Row(K1, "GET", f"{CM}/cm-projected", 200),
        Row(K1, "GET", f"{CM}/cm-other-node", 403),  # referenced by a pod on worker-2
        Row(K1, "GET", f"{CM}/cm-unbound", 403),  # referenced by a pod bound to no node
        Row(K1, "GET", f"{CM}/cm-unreferenced", 403),
        Row(K1, "GET", "/api/v1/namespaces/default/configmaps/cm-volume", 403),  # same name, other namespace
        Row("kubelet-worker-2", "GET", f"{CM}/cm-other-node", 200),
        Row("kubelet-worker-2", "GET", f"{CM}/cm-volume", 403),
        # a watch of the one object by name is how upstream kubelets follow a configmap: allowed as upstream
        Row(K1, "GET", f"{CM}?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dcm-volume", 200),
        Row(K1, "GET", f"{CM}?fieldSelector=metadata.name%3Dcm-other-node", 403),
    ])


def test_kubelet_gets_only_secrets_that_pods_bound_to_it_reference(tmp_path: Path) -> None:
    secrets = "/api/v1/namespaces/kube-system/secrets"

    def with_secrets(name: str, node_name: str, *refs: str) -> dict[str, Any]:
        body = pod(name, node_name)
        spec = body["spec"]
        spec["volumes"] = [{"name": "v", "secret": {"secretName": refs[0]}}]
        spec["containers"][0]["env"] = [{"name": "A", "valueFrom": {"secretKeyRef": {"name": refs[1], "key": "k"}}}]
        spec["containers"][0]["envFrom"] = [{"secretRef": {"name": refs[2]}}]
        return body

    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            await seed(api)
            await check_table(api, [
                *(Row("admin", "POST", secrets, 201, {"metadata": {"name": n}, "stringData": {"k": "v"}})
                  for n in ("s-vol", "s-env", "s-from", "s-other", "s-none")),
                Row("admin", "POST", PODS, 201, with_secrets("sec-1", "worker-1", "s-vol", "s-env", "s-from")),
                Row("admin", "POST", PODS, 201, with_secrets("sec-2", "worker-2", "s-other", "s-other", "s-other")),
            ])
            await pods_cached(api, {"sec-1", "sec-2"})
            await check_table(api, [
                *(Row(K1, "GET", f"{secrets}/{n}", 200) for n in ("s-vol", "s-env", "s-from")),
                Row(K1, "GET", f"{secrets}/s-other", 403),
                Row(K1, "GET", f"{secrets}/s-none", 403),
                Row(K1, "GET", secrets, 403),
                Row(K1, "GET", f"{secrets}?watch=1&timeoutSeconds=1", 403),
                Row(K1, "PATCH", f"{secrets}/s-env", 403, {"stringData": {"k": "w"}}, MERGE_PATCH),
                Row("kubelet-worker-2", "GET", f"{secrets}/s-other", 200),
                Row("kubelet-worker-2", "GET", f"{secrets}/s-env", 403),
            ])

    asyncio.run(main())


def test_configmap_refusal_says_there_is_no_relationship(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api, aiohttp.ClientSession() as session:
            await seed(api)
            status, body = await call(session, api, K1, "GET", f"{CM}/cm-other-node")
            assert status == 403
            assert body["message"] == (
                'configmaps "cm-other-node" is forbidden: User "system:node:worker-1" cannot get resource '
                '"configmaps" in API group "" in the namespace "kube-system": no relationship found between node '
                "'worker-1' and this object")

    asyncio.run(main())


def test_configmap_access_follows_pods_as_they_are_bound_and_deleted(tmp_path: Path) -> None:
    """The graph follows the pods cache: binding a pod grants, deleting it (or its last referencing
    sibling) revokes."""
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            await seed(api)
            await check_table(api, [
                Row(K1, "GET", f"{CM}/cm-unbound", 403),
                Row("scheduler", "POST", f"{PODS}/unbound/binding", 201,
                    {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "unbound"},
                     "target": {"kind": "Node", "name": "worker-1"}}),
                Row("admin", "POST", PODS, 201, pod("sibling", "worker-1", volume_cm="cm-volume")),
            ])
            await until_cached(api, lambda pods: pods.get("unbound", {}).get("spec", {}).get("nodeName") == "worker-1"
                               and "sibling" in pods)
            await check_table(api, [
                Row(K1, "GET", f"{CM}/cm-unbound", 200),
                Row("admin", "DELETE", f"{PODS}/on-1?gracePeriodSeconds=0", 200),
            ])
            await until_cached(api, lambda pods: "on-1" not in pods)
            await check_table(api, [
                Row(K1, "GET", f"{CM}/cm-env", 403),
                Row(K1, "GET", f"{PODS}/on-1", 403),
                Row(K1, "GET", f"{CM}/cm-volume", 200),  # still referenced by the sibling
                Row("admin", "DELETE", f"{PODS}/sibling?gracePeriodSeconds=0", 200),
            ])
            await until_cached(api, lambda pods: "sibling" not in pods)
            await check_table(api, [Row(K1, "GET", f"{CM}/cm-volume", 403)])

    asyncio.run(main())


async def until_cached(api: LocalAPIServer, condition: Callable[[dict[str, dict[str, Any]]], bool]) -> None:
    """Until the pods watch cache (which the graph follows) satisfies CONDITION, given its pods by name."""
    cache = api.registry.caches["pods"]
    while not condition({p["metadata"]["name"]: p for p in cache.objects.values()}):
        await asyncio.sleep(0.01)


def test_eviction_is_admitted_only_for_pods_bound_to_the_node() -> None:
    """kubesim serves no pods/eviction yet (so no HTTP request can reach it); the rule is in place."""
    check = admission_for(IDENTITIES[K1], "create", BY_KIND["Pod"], "eviction")
    assert check is not None
    check({}, {"metadata": {"name": "p"}, "spec": {"nodeName": "worker-1"}})
    refusal = 'node "worker-1" can only evict pods with spec.nodeName set to itself'
    with pytest.raises(APIError, match=re.escape(refusal)):
        check({}, {"metadata": {"name": "p"}, "spec": {"nodeName": "worker-2"}})


def test_the_kubelets_own_calls_still_work(tmp_path: Path) -> None:
    """What control/kubelet/agent.py does, in its order, with its client: register, heartbeat, watch its
    pods, report status, record events, delete a finished pod."""
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin, kubelet = api.client("admin"), api.client(K1)
            await admin.create(PODS_RES, pod("work", "worker-1"), namespace="default")
            await kubelet.create(NODES_RES, node("worker-1"))
            current = await kubelet.get(NODES_RES, "worker-1")
            await kubelet.patch(NODES_RES, "worker-1", {"metadata": {"labels": {
                **(current["metadata"].get("labels") or {}), "kubernetes.io/hostname": "worker-1"}}})
            await kubelet.patch(NODES_RES, "worker-1", {"status": {"phase": "Running"}}, subresource="status")
            try:
                await kubelet.patch(LEASES_RES, "worker-1", {"spec": {"holderIdentity": "worker-1"}},
                                    namespace="kube-node-lease")
            except NotFound:
                await kubelet.create(LEASES_RES, lease("worker-1"), namespace="kube-node-lease")
            await kubelet.patch(LEASES_RES, "worker-1", {"spec": {"holderIdentity": "worker-1"}},
                                namespace="kube-node-lease")
            informer = Informer(kubelet, PODS_RES, field_selector="spec.nodeName=worker-1")
            informer.start()
            try:
                await asyncio.wait_for(informer.wait_synced(), 30)
                seen = informer.store.list()
                assert [p["metadata"]["name"] for p in seen] == ["work"]
            finally:
                await informer.stop()
            work = seen[0]
            await kubelet.patch(PODS_RES, "work", {"status": {"phase": "Running"}}, subresource="status",
                                namespace="default")
            await kubelet.create_event(work, reason="Started", message="started", component="kubelet")
            await admin.delete(PODS_RES, "work", namespace="default")
            await kubelet.delete(PODS_RES, "work", namespace="default", grace_period_seconds=0,
                                 preconditions={"uid": work["metadata"]["uid"]})

    asyncio.run(main())


def test_graph_counts_every_reference_upstream_follows() -> None:
    """PVCs are not served (Secrets are checked over HTTP above), so this part of the graph is checked on the
    graph itself: every place upstream's podutil visitors look, and an edge lasting as long as its last pod."""
    spec = {
        "nodeName": "worker-1",
        "imagePullSecrets": [{"name": "pull"}],
        "volumes": [{"name": "s", "secret": {"secretName": "vol-secret"}},
                    {"name": "c", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-secret"}}},
                    {"name": "claim", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                    {"name": "p", "projected": {"sources": [{"secret": {"name": "proj-secret"}}]}}],
        "initContainers": [{"name": "i", "env": [
            {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret"}}}]}],
        "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "from-secret"}}]}],
    }
    web = {"metadata": {"name": "web", "namespace": "ns"}, "spec": spec}
    assert pod_references(web) == {
        ("secrets", "ns", n) for n in ("pull", "vol-secret", "csi-secret", "proj-secret", "env-secret", "from-secret")
    } | {("persistentvolumeclaims", "ns", "data"), ("persistentvolumeclaims", "ns", "web-scratch"),
         ("serviceaccounts", "ns", "default")}
    graph = NodeGraph()
    graph.set_pod("/registry/pods/ns/web", web)
    graph.set_pod("/registry/pods/ns/twin", {"metadata": {"name": "twin", "namespace": "ns"}, "spec": spec})
    assert graph.has_path("worker-1", "secrets", "ns", "pull") and graph.has_path("worker-1", "pods", "ns", "web")
    assert not graph.has_path("worker-2", "secrets", "ns", "pull")
    graph.remove_pod("/registry/pods/ns/web")
    assert graph.has_path("worker-1", "secrets", "ns", "pull") and not graph.has_path("worker-1", "pods", "ns", "web")
    graph.set_pod("/registry/pods/ns/twin", {"metadata": {"name": "twin", "namespace": "ns"}, "spec": {}})  # unbound
    assert not graph.has_path("worker-1", "secrets", "ns", "pull")
    graph.set_pod("/registry/pods/ns/odd", {"metadata": {"name": "odd", "namespace": "ns"},
                                            "spec": {"nodeName": "worker-1", "volumes": "not a list"}})
    assert graph.has_path("worker-1", "pods", "ns", "odd")


def test_a_kubelet_requests_tokens_only_for_the_service_accounts_of_its_pods() -> None:
    """serviceaccounts/NAME/token: create only, and only for an account a pod bound to the node runs as (the
    server then checks that the token is bound to such a pod, as NodeRestriction does)."""
    from control.apiserver.auth import Attributes, NodeAuthorizer, User

    graph = NodeGraph()
    graph.set_pod("/registry/pods/ns/web", {"metadata": {"name": "web", "namespace": "ns"},
                                            "spec": {"nodeName": "worker-1", "serviceAccountName": "builder"}})
    nodes = NodeAuthorizer(lambda: graph)
    kubelet = User("system:node:worker-1", ("system:nodes",))

    def decide(verb: str, name: str, sub: str | None = "token", node: str = "worker-1") -> bool:
        return nodes.authorize(node, Attributes(kubelet, verb, "", "serviceaccounts", sub, "ns", name)).allowed

    assert decide("create", "builder")
    assert not decide("create", "builder", node="worker-2")
    assert not decide("create", "default"), "no pod of worker-1 runs as ns/default"
    assert not decide("get", "builder", sub=None) and not decide("list", "builder", sub=None)
