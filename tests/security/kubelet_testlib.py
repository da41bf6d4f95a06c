"""A kubelet with one pod on it, its logs on disk beside a log that is not the pod's, for the kubelet
API's security tests. No kernel work: the pod's worker is made, not started, on a FakeKernel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from control.client import Client
from control.kubelet.agent import Kubelet, NodeConfig, PodWorker
from netsim.fake import FakeKernel

SECRET = b"apiserver log: not for pods to read\n"
POD_LOG = b"hello from the pod\n"


@dataclass
class KubeletWithPod:
    kubelet: Kubelet
    worker: PodWorker
    secret_log: Path


def kubelet_with_pod(state: Path) -> KubeletWithPod:
    """A kubelet whose root dir is STATE/kubelet/node-a (as `kubesim up` lays it out) with pod
    default/web (container app), and the cluster's STATE/logs/apiserver.log next to it."""
    (state / "logs").mkdir(parents=True, exist_ok=True)
    secret = state / "logs" / "apiserver.log"
    secret.write_bytes(SECRET)
    config = NodeConfig(name="node-a", cluster="sec", address="127.0.0.1", pod_cidr="10.244.1.0/24",
                        state_dir=state / "kubelet" / "node-a")
    kubelet = Kubelet(Client("https://127.0.0.1:1"), config, kernel=FakeKernel())
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default", "uid": "u-1"},
           "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": "pause"}]}}
    worker = PodWorker(kubelet, pod)
    kubelet.workers["u-1"] = worker
    worker.logs_dir().mkdir(parents=True, exist_ok=True)
    (worker.logs_dir() / "app.log").write_bytes(POD_LOG)
    return KubeletWithPod(kubelet, worker, secret)
