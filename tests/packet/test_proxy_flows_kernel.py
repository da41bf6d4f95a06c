"""kube-proxy's packet-flow table on the real kernel.

tests/unit/proxy/proxy_flows.py holds the flows both proxy backends are held to on their fakes (in the
shape of kube-proxy's packetFlowTest). Here the same Services and EndpointSlices go through a real
apiserver to the real kube-proxy of a node called node-a, and every flow is traced with real packets
through that node by `kubesim trace`, in both proxy modes.

The table's addresses are moved to ranges of their own (172.18 -> 172.24, 10.244 -> 10.246,
10.96 -> 10.92), so that this cluster can run beside a default one. Endpoints are hand-written
EndpointSlices for Services without selectors; none of them is a live pod.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from kubesim.trace import run_trace
from tests import cluster_report
from tests.conftest import require_tool
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
NAMES = {"nftables": "pflows-nft", "iptables": "pflows-ipt"}
MOVES = (("172.18.", "172.24."), ("10.244.", "10.246."), ("10.96.", "10.92."))
# LoadBalancer Services whose status.loadBalancer we write ourselves: a class of their own keeps the
# cluster's load-balancer IP controller away from them (as for any other implementation's class).
LB_CLASS = "kubesim.test/manual"


def _load_flows() -> ModuleType:
    path = REPO / "tests" / "unit" / "proxy" / "proxy_flows.py"
    spec = importlib.util.spec_from_file_location("proxy_flows_for_kernel", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


flows_table = _load_flows()


def move(text: str) -> str:
    for old, new in MOVES:
        text = text.replace(old, new)
    return text


def moved(obj: Any) -> Any:
    return json.loads(move(json.dumps(obj)))


# Where real packets answer differently from the fakes' tracer, and why.
def affinity_pins_one(result: dict[str, Any], want: str) -> bool:
    """The fake tries every choice of a new client; real probes from one client are pinned to the
    endpoint the first one reached."""
    return result["result"] == "DNAT" and len(result["endpoints"]) == 1 and result["endpoints"][0] in want


def untouched_but_unroutable(result: dict[str, Any], want: str) -> bool:
    """kube-proxy leaves it alone, and the sealed cluster's node has no route for it (no default route)."""
    return result["result"] == "DROP" and "not routed" in result["flows"][0].get("note", "")


def never_sent(result: dict[str, Any], want: str) -> bool:
    """A pod address on the probe's own bridge that nobody has: the probe's ARP gets no answer, so, as
    from a real pod, nothing is sent and the node never sees it."""
    return result["result"] == "DROP" and "never seen by the node" in result["flows"][0].get("note", "")


def node_without_route(result: dict[str, Any], want: str) -> bool:
    """The node's own packet needs a route before OUTPUT's DNAT; a sealed node has one for the service
    range only, none for load-balancer addresses outside it."""
    return result["result"] == "DROP" and "unreachable" in result["flows"][0].get("error", "")


KERNEL_CHECKS: dict[str, Callable[[dict[str, Any], str], bool]] = {
    "affinity: a new client may reach any endpoint": affinity_pins_one,
    "headless service pod IP: untouched": never_sent,
    "externalIP on another port: untouched": untouched_but_unroutable,
    "ETP Local: node to LB IP short-circuits, masqueraded": node_without_route,
}


@dataclass
class Cluster:
    name: str
    mode: str
    state: Path

    @property
    def kubeconfig(self) -> str:
        return str(self.state / self.name / "kubeconfig")

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", self.kubeconfig, *args], input=stdin, capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {done.stderr}")
        return done.stdout

    def trace(self, src: str, dst: str, **options: Any) -> dict[str, Any]:
        return run_trace(self.name, node=flows_table.NODE, src=src, dst=dst, **options)


def topology() -> dict[str, Any]:
    return {
        "apiVersion": "kubesim/v1alpha1", "kind": "Cluster", "name": "pflows",
        "network": {"nodeCIDR": "172.24.0.0/16", "clusterCIDR": "10.246.0.0/16", "podCIDRSize": 24,
                    "serviceCIDR": "10.92.0.0/16", "serviceNodePortRange": "3000-32767", "mode": "host-gw"},
        "nodes": [
            {"name": "control-plane", "role": "control-plane", "address": "172.24.0.4", "podCIDR": "10.246.0.0/24"},
            {"name": flows_table.NODE, "role": "worker", "address": move(flows_table.NODE_IP),
             "podCIDR": "10.246.1.0/24"},
            {"name": flows_table.REMOTE, "role": "worker", "address": move(flows_table.OTHER_NODE_IP),
             "podCIDR": "10.246.2.0/24"},
        ],
        "loadBalancerPool": ["172.24.255.200-172.24.255.250"],
        # upstream's flow table has its own Service "dns" at the tenth address, where kube-dns would sit
        "dns": {"enabled": False},
    }


def api_objects() -> tuple[list[dict[str, Any]], list[tuple[str, str, dict[str, Any]]]]:
    """(namespaces, services and slices to apply; (namespace, service, status) to write)."""
    services, slices = moved(flows_table.cluster_objects())
    objects: list[dict[str, Any]] = []
    statuses = []
    for svc in services:
        status = svc.pop("status", {})
        if svc["spec"].get("type") == "LoadBalancer":
            svc["spec"]["loadBalancerClass"] = LB_CLASS
            statuses.append((svc["metadata"]["namespace"], svc["metadata"]["name"], status))
        if svc["spec"].get("type") == "ExternalName":
            del svc["spec"]["clusterIP"]
        objects.append({"apiVersion": "v1", "kind": "Service", **svc})
    objects += [{"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", **s} for s in slices]
    spaces = sorted({o["metadata"]["namespace"] for o in objects})
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}} for ns in spaces] + objects, statuses


@pytest.fixture(scope="module", params=sorted(NAMES))
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_tool("kubectl", install="scripts/setup.sh installs it")
    mode = request.param
    name = NAMES[mode]
    state = tmp_path_factory.mktemp("state")
    topology_file = state / "topology.yaml"
    topology_file.write_text(yaml.safe_dump(topology()))
    env = {**os.environ, "KUBESIM_STATE_DIR": str(state)}
    patch = pytest.MonkeyPatch()
    patch.setenv("KUBESIM_STATE_DIR", str(state))
    c = Cluster(name, mode, state)
    try:
        up = subprocess.run([sys.executable, "-m", "kubesim", "up", str(topology_file), "--name", name,
                             "--proxy-mode", mode], env=env, capture_output=True, text=True, check=False, cwd=REPO)
        assert up.returncode == 0, up.stderr
        objects, statuses = api_objects()
        c.kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump_all(objects))
        for namespace, svc, status in statuses:
            c.kubectl("patch", "service", svc, "-n", namespace, "--subresource=status", "--type=merge",
                      "-p", json.dumps({"status": status}))
        local_pod = move(flows_table.LOCAL_POD)
        wait_until(lambda: c.trace(local_pod, "10.92.0.54:80")["result"] == "DNAT"
                   and c.trace(move(flows_table.EXTERNAL), "1.2.3.4:80")["result"] == "DNAT",
                   interval=0.3, message="kube-proxy programs the services",
                   describe=lambda: cluster_report.tail_logs(state / name / "logs", "kube-proxy-*.log"))
        yield c
    finally:
        subprocess.run([sys.executable, "-m", "kubesim", "down", "--name", name], env=env, capture_output=True,
                       check=False, cwd=REPO)
        patch.undo()


def observed(result: dict[str, Any]) -> tuple[str, bool]:
    if result["result"] == "DNAT":
        return flows_table.endpoints(*result["endpoints"]), bool(result["masquerade"])
    if result["result"] in ("DROP", "REJECT"):
        return result["result"], False
    # NONE (passed on) and LOCAL (delivered to the node itself) are both "untouched" by kube-proxy.
    return flows_table.UNTOUCHED, bool(result["masquerade"])


def test_every_flow_of_the_proxy_table(cluster: Cluster) -> None:
    failures = []
    started = time.monotonic()
    for flow in flows_table.FLOWS:
        result = cluster.trace(move(flow.source), f"{move(flow.destination)}:{flow.port}",
                               proto=flow.protocol.lower(), count=20, ingress=flow.ingress or None)
        want = flow.expected(cluster.mode)
        want_output = move(want.output)
        special = KERNEL_CHECKS.get(flow.name)
        if special is not None:
            ok = special(result, want_output)
        else:
            output, masq = observed(result)
            ok = output == want_output and (want.masq is None or masq == want.masq)
        if not ok:
            failures.append(f"{flow.name}: {flow.source} -> {flow.destination}:{flow.port}/{flow.protocol}: want "
                            f"{want_output or 'untouched'} masq={want.masq}, got {result['result']} "
                            f"{result['endpoints']} masq={result['masquerade']} ({result['flows'][0]})")
    print(f"\n{cluster.mode}: {len(flows_table.FLOWS)} flows x 20 probes in {time.monotonic() - started:.1f} s")
    assert not failures, "\n".join(failures)
