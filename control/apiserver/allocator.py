"""Service IP and port allocation: ClusterIPs from the service CIDR, NodePorts (and health-check node
ports) from the node-port range. The apiserver is the only writer of Services, so the truth is the set
of stored Services; it is rebuilt from them at start and kept in step with every write here.

Errors are field errors in upstream's words (pkg/registry/core/service/ipallocator and portallocator).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from netaddr import IPAddress, IPNetwork


@dataclass(frozen=True)
class AllocationError:
    type: str
    field: str
    message: str


@dataclass
class Allocation:
    """What one Service holds."""

    ips: set[str] = field(default_factory=set)
    ports: set[int] = field(default_factory=set)


def _node_ports(svc: dict[str, Any]) -> list[tuple[int, int]]:
    """(index, nodePort) of every port that has one, plus the health-check node port as index -1."""
    spec = svc.get("spec") or {}
    found = [(i, p["nodePort"]) for i, p in enumerate(spec.get("ports") or []) if p.get("nodePort")]
    if spec.get("healthCheckNodePort"):
        found.append((-1, spec["healthCheckNodePort"]))
    return found


def _service_ips(svc: dict[str, Any]) -> set[str]:
    spec = svc.get("spec") or {}
    ips = set(spec.get("clusterIPs") or []) | ({spec["clusterIP"]} if spec.get("clusterIP") else set())
    return {ip for ip in ips if ip != "None"}


class ServiceAllocator:
    def __init__(self, service_cidr: str, node_port_range: tuple[int, int], *, rng: random.Random | None = None):
        self.cidr = IPNetwork(service_cidr)
        self.port_range = node_port_range
        self.by_service: dict[str, Allocation] = {}
        self.ips: set[str] = set()
        self.ports: set[int] = set()
        self.rng = rng or random.Random()

    def rebuild(self, services: Iterable[dict[str, Any]]) -> None:
        self.by_service.clear()
        self.ips.clear()
        self.ports.clear()
        for svc in services:
            meta = svc["metadata"]
            held = Allocation(_service_ips(svc), {port for _, port in _node_ports(svc)})
            self.by_service[f"{meta.get('namespace')}/{meta['name']}"] = held
            self.ips |= held.ips
            self.ports |= held.ports

    # -- allocation ---------------------------------------------------------------------------------

    def _free_ip(self) -> str | None:
        # Upstream picks at random so that addresses are not predictable; skip network and broadcast.
        size = self.cidr.size - 2
        start = self.rng.randrange(size)
        for offset in range(size):
            candidate = str(IPAddress(self.cidr.first + 1 + (start + offset) % size))
            if candidate not in self.ips:
                return candidate
        return None

    def _free_port(self, taken: set[int]) -> int | None:
        low, high = self.port_range
        span = high - low + 1
        start = self.rng.randrange(span)
        for offset in range(span):
            candidate = low + (start + offset) % span
            if candidate not in self.ports and candidate not in taken:
                return candidate
        return None

    def assign(self, svc: dict[str, Any], old: dict[str, Any] | None = None
               ) -> tuple[list[AllocationError], Allocation]:
        """Fill in and check svc's ClusterIP, node ports and health-check node port, and reserve what is
        new at once (so a concurrent create cannot pick the same). Nothing is reserved when there are
        errors. Once stored call commit(svc); if the write fails, abort(reservation)."""
        spec = svc.setdefault("spec", {})
        key = f"{svc['metadata'].get('namespace')}/{svc['metadata']['name']}"
        mine = self.by_service.get(key, Allocation()) if old is not None else Allocation()
        errors: list[AllocationError] = []
        svc_type = spec.get("type", "ClusterIP")

        if svc_type in ("ClusterIP", "ExternalName"):
            # Upstream drops node ports that the new type cannot have (dropTypeDependentFields).
            for port in spec.get("ports") or []:
                port.pop("nodePort", None)
        if svc_type != "LoadBalancer" or spec.get("externalTrafficPolicy") != "Local":
            spec.pop("healthCheckNodePort", None)

        if svc_type != "ExternalName" and spec.get("clusterIP") != "None":
            ip = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
            if not ip:
                ip = self._free_ip()
                if ip is None:
                    errors.append(AllocationError("FieldValueInvalid", "spec.clusterIPs",
                                                  "Internal error: failed to allocate a serviceIP: range is full"))
            elif IPAddress(ip) not in self.cidr or ip in (str(self.cidr.network), str(self.cidr.broadcast)):
                errors.append(AllocationError(
                    "FieldValueInvalid", "spec.clusterIPs[0]",
                    f'Invalid value: "{ip}": failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid '
                    f"range. The range of valid IPs is {self.cidr}"))
            elif ip in self.ips and ip not in mine.ips:
                errors.append(AllocationError(
                    "FieldValueInvalid", "spec.clusterIPs",
                    f'Invalid value: []string{{"{ip}"}}: failed to allocate IP {ip}: provided IP is already allocated'))
            if ip:
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]

        taken_here: set[int] = set()
        if svc_type in ("NodePort", "LoadBalancer"):
            low, high = self.port_range
            for i, port in enumerate(spec.get("ports") or []):
                number = port.get("nodePort")
                path = f"spec.ports[{i}].nodePort"
                if not number:
                    number = self._free_port(taken_here)
                    if number is None:
                        errors.append(AllocationError("FieldValueInvalid", path,
                                                      "Internal error: failed to allocate a nodePort: range is full"))
                        continue
                    port["nodePort"] = number
                elif not low <= number <= high:
                    errors.append(AllocationError(
                        "FieldValueInvalid", path, f"Invalid value: {number}: provided port is not in the valid range. "
                        f"The range of valid ports is {low}-{high}"))
                elif number in self.ports and number not in mine.ports:
                    errors.append(AllocationError("FieldValueInvalid", path,
                                                  f"Invalid value: {number}: provided port is already allocated"))
                taken_here.add(number)
        if svc_type == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local":
            number = spec.get("healthCheckNodePort")
            if not number:
                number = self._free_port(taken_here)
                if number is not None:
                    spec["healthCheckNodePort"] = number
            elif number in self.ports and number not in mine.ports and number not in taken_here:
                errors.append(AllocationError("FieldValueInvalid", "spec.healthCheckNodePort",
                                              f"Invalid value: {number}: provided port is already allocated"))
        if errors:
            return errors, Allocation()
        reserved = Allocation(_service_ips(svc) - mine.ips, {p for _, p in _node_ports(svc)} - mine.ports)
        self.ips |= reserved.ips
        self.ports |= reserved.ports
        return [], reserved

    def abort(self, reserved: Allocation) -> None:
        self.ips -= reserved.ips
        self.ports -= reserved.ports

    def commit(self, svc: dict[str, Any]) -> None:
        """Record what the stored svc holds (replacing what it held before)."""
        key = f"{svc['metadata'].get('namespace')}/{svc['metadata']['name']}"
        self.release(key)
        held = Allocation(_service_ips(svc), {port for _, port in _node_ports(svc)})
        self.by_service[key] = held
        self.ips |= held.ips
        self.ports |= held.ports

    def release(self, key: str) -> None:
        held = self.by_service.pop(key, None)
        if held:
            self.ips -= held.ips
            self.ports -= held.ports
