"""The cluster DNS process against a real apiserver (the harness), with CoreDNS's own credentials:
its zone follows Services and EndpointSlices as they change, /ready waits for the informers, metrics
carry CoreDNS's names, each query is logged, and system:coredns is read-only."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from control.client import CONFIG_MAPS, ENDPOINT_SLICES, SERVICES, Forbidden
from control.dns._process import DNSOptions, DNSProcess, split_address
from tests.harness import local_apiserver

LOCAL = DNSOptions(dns_address="127.0.0.1:0", metrics_address="127.0.0.1:0", ready_address="127.0.0.1:0",
                   health_address="127.0.0.1:0")


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    # Bounded by the suite's own test timeout; polls a condition, asserts nothing about time.
    for _ in range(600):
        if await condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never saw {what}")


async def query(process: DNSProcess, name: str, rdtype: str = "A") -> dns.message.Message:
    return await dns.asyncquery.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=process.server.port,
                                    timeout=5)


def addresses(response: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


async def get(process: DNSProcess, which: str, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{process.http_ports[which]}{path}") as response:
        return response.status, await response.text()


def slice_of(service: str, ips: list[str]) -> dict[str, Any]:
    return {"metadata": {"name": f"{service}-x", "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


def test_the_zone_follows_the_api_and_is_observable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="control.dns.query")

    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            admin = api.client("admin")
            process = DNSProcess(api.client("coredns"), LOCAL)
            await process.start()
            try:
                await process.feed.wait_ready()
                assert await get(process, "ready", "/ready") == (200, "OK")
                assert await get(process, "health", "/health") == (200, "OK")
                kubernetes = await query(process, "kubernetes.default.svc.cluster.local")
                assert addresses(kubernetes) == ["10.96.0.1"]

                created = await admin.create(SERVICES, {"metadata": {"name": "web"}, "spec": {
                    "ports": [{"name": "http", "port": 80}], "selector": {"app": "web"}}}, namespace="default")

                async def resolves() -> bool:
                    return addresses(await query(process, "web.default.svc.cluster.local")) == [
                        created["spec"]["clusterIP"]]
                await eventually(resolves, "web resolve to its ClusterIP")

                await admin.create(SERVICES, {"metadata": {"name": "db"}, "spec": {
                    "clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}, namespace="default")
                await admin.create(ENDPOINT_SLICES, slice_of("db", ["10.244.1.5", "10.244.2.6"]), namespace="default")

                async def endpoints(expected: list[str]) -> bool:
                    return addresses(await query(process, "db.default.svc.cluster.local")) == expected
                await eventually(lambda: endpoints(["10.244.1.5", "10.244.2.6"]), "both db endpoints")
                current = await admin.get(ENDPOINT_SLICES, "db-x", namespace="default")
                current["endpoints"] = current["endpoints"][:1]
                await admin.update(ENDPOINT_SLICES, current, namespace="default")
                await eventually(lambda: endpoints(["10.244.1.5"]), "one db endpoint after a scale-down")

                await admin.delete(SERVICES, "web", namespace="default")

                async def gone() -> bool:
                    return (await query(process, "web.default.svc.cluster.local")).rcode() == dns.rcode.NXDOMAIN
                await eventually(gone, "web NXDOMAIN after its deletion")

                status, text = await get(process, "metrics", "/metrics")
                assert status == 200
                assert 'coredns_dns_requests_total{family="1",proto="udp",server="dns://:53",type="A",view="",' \
                       'zone="."}' in text
                assert 'rcode="NXDOMAIN"' in text and 'rcode="NOERROR"' in text
                assert "coredns_dns_request_duration_seconds_bucket" in text
            finally:
                await process.close()
            lines = [r.getMessage() for r in caplog.records if r.name == "control.dns.query"]
            assert any('"A IN kubernetes.default.svc.cluster.local. udp' in line and " NOERROR qr,aa,rd " in line
                       for line in lines)

    asyncio.run(main())


def test_ready_is_503_until_the_informers_have_synced(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            process = DNSProcess(api.client("coredns"), LOCAL)
            process.feed.start = lambda: None  # type: ignore[method-assign]  # informers never start
            await process.start()
            try:
                assert (await get(process, "ready", "/ready"))[0] == 503
                assert not process.feed.ready
            finally:
                await process.close()

    asyncio.run(main())


def test_system_coredns_is_read_only(tmp_path: Path) -> None:
    async def main() -> None:
        async with local_apiserver(tmp_path) as api:
            coredns = api.client("coredns")
            await coredns.list(SERVICES)
            await coredns.list(ENDPOINT_SLICES)
            with pytest.raises(Forbidden):
                await coredns.create(SERVICES, {"metadata": {"name": "x"}, "spec": {"ports": [{"port": 1}]}},
                                     namespace="default")
            with pytest.raises(Forbidden):
                await coredns.list(CONFIG_MAPS)
            with pytest.raises(Forbidden):
                await coredns.get(SERVICES, "kubernetes", namespace="default")  # list/watch only, as upstream

    asyncio.run(main())


@pytest.mark.parametrize("address", ["53", "host:", "x:99999", ":-1"])
def test_bad_addresses_are_refused_with_the_address_named(address: str) -> None:
    with pytest.raises(ValueError, match="address"):
        split_address(address)
