"""Deployment controller (with the ReplicaSet controller) against the real apiserver; the test plays
the kubelet by marking every new pod Ready."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from controllers_kit import cluster, eventually, pod_template, pods_of, run, set_pod_status

from control.client import DEPLOYMENTS, EVENTS, REPLICA_SETS, Client, Conflict, NotFound
from control.controllers import compute_hash, equal_ignore_hash, fenceposts, new_rs_new_replicas


@contextlib.asynccontextmanager
async def kubelet(client: Client, namespace: str = "default") -> AsyncIterator[None]:
    """Marks pods Ready with an address soon after they appear."""
    counter = iter(range(10, 250))

    async def loop() -> None:
        while True:
            for pod in await pods_of(client, namespace):
                if not pod.get("status", {}).get("podIP"):
                    with contextlib.suppress(Conflict, NotFound):
                        await set_pod_status(client, pod, ip=f"10.244.1.{next(counter)}")
            await asyncio.sleep(0.05)

    task = asyncio.get_running_loop().create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def deployment(name: str, replicas: int, image: str, strategy: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "strategy": strategy,
                     "template": pod_template(labels, image)}}


async def rolled_out(client: Client, name: str) -> bool:
    """What `kubectl rollout status` checks."""
    d = await client.get(DEPLOYMENTS, name, namespace="default")
    s = d.get("status") or {}
    want = d["spec"]["replicas"]
    progressing: dict[str, Any] = next((c for c in s.get("conditions", []) if c["type"] == "Progressing"), {})
    return (s.get("observedGeneration", 0) >= d["metadata"]["generation"] and s.get("updatedReplicas") == want
            and s.get("replicas") == want and s.get("availableReplicas") == want
            and progressing.get("reason") == "NewReplicaSetAvailable")


def test_rolling_update_honours_surge_and_unavailability(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "replicaset", "deployment") as (_, admin), kubelet(admin):
            strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
            await admin.create(DEPLOYMENTS, deployment("web", 4, "img:v1", strategy), namespace="default")
            await eventually(lambda: rolled_out(admin, "web"), what="first rollout")

            d = await admin.get(DEPLOYMENTS, "web", namespace="default")
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
            conditions = {c["type"]: c for c in d["status"]["conditions"]}
            assert conditions["Available"]["status"] == "True"
            assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
            [rs1] = (await admin.list(REPLICA_SETS, namespace="default"))["items"]
            pod_hash = rs1["metadata"]["labels"]["pod-template-hash"]
            assert rs1["metadata"]["name"] == f"web-{pod_hash}"
            assert rs1["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
            assert rs1["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
            assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
            assert rs1["metadata"]["ownerReferences"][0]["kind"] == "Deployment"

            # Roll to a new image, watching the invariants all along.
            await admin.patch(DEPLOYMENTS, "web", {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "img:v2"}]}}}}, namespace="default")
            seen_progressing = False
            max_total = 0
            while not await rolled_out(admin, "web"):
                rss = (await admin.list(REPLICA_SETS, namespace="default"))["items"]
                total = sum(rs["spec"]["replicas"] for rs in rss)
                max_total = max(max_total, total)
                assert total <= 5, f"maxSurge 25% of 4 = 1 exceeded: {total}"
                available = sum((rs.get("status") or {}).get("availableReplicas", 0) for rs in rss)
                assert available >= 4 or total <= 5  # status can lag; the spec bound is the hard one
                d = await admin.get(DEPLOYMENTS, "web", namespace="default")
                for c in (d.get("status") or {}).get("conditions", []):
                    if c["type"] == "Progressing" and c["reason"] in ("ReplicaSetUpdated", "NewReplicaSetCreated"):
                        seen_progressing = True
                await asyncio.sleep(0.02)
            assert max_total <= 5
            assert seen_progressing

            rss = {rs["metadata"]["name"]: rs for rs in (await admin.list(REPLICA_SETS, namespace="default"))["items"]}
            assert rss[rs1["metadata"]["name"]]["spec"]["replicas"] == 0
            [new_name] = [n for n in rss if n != rs1["metadata"]["name"]]
            assert rss[new_name]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
            d = await admin.get(DEPLOYMENTS, "web", namespace="default")
            assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"

            async def old_pods_gone() -> bool:
                pods = await pods_of(admin, selector="app=web")
                return len(pods) == 4 and all(p["spec"]["containers"][0]["image"] == "img:v2" for p in pods)

            await eventually(old_pods_gone, what="old pods gone")

            events = (await admin.list(EVENTS, namespace="default"))["items"]
            scaling = [e["message"] for e in events if e["reason"] == "ScalingReplicaSet"]
            assert f"Scaled down replica set {rs1['metadata']['name']} to 0 from 1" in scaling
            # The surge first: the new ReplicaSet starts at 1 (4 + 25% rounded up = 5 pods), then the old
            # one goes down by one as each new pod becomes available (maxUnavailable 0).
            assert scaling[1] == f"Scaled up replica set {new_name} to 1", scaling
            assert scaling[2] == f"Scaled down replica set {rs1['metadata']['name']} to 3 from 4", scaling

            # kubectl scale converges.
            await admin.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 2}}, namespace="default")
            await eventually(lambda: rolled_out(admin, "web"), what="scaled to 2")
            assert len(await pods_of(admin, selector="app=web")) == 2
            await admin.patch(DEPLOYMENTS, "web", {"spec": {"replicas": 6}}, namespace="default")
            await eventually(lambda: rolled_out(admin, "web"), what="scaled to 6")
            assert len(await pods_of(admin, selector="app=web")) == 6

    run(main, timeout=50)


def test_recreate_and_revision_history_limit(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "replicaset", "deployment") as (_, admin), kubelet(admin):
            d = deployment("job", 2, "img:1", {"type": "Recreate"})
            d["spec"]["revisionHistoryLimit"] = 1
            await admin.create(DEPLOYMENTS, d, namespace="default")
            await eventually(lambda: rolled_out(admin, "job"), what="first rollout")
            for version in (2, 3):
                await admin.patch(DEPLOYMENTS, "job", {"spec": {"template": {"spec": {"containers": [
                    {"name": "c", "image": f"img:{version}"}]}}}}, namespace="default")
                await eventually(lambda: rolled_out(admin, "job"), what=f"rollout {version}")

            async def history_trimmed() -> bool:
                rss = (await admin.list(REPLICA_SETS, namespace="default"))["items"]
                return len(rss) == 2

            await eventually(history_trimmed, what="only one old ReplicaSet kept")
            pods = await pods_of(admin, selector="app=job")
            assert {p["spec"]["containers"][0]["image"] for p in pods} == {"img:3"}

    run(main, timeout=40)


def test_fenceposts_and_hash() -> None:
    def d(replicas: int, surge: Any, unavailable: Any) -> dict[str, Any]:
        return {"spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate", "rollingUpdate": {
            "maxSurge": surge, "maxUnavailable": unavailable}}}}

    assert fenceposts(d(10, "25%", "25%")) == (3, 2)  # surge rounds up, unavailable down
    assert fenceposts(d(1, "0%", "25%")) == (0, 1)  # both zero: unavailable becomes 1
    assert fenceposts(d(4, 2, 0)) == (2, 0)
    rs_new = {"spec": {"replicas": 0}}
    rs_old = {"spec": {"replicas": 10}}
    assert new_rs_new_replicas(d(10, "25%", "25%"), [rs_old, rs_new], rs_new) == 3
    template = {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    h = compute_hash(template, None)
    assert h == compute_hash(template, None) and h != compute_hash(template, 1)
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789")
    hashed = {"metadata": {"labels": {"app": "x", "pod-template-hash": h}}, "spec": template["spec"]}
    assert equal_ignore_hash(template, hashed)


def test_rolling_update_without_surge_scales_old_down_first(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "replicaset", "deployment") as (_, admin), kubelet(admin):
            strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "40%"}}
            await admin.create(DEPLOYMENTS, deployment("api", 3, "img:v1", strategy), namespace="default")
            await eventually(lambda: rolled_out(admin, "api"), what="first rollout")
            await admin.patch(DEPLOYMENTS, "api", {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "img:v2"}]}}}}, namespace="default")
            while not await rolled_out(admin, "api"):
                rss = (await admin.list(REPLICA_SETS, namespace="default"))["items"]
                total = sum(rs["spec"]["replicas"] for rs in rss)
                assert total <= 3, f"maxSurge 0 exceeded: {total}"
                await asyncio.sleep(0.02)
            # 40% of 3 rounds down to 1: the old ReplicaSet went to 2 before the new one grew.
            events = (await admin.list(EVENTS, namespace="default"))["items"]  # named by time: in order
            scaling = [e["message"] for e in events if e["reason"] == "ScalingReplicaSet"]
            first_down = next(i for i, m in enumerate(scaling) if "to 2 from 3" in m)
            new_name = next(m.split()[4] for m in scaling[first_down:] if m.startswith("Scaled up"))
            assert not any(new_name in m for m in scaling[:first_down]), scaling
            pods = await pods_of(admin, selector="app=api")
            assert len(pods) <= 3

    run(main, timeout=30)
