"""The one seam between netsim and the kernel's network configuration.

``Kernel`` is the protocol the builders use; ``LinuxKernel`` speaks netlink through pyroute2 (one
socket per namespace, opened from inside it and reused) and ``netsim.fake.FakeKernel`` keeps an
in-memory model for unit tests. ``ns=None`` always means the root namespace.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError as PyrouteNetlinkError

from netsim import namespaces
from netsim.errors import NetlinkError
from netsim.place import PodPlace, setup_arguments
from netsim.placemaker import PlaceMaker

# One helper per process makes pod places (netsim/placemaker.py: forking this process would cost in
# proportion to its memory).
_place_maker = PlaceMaker()


def place_helper_pid() -> int | None:
    """This process's place helper's pid, while it runs (benchmarks count its CPU time)."""
    return _place_maker.helper_pid

NUD_PERMANENT = 0x80
LOOPBACK_IFINDEX = 1  # lo is interface 1 in every network namespace
RTNH_F_ONLINK = 4


class Kernel(Protocol):
    def ns_create(self, ns: str) -> None: ...
    def ns_delete(self, ns: str) -> bool: ...
    def ns_kill_processes(self, ns: str) -> list[int]: ...
    def ns_list(self) -> list[str]: ...
    def ns_exists(self, ns: str) -> bool: ...
    def ns_create_place(self, ns: str, place: PodPlace) -> None: ...
    def link_exists(self, ns: str | None, name: str) -> bool: ...
    def link_names(self, ns: str | None) -> list[str]: ...
    def add_bridge(self, ns: str, name: str, *, mtu: int | None = None) -> None: ...
    def add_veth(self, ns: str | None, name: str, *, peer_ns: str, peer_name: str, master: str | None = None,
                 peer_master: str | None = None, mtu: int | None = None, hairpin: bool = False,
                 peer_index: int | None = None) -> None: ...
    def add_vxlan(self, ns: str, name: str, *, vni: int, local: str, dev: str, port: int, mac: str,
                  mtu: int) -> None: ...
    def set_up(self, ns: str | None, name: str) -> None: ...
    def add_address(self, ns: str | None, name: str, address: str, prefixlen: int) -> None: ...
    def add_route(self, ns: str | None, dst: str, *, dev: str, gateway: str | None = None,
                  onlink: bool = False) -> None: ...
    def add_neighbour(self, ns: str, dev: str, address: str, mac: str) -> None: ...
    def forget_neighbour(self, ns: str, dev: str, address: str) -> bool: ...
    def add_fdb(self, ns: str, dev: str, mac: str, dst: str) -> None: ...
    def delete_link(self, ns: str | None, name: str) -> bool: ...
    def set_sysctl(self, ns: str, key: str, value: str) -> None: ...
    def release(self, ns: str) -> None: ...
    def close(self) -> None: ...


class LinuxKernel:
    """The real kernel, over netlink. Not thread-safe: use one per thread."""

    def __init__(self) -> None:
        self._sockets: dict[str | None, Any] = {}
        # Interface indexes we know, so most requests need no lookup round trip first.
        self._indexes: dict[tuple[str | None, str], int] = {}

    # -- sockets ----------------------------------------------------------------------------------

    def _ipr(self, ns: str | None) -> Any:
        sock = self._sockets.get(ns)
        if sock is None:
            # A netlink socket belongs to the namespace of the thread that opened it.
            with namespaces.entered(ns):
                sock = IPRoute()
            self._sockets[ns] = sock
        return sock

    def release(self, ns: str) -> None:
        sock = self._sockets.pop(ns, None)
        if sock is not None:
            sock.close()
        self._indexes = {key: index for key, index in self._indexes.items() if key[0] != ns}

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._indexes.clear()

    def _index(self, ns: str | None, name: str) -> int:
        index = self._indexes.get((ns, name))
        if index is None:
            found = self._ipr(ns).link_lookup(ifname=name)
            if not found:
                raise NetlinkError(f"interface {name!r} does not exist in {_where(ns)}")
            index = self._indexes[(ns, name)] = int(found[0])
        return index

    def _call(self, what: str, ns: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PyrouteNetlinkError as exc:
            raise NetlinkError(f"{what} in {_where(ns)}: {os.strerror(exc.code)}") from None

    # -- namespaces -------------------------------------------------------------------------------

    def ns_create(self, ns: str) -> None:
        namespaces.create(ns)
        self._indexes[(ns, "lo")] = LOOPBACK_IFINDEX

    def ns_delete(self, ns: str) -> bool:
        self.release(ns)
        return namespaces.delete(ns)

    def ns_kill_processes(self, ns: str) -> list[int]:
        return namespaces.kill_processes_in(ns)  # a namespace that is gone has no processes: []

    def ns_list(self) -> list[str]:
        return namespaces.list_names()

    def ns_exists(self, ns: str) -> bool:
        return namespaces.exists(ns)

    def ns_create_place(self, ns: str, place: PodPlace) -> None:
        """The UTS and mount namespaces of pod namespace NS, made as PLACE says; ns_delete removes them.
        Unlike the rest of this class it may be called from any thread (it forks a child and uses no
        netlink socket); places are made one at a time, by this process's place helper."""
        _place_maker.make(ns, setup_arguments(place))

    def set_sysctl(self, ns: str, key: str, value: str) -> None:
        namespaces.write_sysctl(ns, key, value)

    # -- links ------------------------------------------------------------------------------------

    def link_exists(self, ns: str | None, name: str) -> bool:
        return bool(self._ipr(ns).link_lookup(ifname=name))

    def link_names(self, ns: str | None) -> list[str]:
        return [str(link.get("ifname")) for link in self._ipr(ns).get_links()]

    def add_bridge(self, ns: str, name: str, *, mtu: int | None = None) -> None:
        extra = {"mtu": mtu} if mtu else {}
        ipr = self._ipr(ns)
        self._call(f"creating bridge {name}", ns, ipr.link, "add", ifname=name, kind="bridge", **extra)

    def add_veth(self, ns: str | None, name: str, *, peer_ns: str, peer_name: str, master: str | None = None,
                 peer_master: str | None = None, mtu: int | None = None, hairpin: bool = False,
                 peer_index: int | None = None) -> None:
        """A veth pair made with its peer already in place: one netlink request, no move afterwards.
        PEER_INDEX asks the kernel for that interface index in the peer's namespace (it fails if taken)."""
        ipr = self._ipr(ns)
        extra: dict[str, Any] = {"mtu": mtu} if mtu else {}
        if master:
            extra["master"] = self._index(ns, master)
        peer: dict[str, Any] = {"ifname": peer_name}
        if mtu:
            peer["mtu"] = mtu
        if peer_index:
            peer["index"] = peer_index
        fd = os.open(namespaces.path_of(peer_ns), os.O_RDONLY)
        try:
            peer["net_ns_fd"] = fd
            self._call(f"creating veth {name} (peer {peer_name} in {peer_ns})", ns, ipr.link, "add",
                       ifname=name, kind="veth", state="up", peer=peer, **extra)
        finally:
            os.close(fd)
        # New links: an index remembered for either name belonged to an earlier link of that name, gone with
        # its namespace (a pod's sandbox made again after a failed start reuses its veth's name).
        self._indexes.pop((ns, name), None)
        self._indexes.pop((peer_ns, peer_name), None)
        if peer_index:
            self._indexes[(peer_ns, peer_name)] = peer_index
        if hairpin:
            # Hairpin lets a pod's packet leave and re-enter the same bridge port: a pod reaching
            # itself through its Service's virtual IP.
            self._call(f"setting hairpin on {name}", ns, ipr.brport, "set", index=self._index(ns, name), mode=1)
        if peer_master:
            peer_ipr = self._ipr(peer_ns)
            self._call(f"attaching {peer_name} to {peer_master}", peer_ns, peer_ipr.link, "set",
                       index=self._index(peer_ns, peer_name), master=self._index(peer_ns, peer_master))

    def add_vxlan(self, ns: str, name: str, *, vni: int, local: str, dev: str, port: int, mac: str,
                  mtu: int) -> None:
        ipr = self._ipr(ns)
        self._call(f"creating vxlan {name}", ns, ipr.link, "add", ifname=name, kind="vxlan", vxlan_id=vni,
                   vxlan_local=local, vxlan_link=self._index(ns, dev), vxlan_port=port, vxlan_learning=0,
                   address=mac, mtu=mtu)

    def set_up(self, ns: str | None, name: str) -> None:
        ipr = self._ipr(ns)
        self._call(f"setting {name} up", ns, ipr.link, "set", index=self._index(ns, name), state="up")

    def delete_link(self, ns: str | None, name: str) -> bool:
        ipr = self._ipr(ns)
        self._indexes.pop((ns, name), None)
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except PyrouteNetlinkError as exc:
            if exc.code == 19:  # ENODEV: went away with its peer meanwhile
                return False
            raise NetlinkError(f"deleting {name} in {_where(ns)}: {os.strerror(exc.code)}") from None
        return True

    # -- addresses, routes, neighbours ------------------------------------------------------------

    def add_address(self, ns: str | None, name: str, address: str, prefixlen: int) -> None:
        ipr = self._ipr(ns)
        self._call(f"adding {address}/{prefixlen} to {name}", ns, ipr.addr, "add",
                   index=self._index(ns, name), address=address, prefixlen=prefixlen)

    def add_route(self, ns: str | None, dst: str, *, dev: str, gateway: str | None = None,
                  onlink: bool = False) -> None:
        ipr = self._ipr(ns)
        extra: dict[str, Any] = {}
        if gateway:
            extra["gateway"] = gateway
        if onlink:
            extra["flags"] = RTNH_F_ONLINK
        via = f" via {gateway}" if gateway else ""
        self._call(f"adding route {dst}{via} dev {dev}", ns, ipr.route, "add", dst=dst,
                   oif=self._index(ns, dev), **extra)

    def add_neighbour(self, ns: str, dev: str, address: str, mac: str) -> None:
        ipr = self._ipr(ns)
        self._call(f"adding neighbour {address} on {dev}", ns, ipr.neigh, "add", dst=address, lladdr=mac,
                   ifindex=self._index(ns, dev), state=NUD_PERMANENT)

    def forget_neighbour(self, ns: str, dev: str, address: str) -> bool:
        """Drop the neighbour entry for ADDRESS on DEV, if there is one; whether there was."""
        ipr = self._ipr(ns)
        try:
            ipr.neigh("del", dst=address, ifindex=self._index(ns, dev))
        except PyrouteNetlinkError as exc:
            if exc.code == errno.ENOENT:
                return False
            raise NetlinkError(f"removing neighbour {address} on {dev} in {_where(ns)}: {os.strerror(exc.code)}") \
                from None
        return True

    def add_fdb(self, ns: str, dev: str, mac: str, dst: str) -> None:
        ipr = self._ipr(ns)
        self._call(f"adding fdb {mac} -> {dst} on {dev}", ns, ipr.fdb, "append", ifindex=self._index(ns, dev),
                   lladdr=mac, dst=dst)


def _where(ns: str | None) -> str:
    return f"namespace {ns}" if ns else "the root namespace"
