"""The packet-flow tables (proxy_flows.py) run against both backends on their fakes.

"iptables" is upstream's layout (a KUBE-SEP chain per endpoint, the default); "iptables-local-seps" is the
option with KUBE-SEP chains for this node's endpoints only (see proxy/iptables/layout.py). Both must
answer every flow as Kubernetes' iptables mode does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import pytest
from proxy_flows import (
    DROP,
    FLOWS,
    LOCAL_POD,
    MASQUERADE_ALL_FLOWS,
    NO_CLUSTER_CIDR_FLOWS,
    REJECT,
    Flow,
    Observed,
    Tracer,
    check,
    cluster_plan,
    node_context,
)

from proxy import ProxyPlan
from proxy.iptables import FakeIptables, IptablesBackend
from proxy.nftables import FakeNft, NftablesBackend, Packet, TraceResult
from proxy.nftables.preload import FakeElements


class TracingFake(Protocol):
    def trace(self, packet: Packet, *, remember: bool = False) -> TraceResult: ...


def observed(result: TraceResult) -> Observed:
    verdict = result.verdict
    if verdict == "DNAT":
        return Observed(", ".join(sorted(result.endpoints)), result.masquerade)
    if verdict in ("DROP", "REJECT"):
        return Observed(verdict, result.masquerade)
    if verdict == "ACCEPT":
        return Observed("", result.masquerade)
    return Observed(f"MIXED {[(p.verdict, p.dnat) for p in result.paths]}", result.masquerade)


def packet(flow: Flow) -> Packet:
    return Packet(flow.source, flow.destination, flow.port, flow.protocol, flow.from_())  # type: ignore[arg-type]


def nftables_tracer(plan: ProxyPlan) -> tuple[Tracer, FakeNft]:
    fake = FakeNft(local_addresses=plan.node.node_ips)
    NftablesBackend(runner=fake).sync(plan)
    return (lambda flow: observed(fake.trace(packet(flow)))), fake


def nftables_preloaded_tracer(plan: ProxyPlan) -> tuple[Tracer, FakeNft]:
    """Full syncs that fill every plain set through the element loader (preload.py), twice: the second
    writes a new generation of each over the first, which is what a periodic full sync does."""
    fake = FakeNft(local_addresses=plan.node.node_ips)
    backend = NftablesBackend(runner=fake, elements=FakeElements(fake), preload_threshold=1)
    backend.sync(plan)
    backend.sync(plan, full=True)
    assert backend.last_full == "preloaded"
    return (lambda flow: observed(fake.trace(packet(flow)))), fake


def iptables_tracer(plan: ProxyPlan, *, local_seps: bool = False) -> tuple[Tracer, FakeIptables]:
    fake = FakeIptables(local_addresses=plan.node.node_ips)
    IptablesBackend(runner=fake, endpoint_chains="local" if local_seps else "all").sync(plan)
    return (lambda flow: observed(fake.trace(packet(flow)))), fake


BACKENDS: dict[str, tuple[str, Callable[[ProxyPlan], tuple[Tracer, TracingFake]]]] = {
    "nftables": ("nftables", nftables_tracer),
    "nftables-preloaded": ("nftables", nftables_preloaded_tracer),
    "iptables": ("iptables", iptables_tracer),
    "iptables-local-seps": ("iptables", lambda p: iptables_tracer(p, local_seps=True)),
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def tracer(backend: str, plan: ProxyPlan) -> tuple[Tracer, TracingFake, str]:
    mode, make = BACKENDS[backend]
    t, fake = make(plan)
    return t, fake, mode


@pytest.mark.parametrize("flow", FLOWS, ids=lambda f: f.name)
def test_flow(flow: Flow, backend: str) -> None:
    t, _, mode = tracer(backend, cluster_plan())
    assert check([flow], t, mode) == []


def test_all_flows_in_one_ruleset(backend: str) -> None:
    t, _, mode = tracer(backend, cluster_plan())
    assert check(FLOWS, t, mode) == []


def test_masquerade_all(backend: str) -> None:
    t, _, mode = tracer(backend, cluster_plan(node_context(masquerade_all=True)))
    assert check(MASQUERADE_ALL_FLOWS, t, mode) == []


def test_without_cluster_cidr(backend: str) -> None:
    t, _, mode = tracer(backend, cluster_plan(node_context(cluster_cidrs=())))
    assert check(NO_CLUSTER_CIDR_FLOWS, t, mode) == []


def test_nodeport_addresses_restrict_nodeports(backend: str) -> None:
    node = node_context(node_ips=("172.18.0.2", "192.168.50.2"), nodeport_addresses=("192.168.50.0/24",))
    t, _, mode = tracer(backend, cluster_plan(node))
    assert check([
        Flow("NodePort on a selected address", "203.0.113.5", "192.168.50.2", 3003, "10.244.2.3:80", masq=True),
        Flow("NodePort on an unselected node address", "203.0.113.5", "172.18.0.2", 3003, "", ingress="external"),
    ], t, mode) == []


def test_session_affinity_sticks_to_the_first_choice(backend: str) -> None:
    _, fake, _ = tracer(backend, cluster_plan())
    first = fake.trace(Packet(LOCAL_POD, "10.96.0.51", 80), remember=True)
    assert first.verdict == "DNAT" and len(first.endpoints) == 2
    chosen = first.paths[0].dnat
    again = fake.trace(Packet(LOCAL_POD, "10.96.0.51", 80))
    assert again.endpoints == {chosen}
    # Affinity is per client address, and per service port, not per destination port of the client.
    other = fake.trace(Packet("10.244.1.201", "10.96.0.51", 80))
    assert len(other.endpoints) == 2


def test_affinity_timeout_is_the_services() -> None:
    _, fake = nftables_tracer(cluster_plan())
    table = fake.table("ip", "kubesim-proxy")
    timeouts = {s.timeout for name, s in table.sets.items() if name.startswith("affinity-")}
    assert timeouts == {100}


def test_verdicts_are_exclusive(backend: str) -> None:
    # A sanity check of the tracer itself: DROP and REJECT never come with endpoints.
    t, _, _ = tracer(backend, cluster_plan())
    for flow in FLOWS:
        seen = t(flow)
        if seen.output in (DROP, REJECT):
            assert seen.masq is False
