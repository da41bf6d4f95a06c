"""The node runtime (control.runtime, containerd's role) on one live cluster: a kubelet killed with
SIGKILL leaves its pods serving (a client pod's Service requests at 10/s, none failing until the node
lifecycle controller calls the node NotReady); started again it adopts them: the same sandboxes, the
same addresses, no container restarted, no namespace left over; a `stdin: true` container, whose
stdin and streams are the runtime's, is attached to before and after (kubectl 1.27 over SPDY, 1.33
over WebSocket) and exec'd in. A runtime killed with SIGKILL takes
the built-in servers with it and leaves the sandboxes: started again, the kubelet restarts the
containers in the same namespaces, at the same addresses."""

from __future__ import annotations

import calendar
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesim.testing import Cluster
from netsim import names
from tests.conftest import REPO, root_snapshot
from tests.e2e.test_exec import TRANSPORTS, Exec
from tests.waiting import eventually, wait_until

NAME = "noderuntime"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
SELECTOR = "app=web"
CLIENT = "default/curl-client"  # a pod on worker-2 (the topology's "client" is an external host)


class Lab:
    def __init__(self, cluster: Cluster, root: Path):
        self.cluster = cluster
        self.env = {**os.environ, "KUBESIM_STATE_DIR": str(root)}
        self.kube = Exec(root, NAME)  # kubectl of each version, with the cluster's admin kubeconfig
        self.kube.kubeconfig = str(cluster.kubeconfig)

    def kubesim(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "kubesim", *args, "--name", NAME], capture_output=True,
                              text=True, env=self.env, check=False, cwd=REPO, timeout=120)
        assert done.returncode == 0, f"kubesim {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        return done.stdout

    def pid(self, role: str) -> int:
        return next(p.pid for p in self.cluster.state.processes() if p.role == role)

    def ready(self, node: str) -> str:
        return self.ready_condition(node).get("status", "none")

    def ready_condition(self, node: str) -> dict[str, Any]:
        conditions = self.cluster.get("node", node)["status"].get("conditions") or []
        return next((c for c in conditions if c["type"] == "Ready"), {})

    def web_pods(self) -> dict[str, tuple[str, int]]:
        """name -> (podIP, restartCount) of the web pods."""
        return {p["metadata"]["name"]: (p["status"].get("podIP", ""),
                                        (p["status"].get("containerStatuses") or [{}])[0].get("restartCount", -1))
                for p in self.cluster.objects("pod", SELECTOR)}

    def pod_namespaces(self) -> set[str]:
        prefix = names.pod_ns(NAME, "")
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        return {line.split()[0] for line in listed.splitlines() if line.startswith(prefix)}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("state")
    before = root_snapshot()
    # A short node grace period: the window in which the killed kubelet's pods must keep serving.
    made = Cluster.up(REPO / "topologies" / "two-node.yaml", name=NAME, root=root,
                      timings={"node_grace_period": "8s"})
    try:
        made.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"nodeSelector": {"kubernetes.io/hostname": "worker-1"}, "containers": [{
                            "name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080"],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                               "periodSeconds": 1}}]}}}},
                   {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
                   {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "curl-client"},
                    "spec": {"nodeSelector": {"kubernetes.io/hostname": "worker-2"},
                             "containers": [{"name": "c", "image": "pause"}]}},
                   {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talker"},
                    "spec": {"nodeSelector": {"kubernetes.io/hostname": "worker-1"},
                             "containers": [{"name": "cat", "image": "busybox", "command": ["cat"],
                                             "stdin": True}]}})
        made.wait_ready(count=4, timeout=60)  # the two web pods, the client and the talker
        made.wait_endpoints("web", 2, timeout=60)
        yield Lab(made, root)
    finally:
        made.down()
        assert root_snapshot() == before


def answers(lab: Lab, url: str) -> bool:
    try:
        return lab.cluster.http(CLIENT, url, timeout=2).status == 200
    except OSError:
        return False


def _requests(lab: Lab, url: str, stop: threading.Event, results: list[tuple[float, bool]]) -> None:
    """GET URL from the client pod at 10 per second until STOP, recording (time, answered)."""
    while not stop.is_set():
        results.append((time.time(), answers(lab, url)))
        stop.wait(0.1)


def attach_line(lab: Lab, version: str, text: str) -> None:
    """TEXT written by `kubectl attach -i` into the talker's cat, which prints it to its log."""
    with subprocess.Popen(lab.kube.argv(version, "attach", "-i", "talker", "-c", "cat"), stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as writer:
        try:
            assert writer.stdin is not None
            writer.stdin.write(f"{text}\n".encode())
            writer.stdin.flush()
            wait_until(lambda: text in lab.kube.kubectl("logs", "talker", "-c", "cat").stdout, timeout=20,
                       message=f"{text!r} in cat's log")
        finally:
            writer.kill()


def test_a_killed_kubelets_pods_keep_serving_and_are_adopted_when_it_is_back(lab: Lab) -> None:
    url = f"http://{lab.cluster.service_ip('web')}/hostname"
    wait_until(lambda: answers(lab, url), timeout=30)
    attach_line(lab, "1.33", "before the kubelet restart")
    talker = lab.cluster.get("pod", "talker")
    before = lab.web_pods()
    namespaces_before = lab.pod_namespaces()
    results: list[tuple[float, bool]] = []
    stop = threading.Event()
    sender = threading.Thread(target=_requests, args=(lab, url, stop, results), daemon=True)
    sender.start()
    try:
        time.sleep(1)
        os.kill(lab.pid("kubelet-worker-1"), signal.SIGKILL)
        killed_at = time.time()
        wait_until(lambda: lab.ready("worker-1") != "True", timeout=60, message="worker-1 NotReady")
    finally:
        stop.set()
        sender.join()
    # When the node-lifecycle controller called the node NotReady (the API's time, whole seconds, so
    # rounded down: a request up to a second before it counts as after). From then on the endpoints go
    # not ready and the Service refuses (upstream's behaviour); before it, nothing may fail.
    changed = lab.ready_condition("worker-1")["lastTransitionTime"]
    not_ready_at = calendar.timegm(time.strptime(changed, "%Y-%m-%dT%H:%M:%SZ"))
    window = [ok for at, ok in results if killed_at <= at <= not_ready_at]
    assert len(window) >= 20, f"only {len(window)} requests between the kill and NotReady"
    failed = [at - killed_at for at, ok in results if at <= not_ready_at and not ok]
    assert not failed, f"{len(failed)} requests failed before NotReady, at {failed} s after the kill"

    lab.kubesim("start", "kubelet-worker-1")
    wait_until(lambda: lab.ready("worker-1") == "True", timeout=60, message="worker-1 Ready again")
    lab.cluster.wait_ready(SELECTOR, count=2, timeout=60)
    # Adopted: the same pods at the same addresses, no container started again, no namespace made or left.
    assert lab.web_pods() == before
    assert lab.pod_namespaces() == namespaces_before
    # and no address handed out twice: every pod of the cluster (DNS's included) has its own
    addresses = [p["status"].get("podIP") for p in lab.cluster.objects("pod", namespace=None)
                 if not p["spec"].get("hostNetwork")]
    assert len(addresses) == len(set(addresses)) and None not in addresses, addresses
    log = (lab.cluster.state.dir / "logs" / "kubelet-worker-1.log").read_text()
    assert log.count("adopted running container") >= 3, log[-2000:]
    wait_until(lambda: answers(lab, url), timeout=30)
    # The runtime kept the stdin container (its pipe, its process): attached to again, the same instance.
    for version in TRANSPORTS:
        attach_line(lab, version, f"after the kubelet restart, kubectl {version}")
        done = lab.kube.kubectl("exec", "talker", "--", "sh", "-c", "echo $HOSTNAME; exit 4", version=version,
                                check=False)
        assert (done.stdout, done.returncode) == ("talker\n", 4), done.stderr
    again = lab.cluster.get("pod", "talker")
    assert again["metadata"]["uid"] == talker["metadata"]["uid"]
    assert again["status"]["containerStatuses"][0]["restartCount"] == 0
    assert "before the kubelet restart" in lab.kube.kubectl("logs", "talker").stdout


def test_a_runtime_crash_keeps_the_sandboxes_and_the_kubelet_restarts_the_containers(lab: Lab) -> None:
    lab.cluster.wait_ready(SELECTOR, count=2, timeout=60)
    before: dict[str, Any] = lab.web_pods()
    namespaces_before = lab.pod_namespaces()
    os.kill(lab.pid("runtime-worker-1"), signal.SIGKILL)
    # The sandboxes outlive the runtime process: the network namespaces are pinned, not the process's.
    assert lab.pod_namespaces() == namespaces_before
    lab.kubesim("start", "runtime-worker-1")

    def restarted() -> bool:
        now = lab.web_pods()
        return set(now) == set(before) and all(now[n][1] >= before[n][1] + 1 for n in now)

    eventually(restarted, timeout=90, message="the web containers restarted", describe=lambda: str(lab.web_pods()))
    lab.cluster.wait_ready(SELECTOR, count=2, timeout=60)
    assert {n: ip for n, (ip, _) in lab.web_pods().items()} == {n: ip for n, (ip, _) in before.items()}
    assert lab.pod_namespaces() == namespaces_before
    url = f"http://{lab.cluster.service_ip('web')}/hostname"
    wait_until(lambda: answers(lab, url), timeout=30)
