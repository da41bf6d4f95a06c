"""Each pod a place, on a whole cluster (topologies/two-node.yaml): a process container and an exec into
a pod see the pod's hostname, its kubelet-managed /etc/hosts and /etc/resolv.conf (the cluster DNS),
not the machine's, run as their securityContext's user with their command and args, and cannot read
kubesim's state directory. Names resolve from inside a pod through the cluster DNS with nothing but the
pod's own resolv.conf."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from control.kubelet.logs import read_container_log
from kubesim.testing import Cluster
from netsim import namespaces
from tests.conftest import require_tool
from tests.waiting import eventually, wait_until

REPO = Path(__file__).resolve().parents[2]
NAME = "places"
DNS_IP = "10.96.0.10"
SEARCH = "search default.svc.cluster.local svc.cluster.local cluster.local"


def busybox(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script + "; exec sleep 3600"], **extra}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for tool in ("getent", "nslookup", "dig"):
        require_tool(tool, install="apt-get install dnsutils")
    root = tmp_path_factory.mktemp("state")
    c = Cluster.up(REPO / "topologies" / "two-node.yaml", name=NAME, root=root)
    try:
        state = c.state.dir
        c.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "places"}, "spec": {
            "nodeName": "worker-1",
            "securityContext": {"runAsGroup": 3000},
            "containers": [
                busybox("look", f"hostname; cat /etc/hostname; cat /etc/resolv.conf; "
                        f"cat {state}/kubeconfig >/dev/null 2>&1 && echo READ-STATE || echo STATE-HIDDEN; "
                        f"ls -A {root} | wc -l; id -u"),
                busybox("user", "echo uid=$(id -u) gid=$(id -g) pwd=$(pwd) greeting=$(GREETING)",
                        securityContext={"runAsUser": 1000}, workingDir="/tmp",
                        env=[{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                             {"name": "GREETING", "value": "hello-$(POD)"}]),
                # args after command; args alone replace the image's CMD (busybox has no ENTRYPOINT)
                {"name": "args", "image": "busybox", "command": ["sh", "-c"],
                 "args": ["echo args=$0,$1; exec sleep 3600", "first", "second"]},
                {"name": "argsonly", "image": "busybox", "args": ["sh", "-c", "echo only=$0; exec sleep 3600", "x"]},
            ]}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "named"}, "spec": {
                "nodeName": "worker-2", "hostname": "custom", "subdomain": "sub",
                "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["legacy.example", "legacy"]}],
                "containers": [busybox("c", "true")]}})
        c.wait_ready(count=2)
        yield c
    finally:
        c.down()
    leftover = [n for n in os.listdir(namespaces.PIN_DIR) if NAME in n] if os.path.isdir(namespaces.PIN_DIR) else []
    assert leftover == [], f"pod namespaces left pinned after down: {leftover}"


def log_of(cluster: Cluster, pod: str, container: str) -> str:
    """The container's log, once its script has printed its last line (the file kubectl logs reads)."""
    uid = cluster.get("pod", pod)["metadata"]["uid"]
    node = cluster.get("pod", pod)["spec"]["nodeName"]
    pod_dir = cluster.state.dir / "kubelet" / node / "pods" / f"default_{pod}_{uid}"

    def complete() -> str | None:
        # the runtime stores lines in CRI's log format; the kubelet's reader gives back what was written
        text = read_container_log(pod_dir, container, None).decode()
        return text if text.endswith("\n") and text.count("\n") >= 1 else None

    text: str = eventually(complete, timeout=30, interval=0.2, message=f"the log of {pod}/{container}")
    return text


def in_pod(cluster: Cluster, pod: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """ARGV run as `kubectl exec` runs it: inside all of the pod's namespaces."""
    line = namespaces.command_in(cluster.namespace_of(pod), list(argv), uts=True, mnt=True)
    return subprocess.run(line, capture_output=True, text=True, timeout=30, check=False)


def test_a_process_container_sees_its_pod_not_the_machine(cluster: Cluster) -> None:
    def printed() -> list[str] | None:
        lines = log_of(cluster, "places", "look").splitlines()
        return lines if len(lines) >= 8 else None

    lines: list[str] = eventually(printed, timeout=30, interval=0.2, message="the look container's output")
    assert lines[0] == "places", "hostname: the pod's name"
    assert lines[1] == "places", "/etc/hostname"
    assert lines[2].startswith(SEARCH)  # then the node's own searches, if its resolv.conf has any
    assert lines[3] == f"nameserver {DNS_IP}"
    assert lines[4] == "options ndots:5"
    assert lines[5] == "STATE-HIDDEN"
    assert lines[6] == "0", "the state root is an empty directory in the pod"
    assert lines[7] == "0", "without a securityContext the container runs as root"


def test_run_as_user_working_dir_and_env_of_a_process_container(cluster: Cluster) -> None:
    assert log_of(cluster, "places", "user").splitlines()[0] == "uid=1000 gid=3000 pwd=/tmp greeting=hello-places"


def test_command_and_args_of_a_process_container(cluster: Cluster) -> None:
    assert log_of(cluster, "places", "args").splitlines()[0] == "args=first,second"
    assert log_of(cluster, "places", "argsonly").splitlines()[0] == "only=x"


def test_exec_into_a_pod_sees_its_hostname_hosts_file_and_aliases(cluster: Cluster) -> None:
    pod = cluster.get("pod", "named")
    ip = pod["status"]["podIP"]
    assert in_pod(cluster, "named", "hostname").stdout == "custom\n"
    assert in_pod(cluster, "named", "cat", "/etc/hostname").stdout == "custom\n"
    hosts = in_pod(cluster, "named", "cat", "/etc/hosts").stdout
    assert hosts.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert f"{ip}\tcustom.sub.default.svc.cluster.local\tcustom\n" in hosts
    assert hosts.endswith("# Entries added by HostAliases.\n10.1.2.3\tlegacy.example\tlegacy\n")
    assert in_pod(cluster, "named", "getent", "hosts", "legacy").stdout.split() == ["10.1.2.3", "legacy.example",
                                                                                 "legacy"]
    # the machine's files are untouched
    assert "Kubernetes-managed" not in Path("/etc/hosts").read_text()
    assert os.uname().nodename != "custom"


def _resolves(cluster: Cluster, *argv: str) -> str | None:
    done = in_pod(cluster, "places", *argv)
    return done.stdout if done.returncode == 0 else None


def test_names_resolve_from_a_pod_through_the_cluster_dns_with_only_its_resolv_conf(cluster: Cluster) -> None:
    # No server given: each tool reads the pod's /etc/resolv.conf, search path and ndots included.
    out = eventually(lambda: _resolves(cluster, "getent", "hosts", "kubernetes.default"), timeout=30, interval=0.5,
                     message="getent hosts kubernetes.default in the pod")
    assert out.split() == ["10.96.0.1", "kubernetes.default.svc.cluster.local"]
    out = eventually(lambda: _resolves(cluster, "nslookup", "kubernetes.default"), timeout=30, interval=0.5,
                     message="nslookup kubernetes.default in the pod")
    assert f"Server:\t\t{DNS_IP}" in out and "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1" in out
    out = eventually(lambda: _resolves(cluster, "dig", "+search", "+short", "kubernetes.default"), timeout=30,
                     interval=0.5, message="dig +search kubernetes.default in the pod")
    assert out == "10.96.0.1\n"


def test_an_exec_cannot_read_the_state_directory(cluster: Cluster) -> None:
    kubeconfig = cluster.kubeconfig
    assert kubeconfig.is_file()
    done = in_pod(cluster, "places", "cat", str(kubeconfig))
    assert done.returncode != 0 and "token" not in done.stdout
    assert "No such file" in done.stderr


def test_a_deleted_pod_takes_its_namespaces_with_it(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "brief"}, "spec": {
        "nodeName": "worker-1", "terminationGracePeriodSeconds": 0, "containers": [busybox("c", "true")]}})
    brief = eventually(lambda: _ready_pod(cluster, "brief"), timeout=30, interval=0.2, message="brief Ready")
    netns = cluster.namespace_of("brief")
    pins = [namespaces.pin_of(netns, kind) for kind in namespaces.POD_NAMESPACES]
    assert all(os.path.exists(pin) for pin in pins)
    assert brief["metadata"]["name"] == "brief"
    cluster.delete("pod", "brief")
    wait_until(lambda: not any(os.path.lexists(p) for p in [*pins, namespaces.path_of(netns)]), timeout=30,
               interval=0.2, message="brief's network, UTS and mount namespaces unpinned")


def _ready_pod(cluster: Cluster, name: str) -> dict[str, Any] | None:
    pod = cluster.get("pod", name)
    conditions = (pod.get("status") or {}).get("conditions") or []
    return pod if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None
