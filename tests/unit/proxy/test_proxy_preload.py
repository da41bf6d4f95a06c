"""Preloaded full syncs (proxy/nftables/preload.py) on the fake: big sets filled before one small
transaction makes them live, new names per generation, partial syncs against those names, stale chains
deleted a sync later, and the classic transaction when a step is refused."""

from __future__ import annotations

from typing import Any

from proxy_flows import endpoint
from test_proxy_flows import observed
from test_proxy_sync import full_state, make_plan, scaled, settled, snapshot

from proxy import NftError
from proxy.nftables import FakeNft, NftablesBackend, Packet, full_transaction
from proxy.nftables.preload import FakeElements, Generation, plan_full_load
from proxy.nftables.renderer import render
from proxy.plan import ProxyPlan


def preloaded(fake: FakeNft, threshold: int = 50) -> NftablesBackend:
    return NftablesBackend(runner=fake, elements=FakeElements(fake), preload_threshold=threshold)


def renamed_full_state(p: ProxyPlan, generation: Generation) -> Any:
    """What a classic full sync of P writes under GENERATION's names."""
    fake = FakeNft(local_addresses=p.node.node_ips)
    fake.run(full_transaction(generation.ruleset(render(p))))
    return snapshot(fake.table("ip", "kubesim-proxy"))


def endpoints(fake: FakeNft, ip: str) -> str:
    return observed(fake.trace(Packet("10.244.1.200", ip, 80, "tcp", "pod"))).output


def test_big_sets_go_through_the_loader_and_the_transaction_is_small() -> None:
    services, slices = scaled(200, 5)
    fake = FakeNft()
    loader = FakeElements(fake)
    backend = NftablesBackend(runner=fake, elements=loader, preload_threshold=150)
    result = backend.sync(make_plan(services, slices))
    assert result.full and backend.last_full == "preloaded"
    # 1000 backends, 200 each of service-ips, lb-ips and cluster-ips: none of them in the nft text.
    assert loader.loads == [1600]
    elements = [line for line in result.transaction.splitlines() if line.startswith("add element")]
    assert elements == ["add element ip kubesim-proxy nodeport-ips { 172.18.0.2 }"]
    p = make_plan(services, slices)
    assert settled(snapshot(fake.table("ip", "kubesim-proxy")), full_state(p)) == full_state(p)


def test_each_full_sync_writes_a_new_generation_and_partial_syncs_follow_its_names() -> None:
    services, slices = scaled(200, 5)
    fake = FakeNft()
    backend = preloaded(fake)
    backend.sync(make_plan(services, slices))
    assert "lb-5-backends" in fake.table("ip", "kubesim-proxy").sets
    backend.sync(make_plan(services, slices), full=True)
    table = fake.table("ip", "kubesim-proxy")
    assert {"lb-5-backends-g1", "lb-ips-g1", "service-ips-g1", "cluster-ips-g1"} <= set(table.sets)
    assert not {"lb-5-backends", "lb-ips", "service-ips", "cluster-ips"} & set(table.sets)
    # The old lb chain is flushed now and deleted by the next sync (two-phase deletion).
    assert "lb-5-g1" in table.chains and table.chains["lb-5"].rules == []

    slices[7]["endpoints"][2] = endpoint("10.244.99.9", "node-b")
    p = make_plan(services, slices)
    result = backend.sync(p)
    assert not result.full
    assert "lb-5-backends-g1" in result.transaction and "delete chain ip kubesim-proxy lb-5\n" in result.transaction
    table = fake.table("ip", "kubesim-proxy")
    assert "lb-5" not in table.chains
    assert snapshot(table) == renamed_full_state(p, backend._generation)
    assert "10.244.99.9:80" in endpoints(fake, "10.96.0.8")

    backend.sync(p, full=True)  # the third generation has the renderer's names again
    table = fake.table("ip", "kubesim-proxy")
    assert {"lb-5-backends", "lb-ips"} <= set(table.sets) and "lb-5-backends-g1" not in table.sets
    assert settled(snapshot(table), full_state(p)) == full_state(p)


def test_a_refused_step_falls_back_to_the_classic_transaction() -> None:
    services, slices = scaled(100, 5)
    fake = FakeNft()

    class Refusing(FakeElements):
        def load(self, *args: Any, **kwargs: Any) -> int:
            raise NftError("netlink: File exists")

    backend = NftablesBackend(runner=fake, elements=Refusing(fake), preload_threshold=50)
    p = make_plan(services, slices)
    assert backend.sync(p).full and backend.last_full == "fallback"
    assert settled(snapshot(fake.table("ip", "kubesim-proxy")), full_state(p)) == full_state(p)
    slices[3]["endpoints"] = []
    assert not backend.sync(make_plan(services, slices)).full


def test_no_table_and_small_sets_need_no_generation() -> None:
    p: ProxyPlan = make_plan(*scaled(10, 2))
    assert plan_full_load(render(p), chains=None, sets=None, threshold=1000) is None
    load = plan_full_load(render(p), chains=None, sets=None, threshold=5)
    assert load is not None and not load.generation
    assert set(load.elements) == {"lb-2-backends", "lb-ips", "service-ips", "cluster-ips"}
    # The chain reading the typeof backends map is filled with it, before anything refers to it.
    assert "add rule ip kubesim-proxy lb-2 dnat" in load.prepare and "lb-2 dnat" not in load.commit


def test_without_netlink_a_full_sync_is_classic() -> None:
    services, slices = scaled(100, 5)
    fake = FakeNft()

    class Unlisting(FakeElements):
        def list_sets(self, family: str, table: str) -> dict[str, str] | None:
            raise NftError("netlink: listing sets of ip kubesim-proxy: [Errno 1] Operation not permitted")

    backend = NftablesBackend(runner=fake, elements=Unlisting(fake), preload_threshold=50)
    p = make_plan(services, slices)
    assert backend.sync(p).full and backend.last_full == "classic"
    assert snapshot(fake.table("ip", "kubesim-proxy")) == full_state(p)
