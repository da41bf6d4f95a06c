"""An in-memory kernel for unit tests: the same calls as ``LinuxKernel``, checked the way the kernel
checks them (names fit IFNAMSIZ and are unique per namespace, masters are bridges, gateways are
reachable, deleting a namespace takes the far ends of its veth pairs with it), recorded as plain data
that tests assert on. The root namespace is the key None.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netaddr import IPAddress, IPNetwork

from netsim.errors import NamespaceError, NetlinkError
from netsim.names import IFNAMSIZ_MAX
from netsim.place import PodPlace


@dataclass
class FakeLink:
    name: str
    kind: str
    up: bool = False
    master: str | None = None
    mtu: int = 1500
    hairpin: bool = False
    addresses: list[str] = field(default_factory=list)  # "ip/prefixlen"
    peer: tuple[str | None, str] | None = None  # (namespace, name) of a veth's other end
    vxlan: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeRoute:
    dst: str
    dev: str
    gateway: str | None = None
    onlink: bool = False


@dataclass
class FakeNamespace:
    links: dict[str, FakeLink] = field(default_factory=dict)
    routes: list[FakeRoute] = field(default_factory=list)
    neighbours: dict[str, tuple[str, str]] = field(default_factory=dict)  # ip -> (dev, mac)
    fdb: list[tuple[str, str, str]] = field(default_factory=list)  # (dev, mac, dst)
    sysctls: dict[str, str] = field(default_factory=dict)
    processes: list[int] = field(default_factory=list)  # pids a test pretends run inside
    place: PodPlace | None = None  # a pod's UTS and mount namespaces, pinned beside this one


class FakeKernel:
    def __init__(self, root_links: tuple[str, ...] = ("lo", "eth0")) -> None:
        self.namespaces: dict[str | None, FakeNamespace] = {None: FakeNamespace()}
        for name in root_links:
            self.namespaces[None].links[name] = FakeLink(name, "device", up=True)
        self.calls = 0

    def _ns(self, ns: str | None) -> FakeNamespace:
        self.calls += 1
        if ns not in self.namespaces:
            raise NamespaceError(f"network namespace {ns!r} does not exist")
        return self.namespaces[ns]

    def _link(self, ns: str | None, name: str) -> FakeLink:
        space = self._ns(ns)
        if name not in space.links:
            raise NetlinkError(f"interface {name!r} does not exist in {ns or 'the root namespace'}")
        return space.links[name]

    def _new_link(self, ns: str | None, link: FakeLink) -> None:
        space = self._ns(ns)
        if len(link.name.encode()) > IFNAMSIZ_MAX:
            raise NetlinkError(f"interface name {link.name!r} is longer than {IFNAMSIZ_MAX} bytes")
        if link.name in space.links:
            raise NetlinkError(f"interface {link.name!r} already exists in {ns or 'the root namespace'}")
        space.links[link.name] = link

    # -- namespaces -------------------------------------------------------------------------------

    def ns_create(self, ns: str) -> None:
        if ns in self.namespaces:
            raise NamespaceError(f"network namespace {ns!r} already exists")
        self.namespaces[ns] = FakeNamespace(links={"lo": FakeLink("lo", "loopback")})

    def ns_delete(self, ns: str) -> bool:
        space = self.namespaces.pop(ns, None)
        if space is None:
            return False
        for link in space.links.values():
            if link.peer is not None:
                peer_ns, peer_name = link.peer
                self.namespaces.get(peer_ns, FakeNamespace()).links.pop(peer_name, None)
                self._drop_routes_via(peer_ns, peer_name)
        return True

    def ns_kill_processes(self, ns: str) -> list[int]:
        space = self.namespaces.get(ns)
        if space is None:
            return []
        killed, space.processes = space.processes, []
        return killed

    def ns_list(self) -> list[str]:
        return sorted(ns for ns in self.namespaces if ns is not None)

    def ns_exists(self, ns: str) -> bool:
        return ns in self.namespaces

    def ns_create_place(self, ns: str, place: PodPlace) -> None:
        space = self._ns(ns)
        if space.place is not None:
            raise NamespaceError(f"pod namespaces of {ns!r} already exist")
        space.place = place

    def set_sysctl(self, ns: str, key: str, value: str) -> None:
        self._ns(ns).sysctls[key] = value

    def release(self, ns: str) -> None:
        pass

    def close(self) -> None:
        pass

    # -- links ------------------------------------------------------------------------------------

    def link_exists(self, ns: str | None, name: str) -> bool:
        return name in self._ns(ns).links

    def link_names(self, ns: str | None) -> list[str]:
        return list(self._ns(ns).links)

    def add_bridge(self, ns: str, name: str, *, mtu: int | None = None) -> None:
        self._new_link(ns, FakeLink(name, "bridge", mtu=mtu or 1500))

    def _check_master(self, ns: str | None, master: str | None) -> None:
        if master is not None and self._link(ns, master).kind != "bridge":
            raise NetlinkError(f"{master!r} in {ns} is not a bridge")

    def add_veth(self, ns: str | None, name: str, *, peer_ns: str, peer_name: str, master: str | None = None,
                 peer_master: str | None = None, mtu: int | None = None, hairpin: bool = False,
                 peer_index: int | None = None) -> None:
        self._check_master(ns, master)
        self._check_master(peer_ns, peer_master)
        if peer_name in self._ns(peer_ns).links:
            raise NetlinkError(f"interface {peer_name!r} already exists in {peer_ns}")
        if hairpin and master is None:
            raise NetlinkError(f"hairpin needs {name} to be a bridge port")
        self._new_link(ns, FakeLink(name, "veth", up=True, master=master, mtu=mtu or 1500, hairpin=hairpin,
                                    peer=(peer_ns, peer_name)))
        self._new_link(peer_ns, FakeLink(peer_name, "veth", master=peer_master, mtu=mtu or 1500, peer=(ns, name)))

    def add_vxlan(self, ns: str, name: str, *, vni: int, local: str, dev: str, port: int, mac: str,
                  mtu: int) -> None:
        self._link(ns, dev)
        self._new_link(ns, FakeLink(name, "vxlan", mtu=mtu,
                                    vxlan={"vni": vni, "local": local, "dev": dev, "port": port, "mac": mac}))

    def set_up(self, ns: str | None, name: str) -> None:
        self._link(ns, name).up = True

    def delete_link(self, ns: str | None, name: str) -> bool:
        space = self._ns(ns)
        link = space.links.pop(name, None)
        if link is None:
            return False
        self._drop_routes_via(ns, name)
        if link.peer is not None:
            peer_ns, peer_name = link.peer
            if peer_ns in self.namespaces:
                self.namespaces[peer_ns].links.pop(peer_name, None)
                self._drop_routes_via(peer_ns, peer_name)
        return True

    def _drop_routes_via(self, ns: str | None, dev: str) -> None:
        space = self.namespaces.get(ns)
        if space is not None:
            space.routes = [r for r in space.routes if r.dev != dev]

    # -- addresses, routes, neighbours ------------------------------------------------------------

    def add_address(self, ns: str | None, name: str, address: str, prefixlen: int) -> None:
        link = self._link(ns, name)
        entry = f"{address}/{prefixlen}"
        if entry in link.addresses:
            raise NetlinkError(f"{entry} is already on {name}")
        link.addresses.append(entry)

    def add_route(self, ns: str | None, dst: str, *, dev: str, gateway: str | None = None,
                  onlink: bool = False) -> None:
        space = self._ns(ns)
        link = self._link(ns, dev)
        if not link.up:
            raise NetlinkError(f"adding route {dst} dev {dev}: {dev} is down")
        if gateway and not onlink:
            connected = [IPNetwork(a) for a in link.addresses]
            if not any(IPAddress(gateway) in net for net in connected):
                raise NetlinkError(f"adding route {dst} via {gateway}: gateway not reachable on {dev}")
        route = FakeRoute(str(IPNetwork(dst).cidr), dev, gateway, onlink)
        if any(r.dst == route.dst for r in space.routes):
            raise NetlinkError(f"route {dst} already exists in {ns}")
        space.routes.append(route)

    def add_neighbour(self, ns: str, dev: str, address: str, mac: str) -> None:
        self._link(ns, dev)
        self._ns(ns).neighbours[address] = (dev, mac)

    def forget_neighbour(self, ns: str, dev: str, address: str) -> bool:
        self._link(ns, dev)
        entry = self._ns(ns).neighbours.get(address)
        if entry is None or entry[0] != dev:
            return False
        del self._ns(ns).neighbours[address]
        return True

    def add_fdb(self, ns: str, dev: str, mac: str, dst: str) -> None:
        self._link(ns, dev)
        self._ns(ns).fdb.append((dev, mac, dst))

    # -- reading, for tests -----------------------------------------------------------------------

    def route_to(self, ns: str | None, address: str) -> FakeRoute | None:
        """Longest-prefix match over explicit routes and connected subnets."""
        space = self._ns(ns)
        candidates = list(space.routes)
        for link in space.links.values():
            if link.up:
                candidates += [FakeRoute(str(IPNetwork(a).cidr), link.name) for a in link.addresses]
        matching = [r for r in candidates if IPAddress(address) in IPNetwork(r.dst)]
        return max(matching, key=lambda r: IPNetwork(r.dst).prefixlen, default=None)
