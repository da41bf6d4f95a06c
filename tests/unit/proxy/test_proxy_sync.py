"""Full and partial syncs: a partial sync is small, touches only elements for endpoint changes, and
always leaves the same table a full sync would."""

from __future__ import annotations

import random
from typing import Any

import pytest
from proxy_flows import FLOWS, check, cluster_objects, endpoint, endpoint_slice, node_context, service
from test_proxy_flows import nftables_tracer, observed, packet

from firewall.nftables.fake import FakeTable
from proxy import NftError, parse_endpoint_slice, parse_service, plan, replan, services_from, slices_from
from proxy.nftables import FakeNft, NftablesBackend, full_transaction, render
from proxy.nftables.renderer import Renderer
from proxy.plan import ProxyPlan


def make_plan(services: list[dict[str, Any]], slices: list[dict[str, Any]], **node: Any) -> ProxyPlan:
    return plan(services_from(services), slices_from(slices), node_context(**node))


def snapshot(table: FakeTable) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[object, object]]]:
    chains = {n: tuple(r.text for r in c.rules) for n, c in table.chains.items()}
    sets = {n: dict(s.elements) for n, s in table.sets.items()}
    return chains, sets


def settled(state: tuple[dict[str, tuple[str, ...]], dict[str, dict[object, object]]],
            full: tuple[dict[str, tuple[str, ...]], dict[str, dict[object, object]]],
            ) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[object, object]]]:
    """STATE without the empty chains a full sync would not have: stale chains, flushed and waiting for
    the next sync to delete them (two-phase deletion)."""
    chains, sets = state
    return {n: r for n, r in chains.items() if r or n in full[0]}, sets


def full_state(p: ProxyPlan) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[object, object]]]:
    fake = FakeNft(local_addresses=p.node.node_ips)
    fake.run(full_transaction(render(p)))
    return snapshot(fake.table("ip", "kubesim-proxy"))


def scaled(n_services: int, n_endpoints: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services = [service("bench", f"s{i}", f"10.96.{i // 250}.{i % 250 + 1}") for i in range(n_services)]
    slices = [endpoint_slice("bench", f"s{i}", [endpoint(f"10.244.{i // 50}.{(i % 50) * 5 + j + 1}", "node-b")
                                                for j in range(n_endpoints)]) for i in range(n_services)]
    return services, slices


def test_one_endpoint_change_is_a_few_element_lines() -> None:
    services, slices = scaled(200, 5)
    fake = FakeNft()
    backend = NftablesBackend(runner=fake)
    assert backend.sync(make_plan(services, slices)).full
    slices[7]["endpoints"][2] = endpoint("10.244.99.9", "node-b")
    result = backend.sync(make_plan(services, slices))
    assert not result.full
    lines = result.transaction.splitlines()
    assert all(line.startswith(("add element", "delete element")) for line in lines), lines
    assert len(lines) <= 4
    assert "10.244.99.9" in result.transaction
    assert snapshot(fake.table("ip", "kubesim-proxy")) == full_state(make_plan(services, slices))


def test_endpoint_count_change_moves_the_service_to_another_lb_chain() -> None:
    services, slices = scaled(3, 3)
    fake = FakeNft()
    backend = NftablesBackend(runner=fake)
    backend.sync(make_plan(services, slices))
    slices[0]["endpoints"].append(endpoint("10.244.99.1", "node-b"))
    result = backend.sync(make_plan(services, slices))
    assert "add chain ip kubesim-proxy lb-4" in result.transaction
    assert "delete chain" not in result.transaction  # lb-3 is still used by the other services
    trace = fake.trace(packet_to("10.96.0.1"))
    assert len(trace.endpoints) == 4


def test_a_chain_gone_stale_is_flushed_now_and_deleted_by_the_next_sync() -> None:
    # Kernels before 6.2 may refuse to delete a chain in the transaction removing the last map element
    # that jumps to it; upstream's proxier deletes in a later sync, and so do we.
    services, slices = scaled(2, 3)
    fake = FakeNft()
    backend = NftablesBackend(runner=fake)
    backend.sync(make_plan(services, slices))
    for s in slices:
        s["endpoints"].append(endpoint(f"10.244.99.{len(s['endpoints'])}", "node-b"))
    moved = backend.sync(make_plan(services, slices)).transaction
    assert "add chain ip kubesim-proxy lb-4" in moved
    assert "flush chain ip kubesim-proxy lb-3" in moved and "delete chain" not in moved
    assert fake.table("ip", "kubesim-proxy").chains["lb-3"].rules == []
    slices[0]["endpoints"][0] = endpoint("10.244.98.1", "node-b")
    later = backend.sync(make_plan(services, slices)).transaction
    assert "delete chain ip kubesim-proxy lb-3" in later
    assert "lb-3" not in fake.table("ip", "kubesim-proxy").chains
    assert backend.sync(make_plan(services, slices)).transaction == ""


def test_a_stale_chain_needed_again_before_its_deletion_is_filled_again() -> None:
    services, slices = scaled(1, 3)
    fake = FakeNft()
    backend = NftablesBackend(runner=fake)
    backend.sync(make_plan(services, slices))
    slices[0]["endpoints"].append(endpoint("10.244.99.1", "node-b"))
    backend.sync(make_plan(services, slices))
    slices[0]["endpoints"].pop()
    back = backend.sync(make_plan(services, slices)).transaction
    assert "delete chain ip kubesim-proxy lb-3" not in back
    assert len(fake.trace(packet_to("10.96.0.1")).endpoints) == 3


def packet_to(ip: str) -> Any:
    from proxy.nftables import Packet
    return Packet("10.244.1.200", ip, 80)


def test_no_change_is_an_empty_transaction() -> None:
    services, slices = cluster_objects()
    fake = FakeNft()
    backend = NftablesBackend(runner=fake)
    backend.sync(make_plan(services, slices))
    assert backend.sync(make_plan(services, slices)).transaction == ""


def test_random_changes_partial_equals_full() -> None:
    rng = random.Random(5)
    services, slices = cluster_objects()
    fake = FakeNft(local_addresses=("172.18.0.2",))
    backend = NftablesBackend(runner=fake)
    backend.sync(make_plan(services, slices))
    for step in range(40):
        kind = rng.choice(["drop-endpoint", "add-endpoint", "drop-service", "restore", "affinity", "etp"])
        if kind == "drop-endpoint":
            s = rng.choice([s for s in slices if s["endpoints"]] or slices)
            if s["endpoints"]:
                s["endpoints"].pop(rng.randrange(len(s["endpoints"])))
        elif kind == "add-endpoint":
            s = rng.choice(slices)
            s["endpoints"].append(endpoint(f"10.244.{rng.choice([1, 2])}.{100 + step}",
                                           rng.choice(["node-a", "node-b"])))
        elif kind == "drop-service" and len(services) > 3:
            services.pop(rng.randrange(len(services)))
        elif kind == "restore":
            services, slices = cluster_objects()
        elif kind == "affinity":
            svc = rng.choice(services)
            svc["spec"]["sessionAffinity"] = rng.choice(["ClientIP", "None"])
            svc["spec"]["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": rng.choice([10, 20])}}
        else:
            svc = rng.choice(services)
            svc["spec"]["externalTrafficPolicy"] = rng.choice(["Local", "Cluster"])
        p = make_plan(services, slices)
        result = backend.sync(p)
        assert not result.full, f"step {step} ({kind})"
        full = full_state(p)
        assert settled(snapshot(fake.table("ip", "kubesim-proxy")), full) == full, f"step {step} ({kind})"
    # And packets agree with a table made from scratch.
    tracer, _ = nftables_tracer(make_plan(*cluster_objects()))
    backend.sync(make_plan(*cluster_objects()))
    assert check(FLOWS, lambda f: observed(fake.trace(packet(f)))) == check(FLOWS, tracer) == []


class FailingOnce:
    def __init__(self, inner: FakeNft) -> None:
        self.inner = inner
        self.fail = False
        self.seen: list[str] = []

    def run(self, transaction: str) -> None:
        self.seen.append(transaction)
        if self.fail:
            self.fail = False
            raise NftError("injected failure", transaction=transaction)
        self.inner.run(transaction)

    def list_table(self, family: str, table: str, *, terse: bool = False) -> str | None:
        return self.inner.list_table(family, table, terse=terse)

    def list_chains(self, family: str, table: str) -> list[str] | None:
        return self.inner.list_chains(family, table)


def test_a_failed_sync_forces_the_next_one_full() -> None:
    services, slices = scaled(5, 2)
    runner = FailingOnce(FakeNft())
    backend = NftablesBackend(runner=runner)
    backend.sync(make_plan(services, slices))
    slices[0]["endpoints"].pop()
    runner.fail = True
    with pytest.raises(NftError):
        backend.sync(make_plan(services, slices))
    result = backend.sync(make_plan(services, slices))
    assert result.full and result.transaction.startswith("add table ip kubesim-proxy\ndelete table")


def test_node_context_change_forces_a_full_sync() -> None:
    services, slices = scaled(2, 1)
    backend = NftablesBackend(runner=FakeNft())
    backend.sync(make_plan(services, slices))
    assert backend.sync(make_plan(services, slices, masquerade_all=True)).full


def test_full_sync_is_one_transaction_with_few_chains() -> None:
    services, slices = scaled(1000, 5)
    text = full_transaction(render(make_plan(services, slices)))
    chains = [line for line in text.splitlines() if line.startswith("add chain")]
    assert len(chains) < 30  # the quadratic trap of nft 1.0.6 is in chains per transaction
    assert text.count("add element") < 200


def test_cleanup_deletes_the_table() -> None:
    fake = FakeNft()
    backend = NftablesBackend(runner=fake)
    backend.sync(make_plan(*scaled(2, 1)))
    backend.cleanup()
    assert fake.tables == {}
    backend.cleanup()  # idempotent


def test_shared_and_contested_elements_survive_their_first_claimant() -> None:
    # Two Services share an endpoint (the hairpin pair) and, wrongly, an externalIP:port.
    services = [service("ns", "a", "10.96.0.1", externalIPs=["192.0.2.1"]),
                service("ns", "b", "10.96.0.2", externalIPs=["192.0.2.1"])]
    slices = [endpoint_slice("ns", "a", [endpoint("10.244.1.5")]),
              endpoint_slice("ns", "b", [endpoint("10.244.1.5"), endpoint("10.244.2.6", "node-b")])]
    fake = FakeNft()
    backend = NftablesBackend(runner=fake)
    backend.sync(make_plan(services, slices))
    assert fake.trace(packet_to_ext("192.0.2.1")).endpoints == {"10.244.1.5:80"}  # a's, the first
    backend.sync(make_plan(services[1:], slices))
    assert fake.trace(packet_to_ext("192.0.2.1")).endpoints == {"10.244.1.5:80", "10.244.2.6:80"}
    hairpin = fake.table("ip", "kubesim-proxy").sets["hairpin"].elements
    assert len(hairpin) == 1  # still needed by b
    full = full_state(make_plan(services[1:], slices))
    assert settled(snapshot(fake.table("ip", "kubesim-proxy")), full) == full
    backend.sync(make_plan([], []))
    assert fake.table("ip", "kubesim-proxy").sets["hairpin"].elements == {}


def packet_to_ext(ip: str) -> Any:
    from proxy.nftables import Packet
    return Packet("203.0.113.9", ip, 80)


def test_incremental_plan_equals_a_fresh_one() -> None:
    services, slices = cluster_objects()
    ports = services_from(services)
    before = plan(ports, slices_from(slices), node_context())
    slices[0]["endpoints"].pop()
    after = plan(ports, slices_from(slices), node_context(), previous=before, changed={("ns1", "svc1")})
    assert after == plan(ports, slices_from(slices), node_context())
    assert after.service("ns2/svc2:p80") is before.service("ns2/svc2:p80")


def test_replanning_only_the_changed_services_equals_planning_everything() -> None:
    """The live proxy's partial sync: replan() from the last plan and the changed Services (Services
    added, changed and deleted, slices moved between Services, ports renamed) is exactly plan() of all."""
    rng = random.Random(7)
    services = {f"s{i}": service("ns", f"s{i}", f"10.96.0.{i + 10}") for i in range(12)}
    slices = {f"s{i}": endpoint_slice("ns", f"s{i}", [endpoint(f"10.244.1.{i + 10}")]) for i in range(12)}

    def everything() -> ProxyPlan:
        return plan(services_from(list(services.values())), slices_from(list(slices.values())), node_context())

    current = everything()
    renderer = Renderer()
    renderer.render(current)
    for step in range(60):
        name = f"s{rng.randrange(14)}"
        moved_from = None
        match rng.randrange(5):
            case 0:
                services[name] = service("ns", name, f"10.96.1.{step}", ports=[{"name": rng.choice(["p80", "q"]),
                                                                               "port": 80}])
            case 1:
                services.pop(name, None)
            case 2:
                slices[name] = endpoint_slice("ns", name, [endpoint(f"10.244.2.{step}"), endpoint("10.244.3.1")])
            case 3:
                slices.pop(name, None)
            case 4:
                other = f"s{rng.randrange(14)}"
                if other in slices:  # relabelled: the slice now belongs to NAME, and OTHER loses it
                    slices[name] = {**slices.pop(other), "metadata": {
                        "namespace": "ns", "name": f"{other}-1", "labels": {"kubernetes.io/service-name": name}}}
                    moved_from = other
        touched = {name} | ({moved_from} if moved_from else set())
        changes = {}
        for svc in touched:
            parsed = parse_service(services[svc]) if svc in services else None
            mine = [parse_endpoint_slice(o) for o in slices.values()
                    if o["metadata"]["labels"]["kubernetes.io/service-name"] == svc]
            changes[("ns", svc)] = (tuple(parsed or ()), tuple(x for x in mine if x is not None))
        before = current
        current = replan(current, changes)
        assert current == everything(), f"step {step}: {touched}"
        # The renderer, told what replan() changed, looks at nothing else and still renders the same table.
        assert current.changes_since(before) is not None
        assert renderer.render(current) == render(everything()), f"step {step}: {touched}"
        for untouched in set(before.by_name) & set(current.by_name):
            if before.by_name[untouched].port.name.service[1] not in touched:
                assert current.by_name[untouched] is before.by_name[untouched]  # reused, not planned again
