"""Node IPAM (pkg/controller/nodeipam, the range allocator): a Node without spec.podCIDR gets the first
free --node-cidr-mask-size subnet of --cluster-cidr. Subnets already on any Node (pinned by the topology
or allocated before a restart) are never handed out again."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import ClassVar

from control.client import NODES, NotFound, Resource
from control.controllers._base import Context, Controller
from control.controllers._util import JsonObject

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def node_cidrs(node: JsonObject) -> list[Network]:
    spec = node.get("spec") or {}
    found: list[Network] = []
    for text in [spec.get("podCIDR"), *(spec.get("podCIDRs") or [])]:
        if text:
            try:
                found.append(ipaddress.ip_network(str(text), strict=False))
            except ValueError:
                continue
    return found


class NodeIPAMController(Controller):
    name: ClassVar[str] = "nodeipam"
    component: ClassVar[str] = "cidrAllocator"
    primary: ClassVar[Resource | None] = NODES
    resources: ClassVar[tuple[Resource, ...]] = (NODES,)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cluster_cidr: Network | None = None
        if ctx.options.cluster_cidr:
            self.cluster_cidr = ipaddress.ip_network(ctx.options.cluster_cidr, strict=False)
            if ctx.options.node_cidr_mask_size < self.cluster_cidr.prefixlen:
                raise ValueError(f"--node-cidr-mask-size {ctx.options.node_cidr_mask_size} is wider than "
                                 f"--cluster-cidr {self.cluster_cidr}: use a mask of at least /"
                                 f"{self.cluster_cidr.prefixlen}")
        # Handed out but maybe not yet in the cache: node name -> subnet.
        self._pending: dict[str, Network] = {}

    def workers(self) -> int:
        return 1  # one allocator: no two nodes can race for the same subnet

    def register(self) -> None:
        self.informer(NODES).add_handler(on_add=self.enqueue, on_update=lambda o, n: self.enqueue(n))

    def _subnets(self) -> Iterator[Network]:
        assert self.cluster_cidr is not None
        return self.cluster_cidr.subnets(new_prefix=self.options.node_cidr_mask_size)

    async def sync(self, key: str) -> None:
        if self.cluster_cidr is None:
            return
        node = self.informer(NODES).store.get(key)
        if node is None:
            self._pending.pop(key, None)
            return
        if node_cidrs(node):
            self._pending.pop(key, None)
            return
        used: list[Network] = [c for n in self.informer(NODES).store.list() for c in node_cidrs(n)]
        used += [c for name, c in self._pending.items() if name != key]
        choice = self._pending.get(key)
        if choice is None:
            choice = next((s for s in self._subnets()
                           if not any(s.version == u.version and s.overlaps(u) for u in used)), None)
        if choice is None:
            self.log.warning("node %s: no free /%d left in cluster CIDR %s (CIDRNotAvailable)", key,
                             self.options.node_cidr_mask_size, self.cluster_cidr)
            self.event(node, "CIDRNotAvailable", f"Node {key} status is now: CIDRNotAvailable", warning=True)
            return
        self._pending[key] = choice
        try:
            await self.client.patch(NODES, key, {"spec": {"podCIDR": str(choice), "podCIDRs": [str(choice)]}})
        except NotFound:
            self._pending.pop(key, None)
            return
        self.log.info("node %s: allocated pod CIDR %s", key, choice)
