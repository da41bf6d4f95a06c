"""Packet tracing: what one node does with real packets.

    result = trace(TraceRequest(cluster="kubesim", node="worker-1", src="10.244.1.77", dst="10.96.0.10",
                                dport=53, proto="udp", count=40, origin=Origin.bridge_probe(24, "10.244.1.1")))
    result.to_dict()   # {"result": "DNAT", "endpoints": [...], "masquerade": false, ...}

N probes (a TCP SYN, a UDP datagram or an SCTP INIT, crafted with scapy) leave the origin with N different
source ports and are followed through the node in two ways at once:

- on the wire: one AF_PACKET socket opened inside the node's namespace sees every interface of it
  (eth0, cbr0, the veths, lo), both directions, so a probe's copy leaving the node shows its translated
  destination and (after masquerade) its rewritten source; replies (SYN-ACK, RST, ICMP unreachable)
  are seen on their way back;
- in netfilter: a temporary table of our own in the node's namespace sets `meta nftrace` for exactly the
  probes' flows, and `nft monitor trace`, run inside the node, names every chain and rule they meet.
  Empty base chains of that table at the end of postrouting and input show the packet as it leaves
  (after SNAT) or is delivered locally, even when it then waits for ARP and never reaches a wire.

Probes are recognised after NAT by their IP ID (NAT never changes it, fully-random masquerade changes
the source port): the IDs are consecutive from a random base, as are the source ports.

Where the probes come from (`Origin`): the node itself (a raw socket inside it: the OUTPUT path), an
existing namespace (a pod, an external host, another node) sending link-layer frames straight to the
node's interface, or a temporary probe namespace attached to the node's pod bridge or to the fabric
bridge. Probe namespaces and the trace table are always removed, also on Ctrl-C; a crashed run's
leftovers are swept by the next trace (their pid is in their name) and by `kubesim down`.

This module is the kernel runner; what the probes are and what the captured frames and trace lines
mean is netsim/trace_analysis.py (pure, and re-exported here).

Errors: TraceError (netsim.trace_analysis), a NetsimError.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

from netsim import names, namespaces
from netsim.kernel import Kernel, LinuxKernel
from netsim.trace_analysis import (
    DEFAULT_TIMEOUT,
    GRACE,
    IPTABLES_TABLES,
    OWN_CHAINS,
    PROTOCOLS,
    TABLE_PREFIX,
    Analyzer,
    Frame,
    Origin,
    Probe,
    TraceError,
    TraceRequest,
    TraceResult,
    craft,
    iptables_rule_comments,
    make_probes,
    write_pcap,
)

_ETH_P_ALL = 0x0003
_ETH_P_IP = 0x0800
_SIOCGIFHWADDR = 0x8927
_SO_RCVBUFFORCE = 33

__all__ = ["DEFAULT_TIMEOUT", "PROTOCOLS", "Analyzer", "Frame", "Origin", "Probe", "TraceError", "TraceRequest",
           "TraceResult", "craft", "make_probes", "sweep_probes", "trace", "write_pcap"]


# ---------------------------------------------------------------------------------------------------
# The kernel side: namespaces, sockets, the trace table, the monitor


def _nft(ns: str, *args: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(namespaces.command_in(ns, ["nft", *args]), input=stdin, capture_output=True, text=True,
                          check=False)
    if check and done.returncode != 0:
        raise TraceError(f"nft {' '.join(args)} in {ns}: {done.stderr.strip()}")
    return done.stdout


def _mac_of(ns: str | None, ifname: str) -> bytes:
    with namespaces.entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        info = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, struct.pack("256s", ifname.encode()[:15]))
    except OSError as exc:
        raise TraceError(f"interface {ifname} in {ns}: {exc.strerror}") from None
    finally:
        sock.close()
    return info[18:24]


def _local_addresses(ns: str) -> frozenset[str]:
    from pyroute2 import IPRoute

    with namespaces.entered(ns):
        ipr = IPRoute()
    try:
        return frozenset(str(a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS"))
                         for a in ipr.get_addr(family=socket.AF_INET))
    finally:
        ipr.close()


def pid_alive(pid: int) -> bool:
    """Whether a process with PID exists (one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str) -> int | None:
    head = name.split("-")[0]
    return int(head) if head.isdigit() else None


def _conntrack_source_ports(ns: str, src: str) -> set[int]:
    """The source ports of SRC's connections in NS's conntrack table (empty if it cannot be read: the
    probes then take their chances, as before)."""
    try:
        done = subprocess.run(namespaces.command_in(ns, ["conntrack", "-L", "-s", src]), capture_output=True,
                              text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    # "tcp 6 117 SYN_SENT src=A dst=B sport=P dport=Q [UNREPLIED] src=B dst=A sport=Q dport=P ...":
    # the first sport= is the original direction's
    return {int(match.group(1)) for match in re.finditer(r"^\S+.*? sport=(\d+)", done.stdout, re.MULTILINE)}


def sweep_probes(cluster: str, *, kernel: Kernel | None = None) -> list[str]:
    """Remove probe namespaces of CLUSTER whose tracing process is gone (a SIGKILLed trace). A KERNEL
    given stays open; one made here is closed."""
    own = kernel is None
    kernel = kernel or LinuxKernel()
    prefix = names.probe_ns(cluster, "")
    removed = []
    try:
        for ns in kernel.ns_list():
            pid = _owner_pid(ns[len(prefix):]) if ns.startswith(prefix) else None
            if pid is not None and not pid_alive(pid) and kernel.ns_delete(ns):
                removed.append(ns)
    finally:
        if own:
            kernel.close()
    return removed


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Cleanup must finish: Ctrl-C or SIGTERM during it is delivered after it."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    except (ValueError, OSError):
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Making something and recording it (so that close() undoes it) must not be cut in two: Ctrl-C or
    SIGTERM arriving in between is held and re-delivered right after. Python-level handlers rather than
    a blocked mask, because a child started inside (the monitor) would inherit the mask and could not
    be terminated. Outside the main thread no Python handler runs, so there is nothing to hold."""
    held: list[int] = []
    try:
        previous = {sig: signal.signal(sig, lambda signum, _frame: held.append(signum))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if held:
            signal.raise_signal(held[0])


class _Run:
    """Everything one trace makes, undone in reverse order by close()."""

    def __init__(self, request: TraceRequest, kernel: Kernel) -> None:
        self.request = request
        self.kernel = kernel
        self.node_ns = names.node_ns(request.cluster, request.node)
        self.run_id = f"{os.getpid()}-{random.getrandbits(24):06x}"
        self.table = f"{TABLE_PREFIX}{self.run_id}"
        self.probe_ns: str | None = None
        self.table_made = False
        self.monitor: subprocess.Popen[bytes] | None = None
        self.sockets: list[socket.socket] = []
        self.sentinel: socket.socket | None = None
        self.leftover = b""  # monitor output after the sentinel's trace, not yet a whole line

    def close(self) -> None:
        """Undo everything, each step whatever the others did; the first failure is raised at the end."""
        failures: list[BaseException] = []

        def step(fn: Callable[[], object]) -> None:
            try:
                fn()
            except Exception as exc:
                failures.append(exc)

        with _deferred_signals():
            for sock in self.sockets:
                step(sock.close)
            if self.monitor is not None:
                step(self._stop_monitor)
            if self.table_made:
                step(self._delete_table)
            if self.probe_ns is not None:
                probe_ns = self.probe_ns
                step(lambda: self.kernel.ns_delete(probe_ns))
            step(self.kernel.close)
        if failures:
            raise TraceError(f"cleaning up after the trace: {failures[0]}") from failures[0]

    def _stop_monitor(self) -> None:
        assert self.monitor is not None
        self.monitor.terminate()
        try:
            self.monitor.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.monitor.kill()
            self.monitor.wait()
        if self.monitor.stdout is not None:
            self.monitor.stdout.close()

    def _delete_table(self) -> None:
        # Gone with its namespace if the node went away meanwhile.
        if self.kernel.ns_exists(self.node_ns):
            _nft(self.node_ns, "delete", "table", "ip", self.table, check=False)

    # -- origin ------------------------------------------------------------------------------------

    def make_probe_namespace(self) -> str:
        origin, request = self.request.origin, self.request
        bridge_ns = self.node_ns if origin.kind == "bridge-probe" else names.fabric_ns(request.cluster)
        bridge = names.NODE_BRIDGE if origin.kind == "bridge-probe" else names.FABRIC_BRIDGE
        if not self.kernel.ns_exists(bridge_ns):
            raise TraceError(f"namespace {bridge_ns} does not exist: is cluster {request.cluster!r} up?")
        ns = names.probe_ns(request.cluster, self.run_id)
        with _signals_held():
            self.kernel.ns_create(ns)
            self.probe_ns = ns
        host_end = names.fit_ifname(f"prb{names.short_hash(self.run_id, 8)}")
        # Hairpin like a pod's port (the kubelet's sandboxes have it): a probe reaching its own address
        # through a Service must get its packet back on the port it came from.
        self.kernel.add_veth(bridge_ns, host_end, peer_ns=ns, peer_name=origin.iface, master=bridge, peer_index=2,
                             hairpin=origin.kind == "bridge-probe")
        self.kernel.set_up(ns, "lo")
        self.kernel.set_up(ns, origin.iface)
        self.kernel.add_address(ns, origin.iface, request.src, origin.prefixlen)
        if origin.gateway:
            self.kernel.add_route(ns, "0.0.0.0/0", dev=origin.iface, gateway=origin.gateway, onlink=True)
        self.kernel.release(ns)
        self.kernel.release(bridge_ns)
        return ns

    def sender(self) -> Callable[[bytes], None]:
        """A function sending one IP packet (bytes) the way the origin would.

        The node itself and anything on its pod bridge (a pod, a bridge probe) send through their own
        kernel's routing, as a real pod does: on-link destinations are ARPed for and bridged, the rest goes
        to the gateway. What comes over the fabric is handed to the node's eth0 as link-layer frames, as a
        router would: external hosts have no routes to Service addresses, and need none."""
        origin, request = self.request.origin, self.request
        ns = {"local": self.node_ns, "namespace": origin.netns}.get(origin.kind, self.probe_ns)
        assert ns is not None
        if not self.kernel.ns_exists(ns):
            raise TraceError(f"namespace {ns} does not exist")
        if origin.kind == "local" or origin.via == names.NODE_BRIDGE:
            with namespaces.entered(ns):
                raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.sockets.append(raw)

            def send_routed(packet: bytes) -> None:
                raw.sendto(packet, (request.dst, 0))

            return send_routed
        dst_mac = _mac_of(self.node_ns, origin.via)
        src_mac = _mac_of(ns, origin.iface)
        with namespaces.entered(ns):
            link = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_IP))
        self.sockets.append(link)
        link.bind((origin.iface, 0))
        header = dst_mac + src_mac + struct.pack("!H", _ETH_P_IP)

        def send_frame(packet: bytes) -> None:
            link.send(header + packet)

        return send_frame

    # -- observation -------------------------------------------------------------------------------

    def capture_socket(self) -> socket.socket:
        with namespaces.entered(self.node_ns):
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        self.sockets.append(cap)
        with contextlib.suppress(OSError):
            cap.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 8 << 20)
        cap.setblocking(False)
        return cap

    def chain_hooks(self) -> tuple[dict[tuple[str, str], str], list[str]]:
        """(table, chain) -> hook of every base chain in the node, and stale trace tables to remove."""
        listed = json.loads(_nft(self.node_ns, "-j", "list", "chains") or '{"nftables": []}')
        hooks: dict[tuple[str, str], str] = {}
        stale: set[str] = set()
        for item in listed.get("nftables", []):
            chain = item.get("chain")
            if not chain:
                continue
            if chain.get("hook"):
                hooks[(chain["table"], chain["name"])] = chain["hook"]
            table = str(chain["table"])
            if table.startswith(TABLE_PREFIX) and chain.get("family") == "ip":
                pid = _owner_pid(table[len(TABLE_PREFIX):])
                if pid is not None and not pid_alive(pid):
                    stale.add(table)
        return hooks, sorted(stale)

    def start_tracing(self, probes: list[Probe], stale: list[str]) -> None:
        """The monitor first, then the table; then wait for a sentinel packet's trace to come through,
        so that no probe is sent before the monitor listens."""
        request = self.request
        with _signals_held():
            self.monitor = subprocess.Popen(namespaces.command_in(self.node_ns, ["nft", "-a", "monitor", "trace"]),
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        with namespaces.entered(self.node_ns):
            sentinel = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sockets.append(sentinel)
        sentinel.bind(("127.0.0.1", 0))
        self.sentinel = sentinel
        first, last = probes[0].sport, probes[-1].sport
        ports = str(first) if first == last else f"{first}-{last}"
        match = (f"ip saddr {request.src} ip daddr {request.dst} meta l4proto {request.proto} "
                 f"th sport {ports} th dport {request.dport}")
        sentinel_port = sentinel.getsockname()[1]
        script = "".join(f"delete table ip {t}\n" for t in stale) + f"""
table ip {self.table} {{
    chain pre {{ type filter hook prerouting priority -400; policy accept; {match} meta nftrace set 1; }}
    chain pre-late {{ type filter hook prerouting priority 500; policy accept; }}
    chain out-late {{ type filter hook output priority 500; policy accept; }}
    chain out {{
        type filter hook output priority -400; policy accept;
        {match} meta nftrace set 1
        ip daddr 127.0.0.1 udp sport {sentinel_port} meta nftrace set 1
    }}
    chain post {{ type filter hook postrouting priority 1000; policy accept; }}
    chain in {{ type filter hook input priority 1000; policy accept; }}
}}
"""
        self.table_made = True
        _nft(self.node_ns, "-f", "-", stdin=script)

    def wait_monitor_ready(self, lines: list[str], timeout: float = 2.0) -> bool:
        """Send the sentinel until its trace comes through; LINES gets what followed it."""
        assert self.monitor is not None and self.monitor.stdout is not None and self.sentinel is not None
        fd = self.monitor.stdout.fileno()
        os.set_blocking(fd, False)
        needle = f"udp sport {self.sentinel.getsockname()[1]} "
        deadline = time.monotonic() + timeout
        pending = b""
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                self.sentinel.sendto(b"kubesim-trace sentinel", ("127.0.0.1", 9))
            ready, _, _ = select.select([fd], [], [], 0.02)
            if not ready:
                continue
            chunk = _read(fd)
            if chunk is None:
                return False
            pending += chunk
            *complete, pending = pending.split(b"\n")
            text = [raw.decode(errors="replace") for raw in complete]
            marks = [i for i, line in enumerate(text) if needle in line]
            if marks:
                lines[:] = text[marks[-1] + 1:]
                self.leftover = pending
                return True
        return False


def _read(fd: int) -> bytes | None:
    """What is there to read on FD; None at its end."""
    try:
        chunk = os.read(fd, 1 << 16)
    except BlockingIOError:
        return b""
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            return b""
        raise
    return chunk or None


def trace(request: TraceRequest, *, pcap: str | None = None, kernel: Kernel | None = None,
          rng: random.Random | None = None) -> TraceResult:
    """Send REQUEST's probes and report what the node did with them. Everything made for the trace
    (probe namespace, trace table, monitor process, sockets) is removed before returning or raising."""
    request.check()
    kernel = kernel or LinuxKernel()
    node_ns = names.node_ns(request.cluster, request.node)
    if not kernel.ns_exists(node_ns):
        kernel.close()
        raise TraceError(f"node {request.node!r} of cluster {request.cluster!r} has no namespace ({node_ns}): "
                         "is the cluster up (`kubesim status`)?")
    started = time.monotonic()
    probes = make_probes(request.count, rng, busy=_conntrack_source_ports(node_ns, request.src))
    run = _Run(request, kernel)
    try:
        sweep_probes(request.cluster, kernel=run.kernel)
        cap = run.capture_socket()
        if request.origin.kind in ("bridge-probe", "fabric-probe"):
            run.make_probe_namespace()
        send = run.sender()
        hooks: dict[tuple[str, str], str] = {}
        lines: list[str] = []
        tracing = False
        nftrace = "off"
        if request.nft_trace:
            try:
                hooks, stale = run.chain_hooks()
                run.start_tracing(probes, stale)
                tracing = run.wait_monitor_ready(lines)
                nftrace = "nftables" if tracing else "unavailable: nft monitor trace did not start"
            except (TraceError, OSError, ValueError) as exc:
                nftrace = f"unavailable: {exc}"
        hooks.update({(run.table, chain): hook for chain, hook in OWN_CHAINS.items()})
        analyzer = Analyzer(src=request.src, dst=request.dst, dport=request.dport, proto=request.proto,
                            probes=probes, own_table=run.table, chain_hooks=hooks,
                            local_addresses=_local_addresses(node_ns))
        for line in lines:
            analyzer.feed_trace(line)
        # Frames from before the probes were sent are not theirs.
        _drain(cap, None)
        for probe in probes:
            try:
                send(bytes(craft(probe, request.src, request.dst, request.dport, request.proto)))
            except OSError as exc:
                if exc.errno == errno.EPERM:
                    # A local packet dropped or rejected by netfilter on output: sendto says EPERM.
                    analyzer.states[probe.index].refused = True
                else:
                    analyzer.states[probe.index].send_error = f"sending failed: {exc.strerror}"
        monitor_fd = run.monitor.stdout.fileno() if tracing and run.monitor and run.monitor.stdout else None
        _collect(analyzer, cap, monitor_fd, run.leftover, tracing=tracing, timeout=request.timeout)
        analyzer.rule_comments = _iptables_comments(node_ns, analyzer)
        elapsed = time.monotonic() - started
        if pcap:
            write_pcap(pcap, analyzer.relevant_frames())
        return analyzer.result(node=request.node, ingress=request.origin.ingress, nftrace=nftrace,
                               elapsed=elapsed, pcap=pcap)
    finally:
        run.close()


def _iptables_comments(node_ns: str, analyzer: Analyzer) -> dict[str, dict[tuple[str, int], str]]:
    """The comments of the iptables-nft rules the probes met, read back from iptables-nft-save (the
    trace cannot show them). Read after the probes, once per table met; a table that cannot be read
    leaves its hops without comments rather than failing the trace."""
    met = {event.table for state in analyzer.states for event in state.events
           if event.kind == "rule" and event.family == "ip" and event.table in IPTABLES_TABLES and event.handle}
    comments: dict[str, dict[tuple[str, int], str]] = {}
    for table in sorted(met):
        saved = subprocess.run(namespaces.command_in(node_ns, ["iptables-nft-save", "-t", table]),
                               capture_output=True, text=True, check=False)
        if saved.returncode != 0:
            continue
        try:
            listing = _nft(node_ns, "-a", "list", "table", "ip", table)
        except TraceError:
            continue
        comments[f"ip {table}"] = iptables_rule_comments(listing, saved.stdout)
    return comments


def _drain(cap: socket.socket, analyzer: Analyzer | None) -> None:
    while True:
        try:
            data, address = cap.recvfrom(65535)
        except (BlockingIOError, InterruptedError):
            return
        if analyzer is not None:
            # (ifname, protocol, pkttype, hatype, address); the name is resolved in the socket's namespace.
            analyzer.feed_frame(Frame(address[0], address[2], data, time.time()))


def _collect(analyzer: Analyzer, cap: socket.socket, monitor_fd: int | None, pending: bytes, *, tracing: bool,
             timeout: float) -> None:
    """Read frames and trace lines until every probe is accounted for (then a short grace for replies
    and the last trace lines) or until TIMEOUT: a dropped probe is only known by its silence."""
    deadline = time.monotonic() + timeout
    settle: float | None = None
    watched: list[Any] = [cap] + ([monitor_fd] if monitor_fd is not None else [])
    while True:
        now = time.monotonic()
        if settle is None and analyzer.all_concluded(tracing=tracing, now=now):
            settle = now + GRACE
        end = min(deadline, settle) if settle is not None else deadline
        if now >= end:
            break
        # Poll now and then: a probe's conclusion may be that nothing more came for a while.
        ready, _, _ = select.select(watched, [], [], min(end - now, GRACE / 2))
        if cap in ready:
            _drain(cap, analyzer)
        if monitor_fd is not None and monitor_fd in ready:
            chunk = _read(monitor_fd)
            if chunk is None:
                watched.remove(monitor_fd)
                monitor_fd = None
                continue
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                analyzer.feed_trace(raw.decode(errors="replace"), time.monotonic())
