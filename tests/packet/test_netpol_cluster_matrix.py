"""NetworkPolicy truth tables (tests/netpol_cases.py) with real packets on a whole cluster, both modes.

The kernel tier checks every case against the agent's rules in one node namespace; this checks a sample
of them end to end on a real cluster: the objects go through the apiserver, the agents on both workers
program their nodes (nftables, or iptables beside kube-proxy's iptables rules), and the nine pods of
x, y, z, spread over the two workers, connect to each other through the nodes' forwarding paths. Each
pod runs agnhost's netexec twice, TCP and UDP on 80 and 81, with upstream's named ports.

A sample, so the tier stays quick: every third case, the two modes taking alternate ones, so both modes
meet NetworkPolicy and AdminNetworkPolicy cases. A case is settled when the cluster's matrix is the
case's, within a time limit: the agents sync asynchronously.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from control.client import Invalid
from kubesim.testing import Cluster
from tests.conftest import require_root
from tests.netpol_cases import ALL_PODS, MATRIX_CASES, NAMESPACES, PORTS, PROTOCOLS, Case, PodRef, Reachability, compare
from tests.netpol_probe import probe_matrix

REPO = Path(__file__).resolve().parents[2]
AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.47"
NAMES = {"nftables": "npmatrix-nft", "iptables": "npmatrix-ipt"}
RANGES = {"nodeCIDR": "172.28.0.0/16", "clusterCIDR": "10.248.0.0/16", "serviceCIDR": "10.95.0.0/16"}
SAMPLE = {"nftables": MATRIX_CASES[0::6], "iptables": MATRIX_CASES[3::6]}
SETTLE = 30.0  # seconds for both agents to program a case; only a wrong ruleset runs into it


def pod(ref: PodRef, node: str) -> dict[str, Any]:
    containers = [{
        "name": f"serve-{port}", "image": AGNHOST, "args": ["netexec", f"--http-port={port}", f"--udp-port={port}"],
        "ports": [{"name": f"serve-{port}-{proto.lower()}", "containerPort": port, "protocol": proto}
                  for proto in PROTOCOLS],
    } for port in PORTS]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ref.namespace, "name": ref.name, "labels": {"pod": ref.name}},
            "spec": {"nodeName": node, "containers": containers}}


class Matrix:
    def __init__(self, cluster: Cluster, mode: str) -> None:
        self.cluster = cluster
        self.mode = mode
        self.ips: dict[PodRef, str] = {}
        self.netns: dict[PodRef, str] = {}
        self.applied: list[dict[str, Any]] = []

    def observe(self, case: Case) -> Reachability:
        return probe_matrix(self.netns, self.ips, case.protocol, case.port)

    def load(self, case: Case) -> bool:
        """Replace the previous case's policies with CASE's; False when the apiserver refuses them (a case
        of a policy the API must not admit, such as an unknown selector operator: 422, nothing stored)."""
        wanted = [dict(p) for p in case.policies(self.ips)]
        keys = {(p["kind"], p["metadata"].get("namespace", ""), p["metadata"]["name"]) for p in wanted}
        for old in self.applied:
            meta = old["metadata"]
            if (old["kind"], meta.get("namespace", ""), meta["name"]) not in keys:
                self.cluster.delete(old["kind"], meta["name"], namespace=meta.get("namespace", "default"))
        if wanted:
            try:
                self.cluster.apply(wanted)
            except Invalid:
                self.applied = []
                return False
        self.applied = wanted
        return True

    def settle(self, case: Case) -> str:
        """"" once the cluster's matrix is CASE's; else what still differs after SETTLE seconds."""
        deadline = time.monotonic() + SETTLE
        while True:
            problem = compare(case.matrix(), self.observe(case))
            if not problem or time.monotonic() > deadline:
                return problem
            time.sleep(0.3)


@pytest.fixture(scope="module", params=sorted(NAMES))
def matrix(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    require_root()
    mode = request.param
    state = tmp_path_factory.mktemp("state")
    topology = yaml.safe_load((REPO / "topologies" / "two-node.yaml").read_text())
    topology["network"].update(RANGES)
    topology.pop("loadBalancerPool", None)
    topology_file = state / "topology.yaml"
    topology_file.write_text(yaml.safe_dump(topology))
    with Cluster.up(topology_file, name=NAMES[mode], proxy_mode=mode, root=state) as cluster:
        m = Matrix(cluster, mode)
        cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"ns": ns}}}
                       for ns in NAMESPACES])
        cluster.apply([pod(ref, ("worker-1", "worker-2")[i % 2]) for i, ref in enumerate(ALL_PODS)])
        for ns in NAMESPACES:
            for ready in cluster.wait_ready(namespace=ns, count=len(ALL_PODS) // len(NAMESPACES), timeout=120):
                ref = PodRef(ns, ready["metadata"]["name"])
                m.ips[ref] = ready["status"]["podIP"]
                m.netns[ref] = cluster.namespace_of(str(ref))
        yield m


NO_POLICY = Case("no policy", lambda ips: [], lambda s, d: True)


def test_a_sample_of_the_truth_tables_on_a_whole_cluster(matrix: Matrix) -> None:
    problems: list[str] = []
    previous: Reachability | None = None
    for case in SAMPLE[matrix.mode]:
        if case.matrix() == previous:
            # The same matrix as the last case's would pass before the agents caught up: clear first.
            matrix.load(NO_POLICY)
            if problem := matrix.settle(NO_POLICY):
                problems.append(f"no policy: {problem}")
        if not matrix.load(case):
            # Refused at the API (422): what the agent would do with it is the kernel tier's to check.
            assert not matrix.cluster.objects("networkpolicies", namespace=None), "a refused case left objects"
            previous = NO_POLICY.matrix()  # what the cluster now has: no policy
            continue
        if problem := matrix.settle(case):
            problems.append(f"{case.name} ({case.protocol}/{case.port}): {problem}")
        previous = case.matrix()
    assert not problems, f"{matrix.mode}: " + "\n".join(problems)
