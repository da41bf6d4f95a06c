"""Defect 6 (part): a node takes no more pods than its status.allocatable.pods (the kubelet's
--max-pods, 110 by default), with upstream's NodeResourcesFit reason "Too many pods". The filter was
already there; this pins it down against the node object the kubelet itself reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from control.client import Client
from control.kubelet.agent import Kubelet, NodeConfig
from control.scheduler import Code, NodeInfo, NodeResourcesFit, PodInfo


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": name},
            "spec": {"containers": [{"name": "c", "image": "pause"}]}, "status": {"phase": "Pending"}}


def node_with_pods(tmp_path: Path, count: int, **config: Any) -> NodeInfo:
    kubelet = Kubelet(Client("https://127.0.0.1:1"), NodeConfig(name="n", cluster="sec", address="127.0.0.1",
                                                                 pod_cidr="10.244.1.0/24", state_dir=tmp_path,
                                                                 **config))
    info = NodeInfo(kubelet.node_object())
    for i in range(count):
        info.add_pod(PodInfo.of(pod(f"p{i}")))
    return info


def test_the_kubelet_reports_110_pods_by_default_and_the_111th_does_not_fit(tmp_path: Path) -> None:
    fit = NodeResourcesFit()
    full = node_with_pods(tmp_path, 110)
    assert full.obj["status"]["allocatable"]["pods"] == "110"
    status = fit.filter(PodInfo.of(pod("one-more")), full, None)
    assert status is not None
    assert (status.code, status.reasons) == (Code.UNSCHEDULABLE, ("Too many pods",))
    assert fit.filter(PodInfo.of(pod("last")), node_with_pods(tmp_path, 109), None) is None


def test_max_pods_sets_the_limit(tmp_path: Path) -> None:
    status = NodeResourcesFit().filter(PodInfo.of(pod("third")), node_with_pods(tmp_path, 2, pods=2), None)
    assert status is not None and status.reasons == ("Too many pods",)
