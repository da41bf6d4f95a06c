"""ReplicaSet / ReplicationController controller against the real apiserver."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controllers_kit import cluster, eventually, pod_template, pods_of, run, set_pod_status

from control.client import EVENTS, PODS, REPLICA_SETS, REPLICATION_CONTROLLERS
from control.controllers import pod_deletion_order


def replica_set(name: str, replicas: int, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": pod_template(labels)}}


def test_replicaset_creates_scales_and_reports_status(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "replicaset") as (_, admin):
            rs = await admin.create(REPLICA_SETS, replica_set("web", 6, {"app": "web"}), namespace="default")

            async def count(n: int) -> bool:
                return len(await pods_of(admin, selector="app=web")) == n

            await eventually(lambda: count(6), what="6 pods")
            pods = await pods_of(admin, selector="app=web")
            for pod in pods:
                assert pod["metadata"]["name"].startswith("web-")
                [ref] = pod["metadata"]["ownerReferences"]
                assert ref == {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                               "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
                assert pod["spec"]["containers"][0]["image"] == "registry.k8s.io/pause:3.9"
            for i, pod in enumerate(pods[:4]):
                await set_pod_status(admin, pod, ip=f"10.244.0.{i + 10}")

            async def status() -> bool:
                s = (await admin.get(REPLICA_SETS, "web", namespace="default")).get("status") or {}
                return (s.get("replicas") == 6 and s.get("readyReplicas") == 4 and s.get("availableReplicas") == 4
                        and s.get("fullyLabeledReplicas") == 6 and s.get("observedGeneration") == 1)

            await eventually(status, what="status 6/4/4")

            # 6 -> 2: the not-ready pods go first.
            await admin.patch(REPLICA_SETS, "web", {"spec": {"replicas": 2}}, namespace="default")
            await eventually(lambda: count(2), what="2 pods")
            remaining = await pods_of(admin, selector="app=web")
            assert all(p["status"].get("podIP") for p in remaining)

            # 2 -> 8.
            await admin.patch(REPLICA_SETS, "web", {"spec": {"replicas": 8}}, namespace="default")
            await eventually(lambda: count(8), what="8 pods")

            async def observed() -> bool:
                s = (await admin.get(REPLICA_SETS, "web", namespace="default")).get("status") or {}
                return s.get("replicas") == 8 and s.get("observedGeneration") == 3 and s.get("readyReplicas") == 2

            await eventually(observed, what="status 8")
            # Stays at 8, no double creation while the informer catches up: a new generation makes the
            # controller sync again, and its status for that generation counts the pods it then saw.
            await admin.patch(REPLICA_SETS, "web", {"spec": {"minReadySeconds": 0}}, namespace="default")

            async def resynced() -> bool:
                s = (await admin.get(REPLICA_SETS, "web", namespace="default")).get("status") or {}
                return s.get("observedGeneration") == 4

            await eventually(resynced, what="the controller's sync of generation 4")
            status = (await admin.get(REPLICA_SETS, "web", namespace="default"))["status"]
            assert status["replicas"] == 8
            assert len(await pods_of(admin, selector="app=web")) == 8

            events = (await admin.list(EVENTS, namespace="default"))["items"]
            reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "web"}
            assert {"SuccessfulCreate", "SuccessfulDelete"} <= reasons
            created = next(e for e in events if e["reason"] == "SuccessfulCreate")
            assert created["involvedObject"]["kind"] == "ReplicaSet"
            assert created["source"]["component"] == "replicaset-controller"
            assert created["message"].startswith("Created pod: web-")

            # A deleted pod is replaced.
            victim = (await pods_of(admin, selector="app=web"))[0]
            await admin.delete(PODS, victim["metadata"]["name"], namespace="default")
            await eventually(lambda: count(8), what="replacement")
            names = {p["metadata"]["name"] for p in await pods_of(admin, selector="app=web")}
            assert victim["metadata"]["name"] not in names

    run(main)


def test_replicaset_adopts_orphans_and_releases_relabelled_pods(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "replicaset") as (_, admin):
            for i in range(2):
                await admin.create(PODS, {"metadata": {"name": f"orphan-{i}", "labels": {"app": "db"}},
                                          "spec": pod_template({})["spec"]}, namespace="default")
            rs = await admin.create(REPLICA_SETS, replica_set("db", 3, {"app": "db"}), namespace="default")

            async def adopted() -> bool:
                pods = await pods_of(admin, selector="app=db")
                return len(pods) == 3 and all(
                    p["metadata"].get("ownerReferences", [{}])[0].get("uid") == rs["metadata"]["uid"] for p in pods)

            await eventually(adopted, what="2 adopted + 1 created")
            names = {p["metadata"]["name"] for p in await pods_of(admin, selector="app=db")}
            assert {"orphan-0", "orphan-1"} <= names

            # Relabel one: it is released and replaced.
            await admin.patch(PODS, "orphan-0", {"metadata": {"labels": {"app": "other"}}}, namespace="default")

            async def released() -> bool:
                pod = await admin.get(PODS, "orphan-0", namespace="default")
                return not pod["metadata"].get("ownerReferences") and len(await pods_of(admin, selector="app=db")) == 3

            await eventually(released, what="release and replacement")

    run(main)


def test_replication_controller_uses_map_selector(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "replicationcontroller") as (_, admin):
            await admin.create(REPLICATION_CONTROLLERS, {
                "metadata": {"name": "legacy"},
                "spec": {"replicas": 3, "selector": {"app": "legacy"}, "template": pod_template({"app": "legacy"})},
            }, namespace="default")

            async def three() -> bool:
                pods = await pods_of(admin, selector="app=legacy")
                return len(pods) == 3 and all(
                    p["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController" for p in pods)

            await eventually(three, what="3 rc pods")

            async def status() -> bool:
                rc = await admin.get(REPLICATION_CONTROLLERS, "legacy", namespace="default")
                return (rc.get("status") or {}).get("replicas") == 3

            await eventually(status, what="rc status")

    run(main)


def pod(name: str, *, node: str = "", phase: str = "Running", ready: bool = False,
        created: str = "2026-01-01T00:00:00Z",
        ready_at: str = "2026-01-01T00:00:00Z", restarts: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"nodeName": node} if node else {},
            "status": {"phase": phase,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": ready_at}],
                       "containerStatuses": [{"restartCount": restarts}]}}


def test_pod_deletion_order_follows_upstream_ranking() -> None:
    pods = [
        pod("ready-old", node="n1", ready=True, ready_at="2026-01-01T00:00:00Z"),
        pod("ready-new", node="n2", ready=True, ready_at="2026-01-02T00:00:00Z"),
        pod("running-notready", node="n1"),
        pod("pending", node="n1", phase="Pending"),
        pod("unknown", node="n1", phase="Unknown"),
        pod("unassigned", phase="Pending"),
        pod("restarty", node="n2", restarts=5),
    ]
    order = [p["metadata"]["name"] for p in pod_deletion_order(pods, [])]
    assert order[:3] == ["unassigned", "pending", "unknown"]
    assert order.index("restarty") < order.index("running-notready")
    assert order[-2:] == ["ready-new", "ready-old"]
    # More related pods on a node: deleted first.
    a, b = pod("a", node="crowded", ready=True), pod("b", node="empty", ready=True)
    related = [a, pod("x", node="crowded"), pod("y", node="crowded"), b]
    assert [p["metadata"]["name"] for p in pod_deletion_order([b, a], related)] == ["a", "b"]
