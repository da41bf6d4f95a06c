"""The iptables backend on its fake: upstream's names and layout, full and partial syncs, cleanup.
(What the fake itself refuses is tested with it, in tests/unit/firewall.)"""

from __future__ import annotations

import random
from typing import Any

import pytest
from proxy_flows import LOCAL_POD, cluster_objects, cluster_plan, endpoint, endpoint_slice, node_context, service

from proxy import plan, services_from, slices_from
from proxy.iptables import (
    FakeIptables,
    IptablesBackend,
    IptablesError,
    Packet,
    full_transaction,
    port_proto_hash,
    render,
)
from proxy.iptables.layout import LARGE_CLUSTER_ENDPOINTS
from proxy.plan import ProxyPlan


def make_plan(services: list[dict[str, Any]], slices: list[dict[str, Any]], **node: Any) -> ProxyPlan:
    return plan(services_from(services), slices_from(slices), node_context(**node))


def state(fake: FakeIptables) -> tuple[str, str]:
    return fake.save("filter"), fake.save("nat")


def full_state(p: ProxyPlan, endpoint_chains: Any = "all") -> tuple[str, str]:
    fake = FakeIptables(local_addresses=p.node.node_ips)
    IptablesBackend(runner=fake, endpoint_chains=endpoint_chains).sync(p)
    return state(fake)


def scaled(n_services: int, n_endpoints: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services = [service("bench", f"s{i}", f"10.96.{i // 250}.{i % 250 + 1}") for i in range(n_services)]
    slices = [endpoint_slice("bench", f"s{i}", [endpoint(f"10.244.{i // 50}.{(i % 50) * 5 + j + 1}", "node-b")
                                                for j in range(n_endpoints)]) for i in range(n_services)]
    return services, slices


# --- layout ---------------------------------------------------------------------------------------

def test_chain_names_are_upstreams() -> None:
    # The value kube-proxy's own tests use for ns1/svc1:p80 (pkg/proxy/iptables/proxier_test.go).
    assert port_proto_hash("ns1/svc1:p80", "tcp") == "XPGD46QRK7WJZT7O"
    rs = render(cluster_plan())
    assert "KUBE-SVC-XPGD46QRK7WJZT7O" in rs.chains
    assert all(len(c) <= 28 for c in rs.chains)


def test_load_balancing_rules_are_upstreams() -> None:
    rs = render(cluster_plan())
    rules = rs.chains["KUBE-SVC-XPGD46QRK7WJZT7O"]
    assert rules[0] == ('-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 10.96.0.41 --dport 80 '
                        '! -s 10.244.0.0/16 -j KUBE-MARK-MASQ')
    assert "-m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-" in rules[1]
    assert "statistic" not in rules[2]
    sep = rules[1].rsplit(" ", 1)[1]
    assert rs.chains[sep] == ('-m comment --comment "ns1/svc1:p80 -> 10.244.1.1:80" -s 10.244.1.1 -j KUBE-MARK-MASQ',
                              '-m comment --comment "ns1/svc1:p80 -> 10.244.1.1:80" -m tcp -p tcp '
                              '-j DNAT --to-destination 10.244.1.1:80')


def test_local_seps_layout_keeps_chains_only_for_local_endpoints() -> None:
    rs = render(cluster_plan(), endpoint_chains="local")
    seps = [c for c in rs.chains if c.startswith("KUBE-SEP-")]
    dnats = {rule.rsplit(" ", 1)[1] for rules in rs.chains.values() for rule in rules if "DNAT" in rule}
    local = {"10.244.1.1:80", "10.244.1.2:80", "10.244.1.4:80", "10.244.1.7:80", "10.244.1.11:80",
             "10.244.1.12:8080"}
    assert len(seps) == len(local)
    assert local < dnats  # remote ones are DNATed straight from KUBE-SVC / KUBE-SVL


def test_affinity_uses_recent_with_the_services_timeout() -> None:
    rs = render(cluster_plan())
    rules = [r for rules in rs.chains.values() for r in rules if "--rcheck" in r]
    assert len(rules) == 2 and all("--seconds 100 --reap" in r for r in rules)


def test_affinity_expires_with_the_clock() -> None:
    fake = FakeIptables(local_addresses=("172.18.0.2",))
    IptablesBackend(runner=fake).sync(cluster_plan())
    first = fake.trace(Packet(LOCAL_POD, "10.96.0.51", 80), remember=True)
    chosen = first.paths[0].dnat
    fake.now += 100
    assert fake.trace(Packet(LOCAL_POD, "10.96.0.51", 80)).endpoints == {chosen}
    fake.now += 1
    assert len(fake.trace(Packet(LOCAL_POD, "10.96.0.51", 80)).endpoints) == 2


def test_large_clusters_leave_out_endpoint_comments() -> None:
    n = LARGE_CLUSTER_ENDPOINTS // 5 + 1
    rs = render(make_plan(*scaled(n, 5)))
    svc = next(rules for c, rules in rs.chains.items() if c.startswith("KUBE-SVC-"))
    assert not any("->" in r for r in svc)
    assert "cluster IP" in svc[0]  # upstream keeps the service comments


def test_the_default_layout_has_fewer_endpoint_chains_above_the_large_cluster_threshold() -> None:
    # "auto": upstream's layout (a KUBE-SEP chain per endpoint) for small clusters; above upstream's own
    # threshold, KUBE-SEP chains for this node's endpoints only (iptables-nft restores faster).
    fake = FakeIptables()
    backend = IptablesBackend(runner=fake)
    assert backend.endpoint_chains == "auto"
    n = LARGE_CLUSTER_ENDPOINTS // 5
    small, large = make_plan(*scaled(n, 5)), make_plan(*scaled(n + 1, 5))
    backend.sync(small)
    assert state(fake) == full_state(small, "all")
    assert sum(c.startswith("KUBE-SEP-") for c in backend.applied.chains) == 5 * n  # type: ignore[union-attr]
    assert backend.sync(large).full  # the layout changed: everything is rewritten
    assert state(fake) == full_state(large, "local")
    assert not any(c.startswith("KUBE-SEP-") for c in backend.applied.chains)  # type: ignore[union-attr]
    assert backend.sync(small).full
    assert state(fake) == full_state(small, "all")
    assert IptablesBackend(runner=FakeIptables(), legacy=True).endpoint_chains == "auto"  # the runner decides


# --- syncs ----------------------------------------------------------------------------------------

def test_full_sync_twice_inserts_the_jumps_once() -> None:
    fake = FakeIptables()
    backend = IptablesBackend(runner=fake)
    backend.sync(cluster_plan())
    backend.sync(cluster_plan(), full=True)
    assert [r.text for r in fake.chain("filter", "INPUT").rules] == [
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL',
        '-m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS',
        '-m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" '
        '-j KUBE-EXTERNAL-SERVICES',
    ]
    assert len(fake.chain("nat", "PREROUTING").rules) == 1


def test_one_endpoint_change_rewrites_only_that_service() -> None:
    services, slices = scaled(200, 5)
    fake = FakeIptables()
    backend = IptablesBackend(runner=fake)
    assert backend.sync(make_plan(services, slices)).full
    slices[7]["endpoints"][2] = endpoint("10.244.99.9", "node-b")
    result = backend.sync(make_plan(services, slices))
    assert not result.full
    declared = [line for line in result.transaction.splitlines() if line.startswith(":KUBE-S")]
    svc = "KUBE-SVC-" + port_proto_hash("bench/s7:p80", "tcp")
    assert next(d.split()[0][1:] for d in declared if d.startswith((":KUBE-SVC", ":KUBE-SEP"))) == svc
    assert "10.244.99.9" in result.transaction
    assert "bench/s8:" not in result.transaction.replace('"bench/s8:p80 cluster IP"', "")
    assert state(fake) == full_state(make_plan(services, slices))


def test_no_change_is_an_empty_transaction() -> None:
    services, slices = cluster_objects()
    backend = IptablesBackend(runner=FakeIptables())
    backend.sync(make_plan(services, slices))
    assert backend.sync(make_plan(services, slices)).transaction == ""


@pytest.mark.parametrize("endpoint_chains", ["all", "local"])
def test_random_partial_syncs_match_a_full_sync(endpoint_chains: Any) -> None:
    rng = random.Random(5)
    services, slices = cluster_objects()
    fake = FakeIptables(local_addresses=("172.18.0.2",))
    backend = IptablesBackend(runner=fake, endpoint_chains=endpoint_chains)
    backend.sync(make_plan(services, slices))
    ips = [f"10.244.{n}.{h}" for n in (1, 2) for h in range(30, 36)]
    for step in range(40):
        i = rng.randrange(len(slices))
        change = rng.choice(["endpoints", "affinity", "etp", "remove-service", "terminating"])
        svc_name = slices[i]["metadata"]["labels"]["kubernetes.io/service-name"]
        svc = next((s for s in services if s["metadata"]["name"] == svc_name), None)
        if change == "endpoints":
            slices[i]["endpoints"] = [endpoint(ip, "node-a" if ".1." in ip else "node-b")
                                      for ip in rng.sample(ips, rng.randrange(4))]
        elif change == "terminating" and slices[i]["endpoints"]:
            slices[i]["endpoints"][0]["conditions"] = {"ready": False, "serving": True, "terminating": True}
        elif svc is not None and change == "affinity":
            svc["spec"]["sessionAffinity"] = rng.choice(["ClientIP", "None"])
            svc["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": rng.choice([30, 60])}}
        elif svc is not None and change == "etp" and svc["spec"].get("type") in ("NodePort", "LoadBalancer"):
            svc["spec"]["externalTrafficPolicy"] = rng.choice(["Local", "Cluster"])
        elif svc is not None and change == "remove-service" and len(services) > 3:
            services.remove(svc)
        p = make_plan(services, slices)
        assert not backend.sync(p).full
        assert state(fake) == full_state(p, endpoint_chains), f"step {step}: {change}"


def test_a_failed_sync_forces_a_full_one() -> None:
    class Failing(FakeIptables):
        fail = True

        def restore(self, text: str) -> None:
            if self.fail and "10.244.99.1" in text:
                raise IptablesError("boom")
            super().restore(text)

    services, slices = scaled(3, 2)
    fake = Failing()
    backend = IptablesBackend(runner=fake)
    backend.sync(make_plan(services, slices))
    slices[0]["endpoints"][0] = endpoint("10.244.99.1", "node-b")
    with pytest.raises(IptablesError):
        backend.sync(make_plan(services, slices))
    fake.fail = False
    assert backend.sync(make_plan(services, slices)).full
    assert state(fake) == full_state(make_plan(services, slices))


def test_full_sync_deletes_stale_chains_it_finds() -> None:
    fake = FakeIptables()
    fake.restore("*nat\n:KUBE-SVC-AAAAAAAAAAAAAAAA - [0:0]\n:KUBE-SEP-AAAAAAAAAAAAAAAA - [0:0]\n"
                 "-A KUBE-SVC-AAAAAAAAAAAAAAAA -j KUBE-SEP-AAAAAAAAAAAAAAAA\n:OTHER - [0:0]\nCOMMIT\n")
    IptablesBackend(runner=fake).sync(cluster_plan())
    chains = set(fake.tables["nat"])
    assert "KUBE-SVC-AAAAAAAAAAAAAAAA" not in chains and "KUBE-SEP-AAAAAAAAAAAAAAAA" not in chains
    assert "OTHER" in chains  # not ours


def test_cleanup_removes_every_chain_and_jump_of_ours() -> None:
    fake = FakeIptables()
    fake.restore("*filter\n-A INPUT -s 192.0.2.1 -j DROP\nCOMMIT\n")
    backend = IptablesBackend(runner=fake)
    backend.sync(cluster_plan())
    backend.cleanup()
    assert "KUBE" not in fake.save("nat") and "KUBE" not in fake.save("filter")
    assert "-A INPUT -s 192.0.2.1 -j DROP" in fake.save("filter")  # not ours
    backend.cleanup()  # idempotent
    assert backend.sync(cluster_plan()).full


def test_tampering_is_detected() -> None:
    fake = FakeIptables()
    backend = IptablesBackend(runner=fake)
    assert not backend.intact()  # nothing synced yet
    backend.sync(cluster_plan())
    assert backend.intact()
    fake.restore('*nat\n-D PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES\nCOMMIT\n')
    assert not backend.intact()
    backend.sync(cluster_plan(), full=True)
    assert backend.intact()
    svc = "KUBE-SVC-" + port_proto_hash("ns1/svc1:p80", "tcp")
    fake.tables["nat"].pop(svc)  # as if someone had deleted it behind our back
    assert not backend.intact()


def test_full_transaction_restores_into_an_empty_fake() -> None:
    fake = FakeIptables()
    fake.restore(full_transaction(render(cluster_plan())))
    assert fake.tables["nat"]["KUBE-SERVICES"].rules[-1].target == "KUBE-NODEPORTS"
