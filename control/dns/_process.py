"""One cluster DNS server as CoreDNS runs it in kind: DNS on :53 (UDP and TCP), Prometheus metrics on
:9153/metrics, readiness on :8181/ready (200 once the informers have synced, as CoreDNS's `ready`
plugin), liveness on :8080/health, and a query log line per query."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from control.client import Client
from control.dns._feed import ZoneFeed
from control.dns._metrics import DNSMetrics, Observers
from control.dns._server import DNSServer
from control.dns._zone import ZoneConfig

log = logging.getLogger("control.dns")


@dataclass(frozen=True)
class DNSOptions:
    zone: ZoneConfig = field(default_factory=ZoneConfig)
    dns_address: str = "0.0.0.0:53"
    metrics_address: str = "0.0.0.0:9153"
    ready_address: str = "0.0.0.0:8181"
    health_address: str = "0.0.0.0:8080"
    log_queries: bool = True


def split_address(address: str) -> tuple[str, int]:
    """HOST:PORT (or :PORT) to its parts; ValueError naming the address otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address {address!r}: use HOST:PORT or :PORT, with a port from 0 to 65535")
    return host.strip("[]") or "0.0.0.0", int(port)


class DNSProcess:
    def __init__(self, client: Client, options: DNSOptions | None = None):
        self.options = options or DNSOptions()
        self.feed = ZoneFeed(client, self.options.zone)
        self.metrics = DNSMetrics()
        self.server = DNSServer(lambda: self.feed.zone, observer=Observers(self.metrics,
                                                                           log_queries=self.options.log_queries))
        self.http_ports: dict[str, int] = {}
        self._runners: list[web.AppRunner] = []
        self._stop = asyncio.Event()

    async def _ready(self, request: web.Request) -> web.Response:
        return web.Response(text="OK" if self.feed.ready else "informers not synced",
                            status=200 if self.feed.ready else 503)

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        host, port = split_address(self.options.dns_address)
        await self.server.start(host, port)
        for name, address, path, handler in (("metrics", self.options.metrics_address, "/metrics", self._metrics),
                                             ("ready", self.options.ready_address, "/ready", self._ready),
                                             ("health", self.options.health_address, "/health", self._health)):
            app = web.Application()
            app.router.add_get(path, handler)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, *split_address(address))
            await site.start()
            self._runners.append(runner)
            self.http_ports[name] = runner.addresses[0][1]
        self.feed.start()
        log.info("cluster DNS for %s on %s (udp, tcp), ttl %ds, pods %s", self.options.zone.domain,
                 self.options.dns_address, self.options.zone.ttl, self.options.zone.pods)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        await self.server.stop()
        await self.feed.stop()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
