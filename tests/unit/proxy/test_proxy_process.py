"""The kube-proxy process: its conntrack decisions, and a whole proxy against a real
apiserver (the harness) writing into the in-memory nftables."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from control.client import ENDPOINT_SLICES, NODES, SERVICES
from firewall.nftables.fake import FakeNft
from firewall.tracing import Packet
from proxy.model import services_from, slices_from
from proxy.nftables.backend import NftablesBackend
from proxy.plan import NodeContext, plan
from proxy.server import PARSED, ProxyConfig, ProxyServer, conntrack_cleanup, run_conntrack
from tests.harness import local_apiserver
from tests.waiting import wait_until_async


def _service(name: str, protocol: str = "UDP") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.53", "type": "ClusterIP",
                     "ports": [{"name": "dns", "port": 53, "protocol": protocol, "targetPort": 53}]}}


def _slice(name: str, ips: list[str], protocol: str = "UDP") -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-x", "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "dns", "port": 53, "protocol": protocol}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


def _plan(ips: list[str], protocol: str = "UDP") -> Any:
    node = NodeContext(name="n", node_ips=("172.18.0.3",), cluster_cidrs=("10.244.0.0/16",))
    return plan(services_from([_service("dns", protocol)]), slices_from([_slice("dns", ips, protocol)]), node)


def test_conntrack_cleanup_for_udp_services() -> None:
    empty, one, two = _plan([]), _plan(["10.244.1.5"]), _plan(["10.244.1.5", "10.244.2.6"])
    # Endpoints appear where there were none: flush entries that cached the rejected packets.
    assert conntrack_cleanup(empty, one) == [
        ["conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.53", "--orig-port-dst", "53"]]
    # An endpoint goes: flush the flows that were DNATed to it, or DNS clients black-hole.
    assert conntrack_cleanup(two, one) == [
        ["conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.53", "--orig-port-dst", "53",
         "--reply-src", "10.244.2.6"]]
    assert conntrack_cleanup(one, two) == []
    assert conntrack_cleanup(_plan([], "TCP"), _plan(["10.244.1.5"], "TCP")) == []  # TCP needs nothing


def test_conntrack_cleanup_for_a_udp_node_port() -> None:
    def node_port_plan(ips: list[str]) -> Any:
        svc = _service("dns")
        svc["spec"]["type"] = "NodePort"
        svc["spec"]["ports"][0]["nodePort"] = 30053
        node = NodeContext(name="n", node_ips=("172.18.0.3",), cluster_cidrs=("10.244.0.0/16",))
        return plan(services_from([svc]), slices_from([_slice("dns", ips)]), node)

    # A NodePort is reached on any node address: the flows are found by the port and the endpoint.
    assert ["conntrack", "-D", "-p", "udp", "--orig-port-dst", "30053", "--reply-src", "10.244.2.6"] in \
        conntrack_cleanup(node_port_plan(["10.244.1.5", "10.244.2.6"]), node_port_plan(["10.244.1.5"]))


def test_run_conntrack_says_when_the_tool_is_missing(caplog: Any) -> None:
    run_conntrack(["conntrack-not-installed-here", "-D"])
    assert "conntrack is not installed" in caplog.text


async def _node_and_dns_service(api: Any) -> Any:
    """The admin client of API, after creating node worker-1 and the UDP Service dns (no endpoints yet)."""
    admin = api.client("admin")
    await admin.create(NODES, {"metadata": {"name": "worker-1"}, "status": {
        "addresses": [{"type": "InternalIP", "address": "172.18.0.3"}]}})
    await admin.create(SERVICES, _service("dns"), namespace="default")
    return admin


def _config(**overrides: Any) -> ProxyConfig:
    return ProxyConfig(**{"node_name": "worker-1", "cluster_cidr": "10.244.0.0/16", "service_cidr": "10.96.0.0/16",
                          "min_sync_period": 0.05, "healthz_address": "127.0.0.1:0",
                          "metrics_address": "127.0.0.1:0", **overrides})

def test_proxy_programs_services_from_the_apiserver(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin = await _node_and_dns_service(api)
            fake = FakeNft(local_addresses=["172.18.0.3"])
            server = ProxyServer(api.client("kube-proxy"), _config(tamper_check_period=0.1),
                                 NftablesBackend(runner=fake))
            task = asyncio.get_running_loop().create_task(server.run())
            try:
                probe = Packet("10.244.1.9", "10.96.0.53", 53, "UDP", "pod")

                async def verdict(expected: str) -> Any:
                    for _ in range(100):
                        await asyncio.sleep(0.05)
                        if fake.tables and fake.trace(probe).verdict == expected:
                            return fake.trace(probe)
                    raise AssertionError(f"never saw {expected}: {fake.trace(probe).verdict if fake.tables else None}")

                await verdict("REJECT")  # a service without endpoints refuses at once
                await admin.create(ENDPOINT_SLICES, _slice("dns", ["10.244.2.6", "10.244.1.5"]), namespace="default")
                traced = await verdict("DNAT")
                assert traced.endpoints == {"10.244.2.6:53", "10.244.1.5:53"}
                fake.run("delete table ip kubesim-proxy\n")  # tampering from outside...
                restored = await verdict("DNAT")  # ...is noticed and undone
                assert restored.endpoints == traced.endpoints
                assert server.metrics.last_sync._value.get() > 0
            finally:
                server.stop()
                await task

    asyncio.run(main())



class _ThreadRecordingBackend(NftablesBackend):
    """The real backend on the fake kernel, noting which thread each kernel call ran on."""

    def __init__(self, fake: FakeNft) -> None:
        super().__init__(runner=fake)
        self.threads: list[int] = []

    def sync(self, result: Any, *, full: bool = False) -> Any:
        self.threads.append(threading.get_ident())
        return super().sync(result, full=full)


def test_syncs_and_conntrack_run_off_the_event_loop_and_drop_flows_of_a_removed_udp_endpoint(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin = await _node_and_dns_service(api)
            await admin.create(ENDPOINT_SLICES, _slice("dns", ["10.244.2.6", "10.244.1.5"]), namespace="default")
            backend = _ThreadRecordingBackend(FakeNft(local_addresses=["172.18.0.3"]))
            deleted: list[tuple[list[str], int]] = []
            server = ProxyServer(api.client("kube-proxy"), _config(), backend,
                                 conntrack=lambda argv: deleted.append((argv, threading.get_ident())))
            task = asyncio.get_running_loop().create_task(server.run())
            try:
                await wait_until_async(lambda: server.applied is not None, "the first sync")
                loop_thread = threading.get_ident()
                slice_obj = await admin.get(ENDPOINT_SLICES, "dns-x", namespace="default")
                slice_obj["endpoints"] = [e for e in slice_obj["endpoints"] if e["addresses"] == ["10.244.1.5"]]
                await admin.update(ENDPOINT_SLICES, slice_obj)
                gone = ["conntrack", "-D", "-p", "udp", "--orig-dst", "10.96.0.53", "--orig-port-dst", "53",
                        "--reply-src", "10.244.2.6"]
                await wait_until_async(lambda: any(argv == gone for argv, _ in deleted),
                                       "the removed endpoint's flows go")
                assert backend.threads and loop_thread not in backend.threads
                assert all(thread != loop_thread for _, thread in deleted)
            finally:
                server.stop()
                await task

    asyncio.run(main())

def test_the_informers_keep_parsed_objects_and_a_sync_replans_only_what_changed(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin = await _node_and_dns_service(api)
            other = _service("other", "TCP")
            other["spec"]["clusterIP"] = "10.96.0.80"
            await admin.create(SERVICES, other, namespace="default")
            await admin.create(ENDPOINT_SLICES, _slice("dns", ["10.244.2.6"]), namespace="default")
            server = ProxyServer(api.client("kube-proxy"), _config(), NftablesBackend(runner=FakeNft()),
                                 conntrack=lambda argv: None)
            task = asyncio.get_running_loop().create_task(server.run())
            try:
                await wait_until_async(lambda: server.applied is not None, "the first sync")
                before = server.applied
                assert before is not None
                # What the stores keep: the metadata the proxy reads and the parsed value, not the objects.
                kept = server.slices.store.get("dns-x", "default")
                assert kept is not None and "endpoints" not in kept and set(kept["metadata"]) >= {"uid", "labels"}
                assert kept[PARSED].service == ("default", "dns")
                kept_service = server.services.store.get("other", "default")
                assert kept_service is not None and "spec" not in kept_service
                assert kept_service[PARSED][0].cluster_ip == "10.96.0.80"

                slice_obj = await admin.get(ENDPOINT_SLICES, "dns-x", namespace="default")
                slice_obj["endpoints"][0]["addresses"] = ["10.244.2.7"]
                await admin.update(ENDPOINT_SLICES, slice_obj)
                await wait_until_async(
                    lambda: server.applied is not before
                    and server.applied.service("default/dns:dns").cluster_endpoints[0].ip == "10.244.2.7",
                    "the changed endpoint programmed")
                after = server.applied
                # Only the changed Service was planned again; the other's plan is the very same object.
                assert after.changes_since(before) == {"default/dns:dns"}
                assert after.service("default/other:dns") is before.service("default/other:dns")
                assert after.service("default/dns:dns") is not before.service("default/dns:dns")
            finally:
                server.stop()
                await task

    asyncio.run(main())


def _count(histogram: Any) -> float:
    return next(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))


def test_periodic_syncs_are_partial_and_a_full_one_comes_once_a_full_sync_period(tmp_path: Path) -> None:
    """As upstream (FullSyncPeriod, an hour): the sync period's syncs rewrite only what changed, since a
    full one at 10k Services holds back every change behind it; a full one comes when it is due."""
    async def syncs(api: Any, full_sync_period: float) -> tuple[float, float]:
        """(full, partial) sync counts once a proxy with a 50 ms sync period has synced four times."""
        server = ProxyServer(api.client("kube-proxy"), _config(sync_period=0.05, full_sync_period=full_sync_period),
                             NftablesBackend(runner=FakeNft()), conntrack=lambda argv: None)
        task = asyncio.get_running_loop().create_task(server.run())
        try:
            await wait_until_async(lambda: _count(server.metrics.sync_duration) >= 4, "a few periodic syncs")
            return _count(server.metrics.full_duration), _count(server.metrics.partial_duration)
        finally:
            server.stop()
            await task

    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            await _node_and_dns_service(api)
            full, partial = await syncs(api, full_sync_period=3600.0)
            assert full == 1 and partial >= 3  # the first sync is the only full one
            full, partial = await syncs(api, full_sync_period=0.0)
            assert full >= 4 and partial == 0  # every sync is due for a full one

    asyncio.run(main())


def test_health_check_node_port_answers_200_with_local_endpoints_and_503_without() -> None:
    import json as jsonlib
    import socket

    import aiohttp

    from proxy.server import HealthCheckServers

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def lb_plan(local_ips: list[str]) -> Any:
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.80", "externalTrafficPolicy": "Local",
                        "healthCheckNodePort": port,
                        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]},
               "status": {"loadBalancer": {"ingress": [{"ip": "172.18.255.200"}]}}}
        endpoints = [{"addresses": [ip], "conditions": {"ready": True}, "nodeName": "n"} for ip in local_ips]
        endpoints.append({"addresses": ["10.244.9.9"], "conditions": {"ready": True}, "nodeName": "other"})
        eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
               "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
               "endpoints": endpoints}
        node = NodeContext(name="n", node_ips=("127.0.0.1",), cluster_cidrs=("10.244.0.0/16",))
        return plan(services_from([svc]), slices_from([eps]), node)

    async def main() -> None:
        servers = HealthCheckServers(("127.0.0.1",))
        try:
            async with aiohttp.ClientSession() as session:
                await servers.update(lb_plan(["10.244.1.5", "10.244.1.6"]))
                async with session.get(f"http://127.0.0.1:{port}/") as resp:
                    body = jsonlib.loads(await resp.text())
                    assert resp.status == 200 and resp.headers["X-Content-Type-Options"] == "nosniff"
                    assert body == {"service": {"namespace": "default", "name": "web"}, "localEndpoints": 2,
                                    "serviceProxyHealthy": True}
                await servers.update(lb_plan([]))
                async with session.get(f"http://127.0.0.1:{port}/") as resp:
                    assert resp.status == 503 and jsonlib.loads(await resp.text())["localEndpoints"] == 0
        finally:
            await servers.close()

    asyncio.run(main())
