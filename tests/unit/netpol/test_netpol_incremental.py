"""The agent's incremental sync: the plan kept across changes equals the plan computed from scratch,
the delta between two plans names only what changed, and the agent's caches reuse what did not change.

Random walks over the x/y/z world: policies of every truth-table case come and go, pods change labels,
addresses, nodes and named ports, namespaces change labels. After every step the incremental Planner
must hold exactly the Plan a fresh one computes; that is what makes sending only the difference safe.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from firewall.iptables import FakeIptables
from firewall.nftables import FakeNft
from firewall.tracing import Packet
from netpol import iptables
from netpol.model import ParseCache, parse_namespace, parse_pod, parse_policy
from netpol.nftables import Planner, delta_transaction, full_transaction
from tests.netpol_cases import (
    ALL_PODS,
    MATRIX_CASES,
    Case,
    PodRef,
    Reachability,
    cluster_objects,
    compare,
    default_addresses,
    policy,
    view_parts,
)

NODE = "node-1"


def _key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace') or obj['kind']}/{meta['name']}"


class World:
    """The x/y/z cluster as API objects, mutated at random."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        ips, nodes = default_addresses()
        self.ips = ips
        namespaces, pods = cluster_objects(ips, nodes)
        self.namespaces = {n["metadata"]["name"]: n for n in namespaces}
        self.pods = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p for p in pods}
        # Every case's objects, AdminNetworkPolicies and BaselineAdminNetworkPolicies among them.
        self.pool = [copy.deepcopy(p) for case in MATRIX_CASES for p in case.policies(ips)]
        # Distinct names: several cases reuse a name for different specs. (The baseline keeps its one
        # name: the cases' baselines take turns.)
        for i, p in enumerate(self.pool):
            if p.get("kind") != "BaselineAdminNetworkPolicy":
                p["metadata"]["name"] = f"{p['metadata']['name']}-{i}"
        self.policies: dict[str, dict[str, Any]] = {}

    def step(self) -> str:
        rng = self.rng
        what = rng.choice(["add-policy", "add-policy", "remove-policy", "edit-policy", "edit-policy", "pod-labels",
                           "pod-ip", "pod-node", "pod-ports", "pod-gone", "pod-back", "namespace-labels"])
        if what in ("remove-policy", "edit-policy") and not self.policies:
            what = "add-policy"
        if what == "edit-policy":
            # The same policy, now selecting other pods or isolating another direction.
            p = copy.deepcopy(self.policies[rng.choice(sorted(self.policies))])
            if p.get("kind") in ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy"):
                # The same admin policy, now for other subjects (and, for an ANP, at another priority).
                p["spec"]["subject"] = rng.choice([{"namespaces": {}}, {"namespaces": {"matchLabels": {"ns": "y"}}},
                                                   {"pods": {"namespaceSelector": {},
                                                             "podSelector": {"matchLabels": {"pod": "b"}}}}])
                if "priority" in p["spec"]:
                    p["spec"]["priority"] = rng.randrange(0, 30)
            elif rng.random() < 0.5:
                p["spec"]["podSelector"] = rng.choice([{}, {"matchLabels": {"pod": rng.choice(["a", "b", "c"])}}])
            else:
                p["spec"]["policyTypes"] = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
            self.policies[_key(p)] = p
        elif what == "add-policy":
            p = copy.deepcopy(rng.choice(self.pool))
            self.policies[_key(p)] = p
        elif what == "remove-policy":
            del self.policies[rng.choice(sorted(self.policies))]
        elif what == "namespace-labels":
            ns = copy.deepcopy(self.namespaces[rng.choice(sorted(self.namespaces))])
            ns["metadata"]["labels"] = {"ns": rng.choice(["x", "y", "z", "other"])}
            self.namespaces[ns["metadata"]["name"]] = ns
        else:
            key = rng.choice(sorted(self.pods))
            pod = copy.deepcopy(self.pods[key])
            if what == "pod-labels":
                pod["metadata"]["labels"] = {"pod": rng.choice(["a", "b", "c", "d"])}
            elif what == "pod-ip":
                ip = f"10.244.{rng.choice([1, 2])}.{rng.randrange(100, 120)}"
                pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
            elif what == "pod-node":
                pod["spec"]["nodeName"] = rng.choice(["node-1", "node-2"])
            elif what == "pod-ports":
                ports = pod["spec"]["containers"][0]["ports"]
                pod["spec"]["containers"][0]["ports"] = ports[: rng.randrange(len(ports) + 1)]
            elif what == "pod-gone":
                pod["status"] = {"phase": "Succeeded"}
            elif what == "pod-back":
                ip = self.ips[next(p for p in self.ips if str(p) == key)]
                pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}
            self.pods[key] = pod
        return what

    def parsed(self) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        parts = view_parts(self.policies.values())
        return (parts["policies"], [p for p in (parse_pod(o) for o in self.pods.values()) if p is not None],
                [parse_namespace(n) for n in self.namespaces.values()], parts["admin"])


def parsed_world() -> tuple[Any, Any, list[Any], list[Any]]:
    """The x/y/z cluster's addresses, nodes, and its pods and namespaces parsed, as the agent holds them."""
    ips, nodes = default_addresses()
    namespaces, pods = cluster_objects(ips, nodes)
    return (ips, nodes, [p for p in (parse_pod(o) for o in pods) if p is not None],
            [parse_namespace(n) for n in namespaces])


@pytest.mark.parametrize("seed", range(16))
def test_the_incremental_plan_is_the_plan_from_scratch_after_every_change(seed: int) -> None:
    world = World(random.Random(seed))
    planner = Planner(NODE)
    before = planner.update(*world.parsed())
    for _ in range(60):
        what = world.step()
        policies, pods, namespaces, admin = world.parsed()
        after = planner.update(policies, pods, namespaces, admin)
        fresh = Planner(NODE).update(policies, pods, namespaces, admin)
        assert after == fresh, f"after {what}: the incremental plan differs from the one computed from scratch"
        assert full_transaction(after) == full_transaction(fresh)
        assert (delta_transaction(before, after) == "") == (before == after)
        before = after


def test_a_delta_touches_only_the_changed_policy() -> None:
    _, _, parsed_pods, parsed_namespaces = parsed_world()
    policies = [parse_policy(policy("x", f"p{i}", {"podSelector": {}, "ingress": [{"ports": [{"port": 80 + i}]}]}))
                for i in range(3)]
    planner = Planner(NODE)
    old = planner.update(policies, parsed_pods, parsed_namespaces)
    changed = parse_policy(policy("x", "p1", {"podSelector": {}, "ingress": [{"ports": [{"port": 9999}]}]}))
    new = planner.update([policies[0], changed, policies[2]], parsed_pods, parsed_namespaces)
    delta = delta_transaction(old, new)
    assert delta.splitlines() == [
        "flush chain ip kubesim-netpol ingress-x/p1",
        'add rule ip kubesim-netpol ingress-x/p1 meta l4proto tcp th dport 9999 accept comment "x/p1 ingress rule 0"',
    ]


def test_a_removed_policy_goes_after_the_references_to_it() -> None:
    _, _, parsed_pods, parsed_namespaces = parsed_world()
    peers = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}
    planner = Planner(NODE)
    old = planner.update([parse_policy(policy("x", "only", peers))], parsed_pods, parsed_namespaces)
    new = planner.update([], parsed_pods, parsed_namespaces)
    lines = delta_transaction(old, new).splitlines()
    # The verdict map lets go of the group chain, the group chain of the policy chain, the policy
    # chain of its set; only then does each go. The kernel refuses any other order.
    first = {kind: next(i for i, line in enumerate(lines) if line.startswith(kind))
             for kind in ("delete element", "flush chain", "delete chain", "delete set")}
    assert first["delete element"] < first["flush chain"] < first["delete chain"] < first["delete set"]
    assert sum(line.startswith("delete chain") for line in lines) == 2  # the policy's and its group's


def test_the_parse_cache_reuses_what_kept_its_uid_and_resource_version() -> None:
    calls: list[str] = []

    def parse(obj: Any) -> Any:
        calls.append(obj["metadata"]["name"])
        return parse_namespace(obj)

    cache = ParseCache(parse)
    a = {"metadata": {"name": "a", "uid": "u1", "resourceVersion": "1"}}
    b = {"metadata": {"name": "b", "uid": "u2", "resourceVersion": "1"}}
    first = cache.parse_all([a, b])
    again = cache.parse_all([a, {**b, "metadata": {**b["metadata"], "resourceVersion": "2"}}])
    assert calls == ["a", "b", "b"]
    assert again[0] is first[0]
    handmade = {"metadata": {"name": "c"}}  # no uid: parsed every time
    cache.parse_all([handmade])
    cache.parse_all([handmade])
    assert calls[-2:] == ["c", "c"]


def test_deltas_through_every_case_on_the_fake_give_each_cases_matrix() -> None:
    # FakeNft applies each delta all or nothing and refuses a table left with dangling references. It
    # judges the table a transaction leaves, not each step, so the order of the commands (which the
    # kernel does check, step by step) is the kernel tier's to test: tests/kernel/test_netpol_kernel.py.
    ips, nodes, parsed_pods, parsed_namespaces = parsed_world()
    node_names = sorted(set(nodes.values()))
    planners = {node: Planner(node) for node in node_names}
    fakes = {node: FakeNft() for node in node_names}
    plans = {node: planners[node].update([], parsed_pods, parsed_namespaces) for node in node_names}
    for node in node_names:
        fakes[node].run(full_transaction(plans[node]))
    # The admin cases too: their chains, sets and maps come and go by deltas like the policies'.
    for case in [*MATRIX_CASES, *reversed(MATRIX_CASES)]:
        parts = view_parts(case.policies(ips))
        for node in node_names:
            new = planners[node].update(parts["policies"], parsed_pods, parsed_namespaces, parts["admin"])
            fakes[node].run(delta_transaction(plans[node], new))
            plans[node] = new

        def connects(src: PodRef, dst: PodRef, case: Case = case) -> bool:
            for node in dict.fromkeys((nodes[src], nodes[dst])):
                if fakes[node].trace(Packet(ips[src], ips[dst], case.port, case.protocol)).verdict != "ACCEPT":
                    return False
            return True

        observed = Reachability({(s, d): connects(s, d) for s in ALL_PODS for d in ALL_PODS})
        problem = compare(case.matrix(), observed)
        assert not problem, f"after the delta to {case.name!r}: {problem}"


# --- iptables mode: the same guarantees for its Planner and deltas ------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_the_incremental_iptables_chains_are_the_chains_from_scratch_after_every_change(seed: int) -> None:
    world = World(random.Random(seed))
    planner = iptables.Planner(NODE)
    before = planner.update(*world.parsed())
    for _ in range(60):
        what = world.step()
        policies, pods, namespaces, admin = world.parsed()
        after = planner.update(policies, pods, namespaces, admin)
        fresh = iptables.Planner(NODE).update(policies, pods, namespaces, admin)
        assert after == fresh, f"after {what}: the incremental chains differ from the ones computed from scratch"
        assert (iptables.delta(before, after) == "") == (before == after)
        before = after


def test_an_iptables_delta_touches_only_the_changed_policy() -> None:
    _, _, parsed_pods, parsed_namespaces = parsed_world()
    policies = [parse_policy(policy("x", f"p{i}", {"podSelector": {}, "ingress": [{"ports": [{"port": 80 + i}]}]}))
                for i in range(3)]
    planner = iptables.Planner(NODE)
    old = planner.update(policies, parsed_pods, parsed_namespaces)
    changed = parse_policy(policy("x", "p1", {"podSelector": {}, "ingress": [{"ports": [{"port": 9999}]}]}))
    new = planner.update([policies[0], changed, policies[2]], parsed_pods, parsed_namespaces)
    assert iptables.delta(old, new).splitlines() == [
        "*filter",
        ":KUBE-NWPLCY-I-x.p1 - [0:0]",
        '-A KUBE-NWPLCY-I-x.p1 -p tcp -m tcp --dport 9999 -m comment --comment "x/p1 ingress rule 0" '
        f"{iptables.RULE_MARKER}",
        "COMMIT",
    ]


def test_iptables_deltas_through_every_case_on_the_fake_give_each_cases_matrix_and_a_full_loads_table() -> None:
    # FakeIptables applies each restore all or nothing and refuses to delete a chain still jumped to.
    ips, nodes, parsed_pods, parsed_namespaces = parsed_world()
    node_names = sorted(set(nodes.values()))
    planners = {node: iptables.Planner(node) for node in node_names}
    fakes = {node: FakeIptables() for node in node_names}
    chains = {node: planners[node].update([], parsed_pods, parsed_namespaces) for node in node_names}
    for node in node_names:
        iptables.IptablesCommand(runner=fakes[node]).apply(iptables.restore_text(chains[node]))
    # The admin cases too: their chains come and go by deltas like the policies'.
    for case in [*MATRIX_CASES, *reversed(MATRIX_CASES)]:
        parts = view_parts(case.policies(ips))
        for node in node_names:
            new = planners[node].update(parts["policies"], parsed_pods, parsed_namespaces, parts["admin"])
            fakes[node].restore(iptables.delta(chains[node], new))
            chains[node] = new

        def connects(src: PodRef, dst: PodRef, case: Case = case) -> bool:
            return all(fakes[node].trace(Packet(ips[src], ips[dst], case.port, case.protocol)).verdict == "ACCEPT"
                       for node in dict.fromkeys((nodes[src], nodes[dst])))

        observed = Reachability({(s, d): connects(s, d) for s in ALL_PODS for d in ALL_PODS})
        problem = compare(case.matrix(), observed)
        assert not problem, f"after the iptables delta to {case.name!r}: {problem}"
    for node in node_names:
        full = FakeIptables()
        iptables.IptablesCommand(runner=full).apply(iptables.restore_text(chains[node]))
        assert fakes[node].save("filter") == full.save("filter"), f"{node}: the deltas left another table"
