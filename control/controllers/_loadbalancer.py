"""Load-balancer IPs: Services of type LoadBalancer get status.loadBalancer.ingress[{ip}] from a pool
(--lb-pool), the part a cloud provider's service controller (k8s.io/cloud-provider/controllers/service)
or MetalLB's IP allocator plays. An address is held while the Service is a LoadBalancer and released
when it is deleted or changes type. A Service asking for spec.loadBalancerIP gets that address if it
is in the pool and free; a Service with spec.loadBalancerClass belongs to another implementation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import ClassVar

from control.client import SERVICES, NotFound, Resource
from control.controllers._base import Context, Controller
from control.controllers._util import JsonObject, deepcopy, is_deleting, key_of, split_key

IPv4 = ipaddress.IPv4Address


def parse_pool(text: str) -> list[tuple[IPv4, IPv4]]:
    """'172.18.255.200-172.18.255.250,10.0.0.0/30,192.0.2.7' -> inclusive ranges. A CIDR of /30 or
    wider leaves out its network and broadcast addresses (MetalLB's avoid-buggy-ips habit: some clients
    mishandle them)."""
    ranges: list[tuple[IPv4, IPv4]] = []
    for item in (p.strip() for p in text.split(",")):
        if not item:
            continue
        try:
            if "-" in item:
                first, last = (IPv4(p.strip()) for p in item.split("-", 1))
            elif "/" in item:
                net = ipaddress.IPv4Network(item, strict=False)
                first, last = net.network_address, net.broadcast_address
                if net.prefixlen <= 30:
                    first, last = first + 1, last - 1
            else:
                first = last = IPv4(item)
        except ValueError as exc:
            raise ValueError(f"--lb-pool item {item!r}: {exc}; use CIDRs, FIRST-LAST ranges or addresses") from None
        if int(last) < int(first):
            raise ValueError(f"--lb-pool range {item!r} ends before it starts")
        ranges.append((first, last))
    return ranges


class Pool:
    def __init__(self, ranges: list[tuple[IPv4, IPv4]]) -> None:
        self.ranges = ranges
        self.owner: dict[str, str] = {}  # ip -> service key
        self.by_service: dict[str, str] = {}

    def __contains__(self, ip: object) -> bool:
        try:
            addr = IPv4(str(ip))
        except ValueError:
            return False
        return any(int(a) <= int(addr) <= int(b) for a, b in self.ranges)

    def addresses(self) -> Iterator[str]:
        for first, last in self.ranges:
            for value in range(int(first), int(last) + 1):
                yield str(IPv4(value))

    def claim(self, key: str, ip: str) -> bool:
        if self.owner.get(ip, key) != key or ip not in self:
            return False
        self.release(key)
        self.owner[ip] = key
        self.by_service[key] = ip
        return True

    def next_free(self) -> str | None:
        return next((ip for ip in self.addresses() if ip not in self.owner), None)

    def release(self, key: str) -> str | None:
        ip = self.by_service.pop(key, None)
        if ip is not None:
            self.owner.pop(ip, None)
        return ip


def _ingress_ips(svc: JsonObject) -> list[str]:
    lb = ((svc.get("status") or {}).get("loadBalancer")) or {}
    return [str(i.get("ip")) for i in lb.get("ingress") or [] if isinstance(i, dict) and i.get("ip")]


class LoadBalancerController(Controller):
    name: ClassVar[str] = "service-lb"
    component: ClassVar[str] = "service-lb-controller"
    primary: ClassVar[Resource | None] = SERVICES
    resources: ClassVar[tuple[Resource, ...]] = (SERVICES,)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.pool = Pool(parse_pool(self.options.lb_pool))

    def workers(self) -> int:
        return 1  # allocation is a shared decision: one worker keeps it simple and race-free

    def register(self) -> None:
        self.informer(SERVICES).add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n),
                                            on_delete=self.enqueue)

    @staticmethod
    def _wants_ip(svc: JsonObject) -> bool:
        spec = svc.get("spec") or {}
        return spec.get("type") == "LoadBalancer" and not spec.get("loadBalancerClass") and not is_deleting(svc)

    async def start(self) -> None:
        # Re-learn what we handed out before a restart, before deciding anything new.
        for svc in self.informer(SERVICES).store.list():
            if self._wants_ip(svc):
                for ip in _ingress_ips(svc):
                    if self.pool.claim(key_of(svc), ip):
                        break
        await super().start()

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key)
        svc = self.informer(SERVICES).store.get(name, namespace)
        if svc is None:
            ip = self.pool.release(key)
            if ip:
                self.log.info("Service %s deleted: released load-balancer IP %s", key, ip)
                self._wake_waiting()
            return
        if not self._wants_ip(svc):
            ip = self.pool.release(key)
            if ip:
                self.log.info("Service %s is no longer a LoadBalancer: released %s", key, ip)
                if ip in _ingress_ips(svc):
                    await self._write(svc, None)
                self._wake_waiting()
            return
        if not self.pool.ranges:
            return
        ip = self.pool.by_service.get(key)
        requested = (svc.get("spec") or {}).get("loadBalancerIP")
        if requested and ip != requested:
            if not self.pool.claim(key, str(requested)):
                self.log.warning("Service %s asks for loadBalancerIP %s, which is %s", key, requested,
                                 "taken" if requested in self.pool else "outside the pool")
                return
            ip = str(requested)
        if ip is None:
            ip = next((i for i in _ingress_ips(svc) if self.pool.claim(key, i)), None)
        if ip is None:
            free = self.pool.next_free()
            if free is None:
                self.log.warning("Service %s: no free address in the load-balancer pool %s", key,
                                 self.options.lb_pool)
                self.event(svc, "AllocationFailed", f'Failed to allocate IP for "{key}": no available IPs',
                           warning=True)
                return
            self.pool.claim(key, free)
            ip = free
        if _ingress_ips(svc) != [ip]:
            await self._write(svc, ip)
            self.log.info("Service %s: load-balancer IP %s", key, ip)
            self.event(svc, "IPAllocated", f'Assigned IP ["{ip}"]')

    def _wake_waiting(self) -> None:
        # An address came free: the Services still waiting for one get another chance now.
        for svc in self.informer(SERVICES).store.list():
            if self._wants_ip(svc) and key_of(svc) not in self.pool.by_service:
                self.queue.add(key_of(svc))

    async def _write(self, svc: JsonObject, ip: str | None) -> None:
        body = deepcopy(svc)
        body.setdefault("status", {})["loadBalancer"] = {"ingress": [{"ip": ip, "ipMode": "VIP"}]} if ip else {}
        try:
            await self.client.update_status(SERVICES, body)
        except NotFound:
            return
