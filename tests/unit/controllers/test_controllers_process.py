"""Node IPAM, the work queue, controller selection, and the controller-manager as a process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from controllers_kit import cluster, eventually, pod_template, pods_of, run

import control
from control.client import NODES, REPLICA_SETS
from control.controllers import ShutDown, WorkQueue, parse_duration, select_controllers
from tests.harness import local_apiserver


def test_node_ipam_allocates_free_subnets(tmp_path: Path) -> None:
    async def main() -> None:
        async with cluster(tmp_path, "nodeipam", cluster_cidr="10.244.0.0/16", node_cidr_mask_size=24) as (_, admin):
            await admin.create(NODES, {"metadata": {"name": "pinned"}, "spec": {"podCIDR": "10.244.0.0/24",
                                                                                 "podCIDRs": ["10.244.0.0/24"]}})
            for name in ("a", "b"):
                await admin.create(NODES, {"metadata": {"name": name}})

            async def allocated() -> dict[str, str] | None:
                nodes = {n["metadata"]["name"]: n.get("spec", {}).get("podCIDR")
                         for n in (await admin.list(NODES))["items"]}
                return nodes if all(nodes.values()) else None

            nodes = await eventually(allocated, what="pod CIDRs")
            assert nodes["pinned"] == "10.244.0.0/24"
            assert sorted([nodes["a"], nodes["b"]]) == ["10.244.1.0/24", "10.244.2.0/24"]
            node = await admin.get(NODES, "a")
            assert node["spec"]["podCIDRs"] == [node["spec"]["podCIDR"]]

    run(main)


def test_workqueue_dedups_serialises_and_backs_off() -> None:
    async def main() -> None:
        q = WorkQueue("t", base_delay=0.01, max_delay=0.04)
        q.add("a")
        q.add("a")
        q.add("b")
        assert len(q) == 2
        key = await q.get()
        assert key == "a"
        q.add("a")  # while processing: not handed out again until done
        assert await q.get() == "b"
        assert len(q) == 0
        q.done("a")
        assert await q.get() == "a"
        q.done("a")
        q.done("b")
        q.add_rate_limited("c")
        q.add_rate_limited("c")
        assert q.num_requeues("c") == 2
        assert await asyncio.wait_for(q.get(), 1) == "c"
        q.forget("c")
        assert q.num_requeues("c") == 0
        q.add_after("d", 0.02)
        assert len(q) == 0
        assert await asyncio.wait_for(q.get(), 1) == "d"
        q.shut_down()
        with pytest.raises(ShutDown):
            await q.get()

    asyncio.run(main())


def test_controller_selection_and_durations() -> None:
    known = ["replicaset", "deployment", "nodeipam"]
    assert select_controllers(["*"], known) == known
    assert select_controllers(["*,-nodeipam"], known) == ["replicaset", "deployment"]
    assert select_controllers(["deployment", "replicaset"], known) == ["replicaset", "deployment"]
    with pytest.raises(ValueError, match="unknown controllers bogus"):
        select_controllers(["bogus"], known)
    assert parse_duration("40s") == 40
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ValueError):
        parse_duration("forever")


def test_the_process_runs_controllers_and_stops_on_sigterm(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            kubeconfig = tmp_path / "kubeconfig"
            kubeconfig.write_text(
                "apiVersion: v1\nkind: Config\ncurrent-context: cm\n"
                f"clusters: [{{name: c, cluster: {{server: '{api.url}'}}}}]\n"
                "users: [{name: u, user: {token: token-controller-manager}}]\n"
                "contexts: [{name: cm, context: {cluster: c, user: u}}]\n")
            repo = str(Path(control.__file__).resolve().parent.parent)
            env = {**os.environ, "PYTHONPATH": repo}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "control.controllers", "--kubeconfig", str(kubeconfig),
                "--cluster-cidr", "10.244.0.0/16", "--lb-pool", "172.18.255.200-172.18.255.250",
                "--node-monitor-grace-period", "40s", "--controllers", "*", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            admin = api.client("admin")
            try:
                await admin.create(REPLICA_SETS, {"metadata": {"name": "web"}, "spec": {
                    "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": pod_template({"app": "web"})}}, namespace="default")

                async def two() -> bool:
                    return len(await pods_of(admin, selector="app=web")) == 2

                await eventually(two, timeout=15, what="pods from the process")
            finally:
                proc.send_signal(signal.SIGTERM)
                _, stderr = await asyncio.wait_for(proc.communicate(), 10)
            assert proc.returncode == 0, stderr.decode()
            text = stderr.decode()
            assert "created pod web-" in text
            assert "controller-manager stopping" in text

    run(main, timeout=40)
