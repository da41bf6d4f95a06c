"""Cluster DNS on a whole cluster (topologies/two-node.yaml), as users meet it: `kubesim up` runs CoreDNS's
Deployment and the kube-dns Service at 10.96.0.10, and from inside a pod's network namespace `dig` and
the Python resolver get every record kind of the Kubernetes DNS specification through the Service VIP."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netsim import names
from tests import cluster_report
from tests.conftest import require_tool
from tests.dnsload import outage
from tests.waiting import eventually, wait_until

REPO = Path(__file__).resolve().parents[2]
NAME = "dnstest"
KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33"
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
DNS_IP = "10.96.0.10"


class Cluster:
    def __init__(self, state: Path):
        self.env = {**os.environ, "KUBESIM_STATE_DIR": str(state)}
        self.kubeconfig = str(state / NAME / "kubeconfig")
        self.logs = state / NAME / "logs"

    def kubesim(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        named = args[0] in ("down", "logs")
        argv = [sys.executable, "-m", "kubesim", *args, *(["--name", NAME] if named else [])]
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, check=False, cwd=REPO)
        if check and done.returncode != 0:
            raise AssertionError(f"kubesim {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
        return done

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, *args], capture_output=True, text=True,
                              input=stdin, check=False)
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", "pods", "-n", namespace, "-o", "json", *(["-l", selector] if selector else [])]
        items: list[dict[str, Any]] = json.loads(self.kubectl(*args))["items"]
        return items

    def wait(self, what: Callable[[], bool], message: str, timeout: float = 90) -> None:
        # A hang guard, not a measurement: the condition is what the test checks.
        wait_until(what, timeout=timeout, interval=0.3, message=message, describe=self.report)

    def report(self) -> str:
        """The pods of the namespaces the tests use, with their kubelets' logs, for a wait that timed out."""
        kubectl = cluster_report.kubectl_for(self.kubeconfig, KUBECTL)
        reports = []
        for namespace in ("kube-system", "default", "team-a"):
            listed = [p["metadata"]["name"] for p in self.pods(namespace)]
            reports.append(cluster_report.describe_pods(kubectl, listed, namespace=namespace, logs=self.logs))
        return "\n".join(reports)


def cluster_wait_value(cluster: Cluster, produce: Callable[[], str | None], message: str) -> str:
    value: str = eventually(produce, timeout=30, interval=0.3, message=message, describe=cluster.report)
    return value


def ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def agnhost(name: str, namespace: str, labels: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {**spec, "containers": [{
                "name": "agnhost", "image": AGNHOST, "args": ["netexec", "--http-port=8080", "--udp-port=8081"],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}]}}


def service(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], **spec}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_tool("dig", install="apt-get install dnsutils")
    state = tmp_path_factory.mktemp("state")
    c = Cluster(state)
    c.kubesim("up", str(REPO / "topologies" / "two-node.yaml"), "--name", NAME)
    try:
        c.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        c.apply(service("echo", "team-a", selector={"app": "echo"}),
                agnhost("echo", "team-a", {"app": "echo"}),
                service("db", "default", clusterIP="None", selector={"app": "db"}),
                agnhost("db-0", "default", {"app": "db"}, hostname="db-0", subdomain="db", nodeName="worker-1"),
                agnhost("db-1", "default", {"app": "db"}, hostname="db-1", subdomain="db", nodeName="worker-2"),
                {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "search", "namespace": "default"},
                 "spec": {"type": "ExternalName", "externalName": "www.example.com"}},
                agnhost("client", "default", {"app": "client"}, nodeName="worker-1"))
        c.wait(lambda: sum(ready(p) for p in c.pods("kube-system", "k8s-app=kube-dns")) == 2, "2 coredns pods Ready")
        c.wait(lambda: all(ready(p) for p in c.pods("default") + c.pods("team-a")), "the test pods Ready")
        # Ready pods are in the EndpointSlice before every kube-proxy has programmed them: wait for the VIP.
        c.wait(lambda: all(answered(c, proto) for proto in ("+notcp", "+tcp")), "10.96.0.10 answering")
        yield c
    finally:
        c.kubesim("down", check=False)


def client_ns(cluster: Cluster) -> str:
    pod = next(p for p in cluster.pods("default") if p["metadata"]["name"] == "client")
    return names.pod_ns(NAME, pod["metadata"]["uid"])


def run_dig(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", client_ns(cluster), "dig", f"@{DNS_IP}", "+time=2", "+tries=3",
                           *args], capture_output=True, text=True, timeout=30, check=False)


def answered(cluster: Cluster, proto: str) -> bool:
    done = run_dig(cluster, proto, "+short", "kubernetes.default.svc.cluster.local")
    return done.returncode == 0 and done.stdout.strip() == "10.96.0.1"


def dig(cluster: Cluster, *args: str) -> str:
    done = run_dig(cluster, *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def short(cluster: Cluster, *args: str) -> list[str]:
    return sorted(line for line in dig(cluster, "+short", *args).splitlines() if line)


def eventually_short(cluster: Cluster, expected: list[str], *args: str) -> None:
    # The zone follows the API through watches: wait for the records rather than assuming a delay.
    cluster.wait(lambda: short(cluster, *args) == expected, f"dig {' '.join(args)} -> {expected}", timeout=30)


def test_coredns_runs_as_kind_runs_it(cluster: Cluster) -> None:
    svc = json.loads(cluster.kubectl("get", "svc", "kube-dns", "-n", "kube-system", "-o", "json"))
    assert svc["spec"]["clusterIP"] == DNS_IP
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
    pods = cluster.pods("kube-system", "k8s-app=kube-dns")
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"registry.k8s.io/coredns/coredns:v1.11.1"}
    assert len({p["spec"]["nodeName"] for p in pods}) == 2  # spread over nodes


def test_kubernetes_default_over_udp_and_tcp(cluster: Cluster) -> None:
    assert short(cluster, "kubernetes.default.svc.cluster.local") == ["10.96.0.1"]
    assert short(cluster, "+tcp", "kubernetes.default.svc.cluster.local") == ["10.96.0.1"]
    answer = dig(cluster, "kubernetes.default.svc.cluster.local", "AAAA")
    assert "status: NOERROR" in answer and "ANSWER: 0" in answer and "SOA" in answer


def test_a_service_in_another_namespace(cluster: Cluster) -> None:
    ip = json.loads(cluster.kubectl("get", "svc", "echo", "-n", "team-a", "-o", "json"))["spec"]["clusterIP"]
    assert short(cluster, "echo.team-a.svc.cluster.local") == [ip]


def test_headless_service_endpoints_and_hostnames(cluster: Cluster) -> None:
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in cluster.pods("default", "app=db")}
    eventually_short(cluster, sorted(ips.values()), "db.default.svc.cluster.local")
    assert short(cluster, "db-0.db.default.svc.cluster.local") == [ips["db-0"]]
    srv = short(cluster, "SRV", "_http._tcp.db.default.svc.cluster.local")
    assert sorted(line.split()[-1] for line in srv) == ["db-0.db.default.svc.cluster.local.",
                                                        "db-1.db.default.svc.cluster.local."]


def test_srv_of_a_named_port(cluster: Cluster) -> None:
    assert short(cluster, "SRV", "_http._tcp.echo.team-a.svc.cluster.local") == [
        "0 100 8080 echo.team-a.svc.cluster.local."]


def test_ptr_of_a_cluster_ip(cluster: Cluster) -> None:
    assert short(cluster, "-x", "10.96.0.1") == ["kubernetes.default.svc.cluster.local."]
    assert short(cluster, "-x", DNS_IP) == ["kube-dns.kube-system.svc.cluster.local."]


def test_external_name_is_a_cname(cluster: Cluster) -> None:
    assert short(cluster, "search.default.svc.cluster.local", "CNAME") == ["www.example.com."]


def test_missing_service_is_nxdomain_and_outside_is_refused(cluster: Cluster) -> None:
    assert "status: NXDOMAIN" in dig(cluster, "missing.default.svc.cluster.local")
    assert "status: REFUSED" in dig(cluster, "www.example.com")


def test_python_resolver_from_a_pod(cluster: Cluster) -> None:
    script = ("import dns.resolver; r = dns.resolver.Resolver(configure=False); r.nameservers = ['10.96.0.10']; "
              "print(r.resolve('kubernetes.default.svc.cluster.local', 'A')[0].address)")
    done = subprocess.run(["ip", "netns", "exec", client_ns(cluster), sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.stdout.strip() == "10.96.0.1", done.stderr


def test_a_new_service_resolves_and_a_deleted_one_stops(cluster: Cluster) -> None:
    cluster.apply(service("late", "default", selector={"app": "nobody"}))
    ip = json.loads(cluster.kubectl("get", "svc", "late", "-o", "json"))["spec"]["clusterIP"]
    eventually_short(cluster, [ip], "late.default.svc.cluster.local")
    cluster.kubectl("delete", "svc", "late")
    cluster.wait(lambda: "status: NXDOMAIN" in dig(cluster, "late.default.svc.cluster.local"), "late NXDOMAIN",
                 timeout=30)


def test_queries_are_logged_and_counted(cluster: Cluster) -> None:
    short(cluster, "kubernetes.default.svc.cluster.local")
    pods = cluster.pods("kube-system", "k8s-app=kube-dns")
    logs = "".join(cluster.kubectl("logs", "-n", "kube-system", p["metadata"]["name"]) for p in pods)
    assert "kubernetes.default.svc.cluster.local. udp" in logs
    script = (f"import urllib.request; print(urllib.request.urlopen('http://{pods[0]['status']['podIP']}:9153/metrics',"
              " timeout=5).read().decode())")
    done = subprocess.run(["ip", "netns", "exec", client_ns(cluster), sys.executable, "-c", script],
                          capture_output=True, text=True, timeout=30, check=False)
    assert "coredns_dns_requests_total" in done.stdout and "coredns_dns_responses_total" in done.stdout, done.stderr


def test_headless_answers_fewer_after_a_scale_down(cluster: Cluster) -> None:
    ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in cluster.pods("default", "app=db")}
    cluster.kubectl("delete", "pod", "db-1", "--wait=false")
    eventually_short(cluster, [ips["db-0"]], "db.default.svc.cluster.local")
    assert "status: NXDOMAIN" in dig(cluster, "db-1.db.default.svc.cluster.local")


def pinned_endpoint(node_ns: str, client_ip: str, sport: int) -> str | None:
    """The DNS pod the client's flow is DNATed to: the reply source of its conntrack entry on its node."""
    done = subprocess.run(["ip", "netns", "exec", node_ns, "conntrack", "-L", "-p", "udp", "--orig-src", client_ip,
                           "--orig-port-src", str(sport), "--orig-dst", DNS_IP], capture_output=True, text=True,
                          timeout=10, check=False)
    for line in done.stdout.splitlines():
        sources = [word[4:] for word in line.split() if word.startswith("src=")]
        if len(sources) == 2:
            return sources[1]
    return None


def test_a_pinned_udp_flow_survives_its_dns_pod_being_deleted(cluster: Cluster,
                                                               record_property: Callable[[str, object], None]) -> None:
    """The conntrack lesson: a client that keeps its source port refreshes its UDP conntrack entry with every
    query, so once its DNS pod is gone it is black-holed for good unless kube-proxy deletes the entries whose
    reply came from the removed endpoint. It queries 20 times a second while the pod it is pinned to goes."""
    require_tool("conntrack", install="apt-get install conntrack")
    sport = 40053
    client = next(p for p in cluster.pods("default") if p["metadata"]["name"] == "client")
    node_ns = names.node_ns(NAME, client["spec"]["nodeName"])
    argv = ["ip", "netns", "exec", client_ns(cluster), sys.executable, "-m", "tests.dnsload", "pinned", DNS_IP,
            "kubernetes.default.svc.cluster.local", "--rate", "20", "--sport", str(sport)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout is not None and proc.stdin is not None
        # A hang guard: the client says "up" at its first answer, which may never come.
        assert select.select([proc.stdout], [], [], 30)[0], "the pinned client got no answer in 30 s"
        assert proc.stdout.readline().strip() == "up"
        pinned = cluster_wait_value(cluster, lambda: pinned_endpoint(node_ns, client["status"]["podIP"], sport),
                                    "the client's conntrack entry")
        victim = next(p for p in cluster.pods("kube-system", "k8s-app=kube-dns") if p["status"]["podIP"] == pinned)
        deleted_at = time.monotonic()
        cluster.kubectl("delete", "pod", "-n", "kube-system", victim["metadata"]["name"], "--wait=false")
        # Run on until the Deployment has replaced the pod: a flow still pinned to the dead pod shows by then.
        cluster.wait(lambda: victim["metadata"]["name"] not in {p["metadata"]["name"] for p in
                                                               cluster.pods("kube-system", "k8s-app=kube-dns")},
                     "the deleted coredns pod gone")
        cluster.wait(lambda: sum(ready(p) for p in cluster.pods("kube-system", "k8s-app=kube-dns")) == 2,
                     "coredns back to 2 Ready pods")
        time.sleep(2)  # a tail of queries after the replacement, so that "recovered" has something to stand on
        out, _ = proc.communicate(input="", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = json.loads(out.strip().splitlines()[-1])
    sent = [(qid, t) for qid, t in result["sent"]]
    answered = {int(qid): t for qid, t in result["answered"].items()}
    recovery = outage(sent, answered, deleted_at)
    print(f"pinned UDP flow: {len(sent)} queries, outage after deleting {victim['metadata']['name']} "
          f"({pinned}): {recovery if recovery is None else round(recovery, 3)} s")
    record_property("dns_pinned_flow_outage_seconds", recovery)
    assert recovery is not None, "the client never got an answer again: its flow stayed on the deleted pod"
    assert recovery < 10, f"the client was black-holed for {recovery:.1f} s"
    # The flow now goes to a live coredns pod (which may be the replacement, were it given the same address).
    now_pinned = pinned_endpoint(node_ns, client["status"]["podIP"], sport)
    live = {p["status"].get("podIP"): p["metadata"]["name"] for p in cluster.pods("kube-system", "k8s-app=kube-dns")}
    assert live.get(now_pinned) not in (None, victim["metadata"]["name"]), (now_pinned, live)


def test_a_flood_from_one_pod_leaves_answers_for_the_others(cluster: Cluster) -> None:
    """10,000 queries a second from the client pod through the VIP; meanwhile another pod's dig (1 s timeout,
    3 tries, as a resolver retries) keeps getting its answers, and no coredns pod dies or restarts."""
    cluster.wait(lambda: sum(ready(p) for p in cluster.pods("kube-system", "k8s-app=kube-dns")) == 2,
                 "2 coredns pods Ready")
    echo = next(p for p in cluster.pods("team-a") if p["metadata"]["name"] == "echo")
    other_ns = names.pod_ns(NAME, echo["metadata"]["uid"])
    flooder = subprocess.Popen(["ip", "netns", "exec", client_ns(cluster), sys.executable, "-m", "tests.dnsload",
                                "flood", DNS_IP, "--rate", "10000", "--seconds", "6"], stdout=subprocess.PIPE,
                               text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert flooder.stdout is not None and flooder.stdout.readline().strip() == "flooding"
        answers = []
        for _ in range(10):
            done = subprocess.run(["ip", "netns", "exec", other_ns, "dig", f"@{DNS_IP}", "+time=1", "+tries=3",
                                   "+short", "kubernetes.default.svc.cluster.local"],
                                  capture_output=True, text=True, timeout=30, check=False)
            answers.append(done.stdout.strip())
        alongside = flooder.poll() is None
        counts = json.loads(flooder.communicate(timeout=30)[0])
    finally:
        if flooder.poll() is None:
            flooder.kill()
            flooder.communicate()
    print(f"flood through the VIP: {counts}")
    assert answers == ["10.96.0.1"] * 10, answers
    assert alongside, "the flood ended before the other pod's queries did: it proved nothing"
    assert counts["answered"] > 0
    pods = cluster.pods("kube-system", "k8s-app=kube-dns")
    assert all(ready(p) for p in pods) and len(pods) == 2
    assert [c["restartCount"] for p in pods for c in p["status"]["containerStatuses"]] == [0, 0]
