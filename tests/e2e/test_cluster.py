"""A whole cluster (topologies/two-node.yaml) driven the way users drive it: kubectl 1.27 and 1.33 with
the cluster's kubeconfig, pods that are real namespaces, and Services load-balancing through the real
kube-proxy rules."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

from netsim import names
from tests import chromium, cluster_report
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
NAME = "e2e"
KUBECTLS = {"1.27": "/usr/lib/google-cloud-sdk/bin/kubectl.1.27", "1.33": "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"}
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"


class Cluster:
    def __init__(self, state: Path):
        self.env = {**os.environ, "KUBESIM_STATE_DIR": str(state)}
        self.kubeconfig = str(state / NAME / "kubeconfig")
        self.logs = state / NAME / "logs"

    def kubesim(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        named = args[0] in ("status", "down", "restart", "stop", "start", "logs")
        argv = [sys.executable, "-m", "kubesim", *args, *(["--name", NAME] if named else [])]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, check=False, cwd=REPO)
        if check and done.returncode != 0:
            raise AssertionError(f"kubesim {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def kubectl(self, *args: str, version: str = "1.33", stdin: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        binary = KUBECTLS.get(version, "kubectl")
        done = subprocess.run([binary, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True,
                              input=stdin, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", kind, name, "-o", "json").stdout)

    def pod_ns(self, pod: str) -> str:
        return names.pod_ns(NAME, self.get("pod", pod)["metadata"]["uid"])

    def wait(self, what: Callable[[], bool], timeout: float = 30, message: str = "",
             pods: tuple[str, ...] = ()) -> None:
        wait_until(what, timeout=timeout, message=message, describe=lambda: self.report(pods))

    def report(self, pods: tuple[str, ...]) -> str:
        """The pods (all, if none named), their kubelets' logs and, for a wait on no pod in particular (a
        Service being programmed...), the kube-proxies' logs: for a wait that timed out."""
        return "\n".join([
            cluster_report.describe_pods(lambda args: self.kubectl(*args, check=False), pods or self.pod_names(),
                                         logs=self.logs, also=() if pods else ("kube-proxy-*.log",)),
            self.reachability(pods)])

    def reachability(self, pods: tuple[str, ...]) -> str:
        """For each named pod with an address: what listens in its namespace, and whether its node reaches
        it (a probe that times out is a packet dropped somewhere, one refused a server not listening)."""
        out = []
        for pod in pods:
            got = self.kubectl("get", "pod", pod, "-o", "json", check=False)
            if got.returncode != 0:
                continue
            obj = json.loads(got.stdout)
            ip, node = obj.get("status", {}).get("podIP"), obj["spec"].get("nodeName")
            if not ip or not node:
                continue
            ns = names.pod_ns(NAME, obj["metadata"]["uid"])
            listening = in_netns(ns, "ss", "-ltn").stdout.strip()
            curl = in_netns(names.node_ns(NAME, node), "curl", "-sS", "--max-time", "2", f"{ip}:8080/healthz")
            neigh = in_netns(names.node_ns(NAME, node), "ip", "neigh", "show", ip).stdout.strip()
            out.append(f"--- {pod} ({ip} on {node}): listening in {ns}:\n{listening}\n"
                       f"curl from the node: rc={curl.returncode} {curl.stdout.strip()} {curl.stderr.strip()}\n"
                       f"neighbour entry on the node: {neigh or '(none)'}")
        return "\n".join(out)

    def pod_names(self) -> tuple[str, ...]:
        listed = self.kubectl("get", "pods", "-o", "name", check=False).stdout.split()
        return tuple(name.removeprefix("pod/") for name in listed)

    def wait_running(self, *pods: str) -> None:
        def ready() -> bool:
            listed = json.loads(self.kubectl("get", "pods", "-o", "json").stdout)["items"]
            phases = {p["metadata"]["name"]: p.get("status", {}) for p in listed}
            return all(any(c.get("type") == "Ready" and c.get("status") == "True"
                           for c in phases.get(p, {}).get("conditions", [])) for p in pods)
        self.wait(ready, message=f"pods {pods} Ready", pods=pods)


def in_netns(ns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = tmp_path_factory.mktemp("state")
    c = Cluster(state)
    c.kubesim("up", str(REPO / "topologies" / "two-node.yaml"), "--name", NAME)
    try:
        yield c
    finally:
        c.kubesim("down", check=False)


def agnhost_pod(name: str, node: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": {"nodeName": node, "containers": [{
                "name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080", "--udp-port=8081"],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}]}}


def slice_for(service: str, pods: list[tuple[str, str]], name: str | None = None) -> dict[str, Any]:
    """A hand-written EndpointSlice (a Service without a selector is legal Kubernetes)."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{service}-manual", "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": node} for ip, node in pods]}


@pytest.mark.parametrize("version", sorted(KUBECTLS))
def test_kubectl_sees_the_cluster(cluster: Cluster, version: str) -> None:
    out = cluster.kubectl("get", "nodes,ns,pods,svc", "-A", "-o", "wide", version=version).stdout
    for node in ("control-plane", "worker-1", "worker-2"):
        assert f"node/{node}" in out
    assert out.count(" Ready ") == 3
    assert "service/kubernetes" in out and "10.96.0.1" in out
    raw = json.loads(cluster.kubectl("get", "--raw", "/api/v1/namespaces/default/services/kubernetes",
                                     version=version).stdout)
    assert raw["spec"]["ports"][0]["port"] == 443


def test_authentication_and_tls(cluster: Cluster) -> None:
    server = yaml.safe_load(Path(cluster.kubeconfig).read_text())["clusters"][0]["cluster"]["server"]
    ca = Path(cluster.kubeconfig).parent / "pki" / "ca.crt"
    context = ssl.create_default_context(cafile=str(ca))
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(f"{server}/api/v1/pods", context=context, timeout=5)
    assert denied.value.code == 401
    denied.value.close()  # an HTTPError holds the response's connection
    tokens = {row.split(",")[1]: row.split(",")[0] for row in (ca.parent / "tokens.csv").read_text().splitlines()}
    request = urllib.request.Request(f"{server}/api/v1/nodes/worker-2", method="PATCH",
                                     data=b'{"metadata":{"labels":{"x":"y"}}}',
                                     headers={"Authorization": f"Bearer {tokens['system:node:worker-1']}",
                                              "Content-Type": "application/merge-patch+json"})
    with pytest.raises(urllib.error.HTTPError) as forbidden:
        urllib.request.urlopen(request, context=context, timeout=5)
    assert forbidden.value.code == 403
    forbidden.value.close()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(server.replace("https://", "http://") + "/api", timeout=5)


def _read_until(stream: IO[str], word: str) -> str:
    """Lines of STREAM up to the first with WORD, or all of them if it ends (--request-timeout bounds it)."""
    seen = ""
    while word not in seen:
        line = stream.readline()
        if not line:
            break
        seen += line
    return seen


def test_watch_streams_changes(cluster: Cluster) -> None:
    # kubectl lists, prints the list, then watches from the list's resourceVersion: once an object that
    # was there before shows, any later change is in the watch, however long the request takes to open.
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "listed-first"}})
    watcher = subprocess.Popen(["kubectl", "--kubeconfig", cluster.kubeconfig, "get", "configmaps", "-w",
                                "--request-timeout=20s"], stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout is not None
        seen = _read_until(watcher.stdout, "listed-first")
        assert "listed-first" in seen, seen
        cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "watched"}})
        seen = _read_until(watcher.stdout, "watched")
        assert "watched" in seen, seen
    finally:
        watcher.kill()
        watcher.wait()
        if watcher.stdout is not None:
            watcher.stdout.close()


def test_pods_are_real_namespaces_with_logs(cluster: Cluster) -> None:
    cluster.apply(agnhost_pod("solo", "worker-1"))
    cluster.wait_running("solo")
    pod = cluster.get("pod", "solo")
    ip = pod["status"]["podIP"]
    assert ip.startswith("10.244.1.")
    addresses = in_netns(cluster.pod_ns("solo"), "ip", "-o", "-4", "addr", "show", "eth0").stdout
    assert f"inet {ip}/24" in addresses
    answer = in_netns(names.node_ns(NAME, "worker-2"), "curl", "-s", "--max-time", "3", f"{ip}:8080/hostname")
    assert answer.stdout == "solo"
    assert "Started HTTP server on port 8080" in cluster.kubectl("logs", "solo").stdout
    cluster.kubectl("delete", "pod", "solo")
    assert not Path(f"/run/netns/{names.pod_ns(NAME, pod['metadata']['uid'])}").exists()


def test_service_load_balances_and_rejects_without_endpoints(cluster: Cluster) -> None:
    cluster.apply(agnhost_pod("lb-a", "worker-1", {"app": "lb"}), agnhost_pod("lb-b", "worker-2", {"app": "lb"}),
                  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lb-client"},
                   "spec": {"nodeName": "worker-2", "containers": [{"name": "c", "image": "registry.k8s.io/pause"}]}},
                  {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
                   "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    cluster.wait_running("lb-a", "lb-b", "lb-client")
    pods = [(cluster.get("pod", p)["status"]["podIP"], node) for p, node in (("lb-a", "worker-1"),
                                                                             ("lb-b", "worker-2"))]
    cluster.apply(slice_for("lb", pods))
    vip = cluster.get("svc", "lb")["spec"]["clusterIP"]
    client = cluster.pod_ns("lb-client")

    def hostnames(count: int) -> Counter[str]:
        seen: Counter[str] = Counter()
        for _ in range(count):
            seen[in_netns(client, "curl", "-s", "--max-time", "2", f"{vip}/hostname").stdout] += 1
        return seen

    cluster.wait(lambda: hostnames(1) != Counter({"": 1}), message="the proxy programs the service")
    seen = hostnames(60)
    assert set(seen) == {"lb-a", "lb-b"}, seen

    cluster.apply(slice_for("lb", []))
    def refused() -> bool:
        # curl 7: the connection was refused (kube-proxy's REJECT answered); a dropped SYN would be
        # curl 28, the --max-time bound: so this tells REJECT from DROP without timing anything.
        done = in_netns(client, "curl", "-s", "--max-time", "5", f"{vip}/hostname")
        return done.returncode == 7
    cluster.wait(refused, timeout=10, message="the connection is refused (REJECT), not dropped")


def test_graph_names_every_node_and_pod(cluster: Cluster, tmp_path: Path) -> None:
    # After the test above: pods with addresses on both workers, CoreDNS in kube-system, Services.
    def listed() -> dict[tuple[str, str], str]:
        items = json.loads(cluster.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
        return {(p["metadata"]["namespace"], p["metadata"]["name"]): p.get("status", {}).get("podIP", "")
                for p in items if not p["metadata"].get("deletionTimestamp")}

    before = listed()
    found = json.loads(cluster.kubesim("graph", "--name", NAME, "--json").stdout)
    mermaid = cluster.kubesim("graph", "--name", NAME).stdout
    page = tmp_path / "cluster.html"
    cluster.kubesim("graph", "--name", NAME, "--html", str(page))
    pods = {k: ip for k, ip in before.items() if listed().get(k) == ip}  # unchanged while the graph was drawn
    assert ("default", "lb-a") in pods and any(ns == "kube-system" for ns, _ in pods), pods
    vertices = found["graph"]["vertices"]
    drawn = {(v["details"][0], v["label"]): v["details"][1] for v in vertices if v["kind"] == "pod"}
    assert {k: drawn.get(k) for k in pods} == {k: ip or "no IP yet" for k, ip in pods.items()}
    assert {v["label"] for v in vertices if v["kind"] == "node"} == {"control-plane", "worker-1", "worker-2"}
    # The kernel holds what the API says: every node's namespace and every listed pod's sandbox.
    assert all(n["present"] for n in found["facts"]["nodes"])
    sandboxed = [p for p in found["facts"]["pods"] if (p["namespace"], p["name"]) in pods and not p["hostNetwork"]]
    assert sandboxed and all(p["sandbox"] for p in sandboxed), sandboxed
    lb = cluster.get("svc", "lb")["spec"]["clusterIP"]
    assert next(v for v in vertices if v["id"] == "service:default/lb")["details"][1] == f"ClusterIP {lb}"
    assert {"service:default/kubernetes", "node:control-plane"} in [
        {e["a"], e["b"]} for e in found["graph"]["edges"] if e["kind"] == "endpoint"]  # the apiserver's node
    dom = chromium.dump_dom(page)
    for name in ["control-plane", "worker-1", "worker-2", *(name for _, name in pods)]:
        assert f'"{name}<br/>' in mermaid, name
        assert f'data-name="{name}"' in dom, name


def test_apiserver_restart_keeps_objects_and_watches_resume(cluster: Cluster) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "durable"}, "data": {"k": "v"}})
    before = cluster.get("configmap", "durable")
    cluster.kubesim("restart", "apiserver")
    cluster.wait(lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
                 message="apiserver back")
    after = cluster.get("configmap", "durable")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "later"}, "data": {"k": "v"}})
    # A watch resumed from before the restart gets what it missed.
    rv = before["metadata"]["resourceVersion"]
    events = cluster.kubectl("get", "--raw", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"
                             "&timeoutSeconds=2").stdout
    assert '"name":"later"' in events.replace(" ", "")


def test_python_kubernetes_client_lists_watches_and_resumes(cluster: Cluster) -> None:
    from kubernetes import client as k8s
    from kubernetes import config, watch

    api_client = config.new_client_from_config(config_file=cluster.kubeconfig)
    try:
        core = k8s.CoreV1Api(api_client)
        listed = core.list_service_for_all_namespaces()
        assert "kubernetes" in {s.metadata.name for s in listed.items}
        rv = listed.metadata.resource_version
        cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "py-watched"},
                       "spec": {"ports": [{"port": 80}]}})
        seen = []
        for event in watch.Watch().stream(core.list_namespaced_service, "default", resource_version=rv,
                                          timeout_seconds=5):
            seen.append((event["type"], event["object"].metadata.name))
            if ("ADDED", "py-watched") in seen:
                break
        assert ("ADDED", "py-watched") in seen  # resumed from the list's resourceVersion: nothing missed
    finally:
        api_client.close()
