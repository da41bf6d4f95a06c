"""`kubesim observe`: flows as they happen on a running cluster, like `hubble observe`.

    observe(state, flt=Filter(verdicts=("REJECTED",)), emit=print_record)   # until Ctrl-C

Per watched node (its network namespace), two listeners and one table, all ours and all removed on exit:

- `conntrack -E -e NEW`: a NEW event is a connection the kernel confirmed, i.e. its first packet made
  it through every hook of the node; its reply tuple names the backend DNAT chose and any masquerade.
  Those are the FORWARDED flows.
- `nft monitor trace` plus table `ip kubesim-observe-<pid>`, whose two chains set `meta nftrace` on the
  packets of new connections only (`ct state new`, at priority -150: after conntrack has looked at the
  packet, at -200, and before kube-proxy's pre-DNAT filter, at -110, and its DNAT, at -100). A packet
  that is rejected or dropped is never confirmed, so conntrack never mentions it; its trace names the
  rule that said drop. kube-proxy's `reject` for a Service without endpoints is REJECTED, any other
  drop (a NetworkPolicy, kube-proxy's catch-all for the service range, a chain's policy) DROPPED.
  Established traffic is not traced, so the cost is a few netlink messages per new connection.
  (Log rules would need nf_log in the node's namespace, which the kernel disables outside the root
  namespace by default; counters say how many, not which.)

Names come from the apiserver (pods, Services, all namespaces) and the topology (nodes, external hosts),
listed at the start and again when a flow names an address of the cluster's ranges nobody is known by
(a pod just made), at most once a second.

A node's flow between pods of two nodes is seen on both: on the client's node with the Service and
the backend DNAT chose, on the backend's node as pod to pod. Each record says which node saw it.

Errors: StateError (no such cluster or node), ObserveError (a listener could not start).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from kubesim import components
from kubesim.errors import ObserveError, StateError
from kubesim.flows import OBSERVE_TABLE_PREFIX, Directory, Filter, Flow, FlowJoiner, describe
from kubesim.state import ClusterState
from netsim import names, namespaces
from netsim.topology import Topology
from netsim.trace import pid_alive

# How long the listeners get to show they hear before observe says it is ready anyway.
READY_TIMEOUT = 3.0
REFRESH_EVERY = 10.0
REFRESH_UNKNOWN_AFTER = 1.0


def _table_script(table: str) -> str:
    return f"""table ip {table} {{
    chain pre {{ type filter hook prerouting priority -150; policy accept; ct state new meta nftrace set 1; }}
    chain out {{ type filter hook output priority -150; policy accept; ct state new meta nftrace set 1; }}
}}
"""


def _nft(ns: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(namespaces.command_in(ns, ["nft", *args]), input=stdin, capture_output=True, text=True,
                          check=False, timeout=10)


def stale_tables(listing: str) -> list[str]:
    """Observe tables in `nft list tables` output whose process is gone (a SIGKILLed observe)."""
    stale = []
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[:2] == ["table", "ip"] and parts[2].startswith(OBSERVE_TABLE_PREFIX):
            pid = parts[2][len(OBSERVE_TABLE_PREFIX):]
            if pid.isdigit() and not pid_alive(int(pid)):
                stale.append(parts[2])
    return stale


def rule_of_handle(listing: str, handle: int) -> str | None:
    """The rule with HANDLE in `nft -a list chain` output, without its handle comment."""
    suffix = f"# handle {handle}"
    for line in listing.splitlines():
        text = line.strip()
        if text.endswith(suffix) and not text.startswith(("chain ", "table ", "type ")):
            return text[: -len(suffix)].strip()
    return None


class _Lines:
    """Whole lines from a child's pipe, read without blocking."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd = stream.fileno()
        os.set_blocking(self.fd, False)
        self.pending = b""
        self.ended = False

    def read(self) -> list[str]:
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        if not chunk:
            self.ended = True
            chunk, self.pending = self.pending + b"\n", b""
        *complete, self.pending = (self.pending + chunk).split(b"\n")
        return [raw.decode(errors="replace") for raw in complete if raw]


class NodeWatch:
    """One node's listeners and trace table; close() undoes whatever start() made."""

    def __init__(self, cluster: str, node: str) -> None:
        self.node = node
        self.ns = names.node_ns(cluster, node)
        self.table = f"{OBSERVE_TABLE_PREFIX}{os.getpid()}"
        self.joiner = FlowJoiner(node, own_table=self.table, rule_text=self.rule_text)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.readers: dict[int, tuple[_Lines, Callable[[str], Flow | None]]] = {}
        self.table_made = False
        self.sentinel_port = 0
        self.heard: set[str] = set()

    def start(self) -> None:
        if not namespaces.exists(self.ns):
            raise ObserveError(f"node {self.node!r} has no namespace ({self.ns}): is the cluster up?")
        listed = _nft(self.ns, "list", "tables")
        sweep = "".join(f"delete table ip {t}\n" for t in stale_tables(listed.stdout))
        # Listeners first, then the table: nothing it marks is missed by a monitor not yet listening.
        for argv, parse in ((["nft", "-a", "monitor", "trace"], self.joiner.trace),
                            (["conntrack", "-E", "-e", "NEW"], self.joiner.conntrack)):
            try:
                process = subprocess.Popen(namespaces.command_in(self.ns, argv), stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL, start_new_session=True)
            except OSError as exc:
                raise ObserveError(f"cannot run {argv[0]} in node {self.node}: {exc.strerror}; install "
                                   f"{'conntrack' if argv[0] == 'conntrack' else 'nftables'}") from None
            self.processes.append(process)
            assert process.stdout is not None
            lines = _Lines(process.stdout)
            self.readers[lines.fd] = (lines, parse)
        self.table_made = True
        done = _nft(self.ns, "-f", "-", stdin=sweep + _table_script(self.table))
        if done.returncode != 0:
            raise ObserveError(f"adding table ip {self.table} in node {self.node}: {done.stderr.strip()}")

    def rule_text(self, family: str, table: str, chain: str, handle: int) -> str | None:
        """Rule HANDLE of CHAIN as the kernel has it now (None when it is gone)."""
        # Unquoted: nft takes no quoted string here, and its names may hold '/' (the policy agent's do).
        listed = _nft(self.ns, "-a", "list", "chain", family, table, chain)
        return rule_of_handle(listed.stdout, handle) if listed.returncode == 0 else None

    def send_sentinel(self) -> None:
        """A UDP datagram over the node's loopback: a new connection both listeners hear of."""
        with namespaces.entered(self.ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("127.0.0.1", self.sentinel_port or 0))
            self.sentinel_port = sock.getsockname()[1]
            with contextlib.suppress(OSError):
                sock.sendto(b"kubesim-observe sentinel", ("127.0.0.1", 9))
        finally:
            sock.close()

    def note_sentinel(self, fd: int, line: str) -> None:
        port = self.sentinel_port
        if port and (f"sport={port} " in line or f"udp sport {port} " in line):
            self.heard.add("conntrack" if "sport=" in line else "trace")

    @property
    def ready(self) -> bool:
        return self.heard >= {"conntrack", "trace"}

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self.table_made and namespaces.exists(self.ns):
            _nft(self.ns, "delete", "table", "ip", self.table)
        self.table_made = False


class ApiNames:
    """The Directory, from the apiserver through the admin kubeconfig (topology names only without one)."""

    def __init__(self, kubeconfig: Path, topology: Topology) -> None:
        self.kubeconfig = kubeconfig
        self.topology = topology
        self.directory = Directory.from_objects(topology)
        self.refreshed = 0.0
        ranges = [topology.network.cluster_cidr, topology.network.service_cidr]
        self.ranges = [ipaddress.IPv4Network(r) for r in ranges if r]

    def refresh(self) -> None:
        from control.client import PODS, SERVICES, KubeClientError, load_kubeconfig

        self.refreshed = time.monotonic()
        if not self.kubeconfig.exists():
            return

        async def read() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            client = load_kubeconfig(self.kubeconfig, timeout=5)
            try:
                pods = (await client.list(PODS)).get("items") or []
                services = (await client.list(SERVICES)).get("items") or []
                return list(pods), list(services)
            finally:
                await client.close()

        try:
            pods, services = asyncio.run(read())
        except (KubeClientError, OSError) as exc:
            print(f"kubesim observe: cannot list pods and Services ({exc}); showing addresses", file=sys.stderr)
            return
        self.directory = Directory.from_objects(self.topology, pods=pods, services=services,
                                                previous=self.directory)

    def _ours_unknown(self, ip: str | None) -> bool:
        if not ip or self.directory.knows(ip):
            return False
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            return False
        return any(address in r for r in self.ranges)

    def for_flow(self, flow: Flow) -> Directory:
        now = time.monotonic()
        unknown = any(self._ours_unknown(ip) for ip in (flow.src, flow.dst, flow.backend))
        if now - self.refreshed > REFRESH_EVERY or (unknown and now - self.refreshed > REFRESH_UNKNOWN_AFTER):
            self.refresh()
        return self.directory


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP end observe like Ctrl-C does: through the cleanup."""
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    except ValueError:  # not the main thread: no handlers to install
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _deferred(fn: Callable[[], None]) -> None:
    """Run FN (the cleanup) with Ctrl-C and SIGTERM held until it is done."""
    blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        fn()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def watched_nodes(topology: Topology, wanted: tuple[str, ...]) -> list[str]:
    known = [n.name for n in topology.nodes]
    for name in wanted:
        if name not in known:
            raise StateError(f"--node {name!r}: cluster {topology.name!r} has nodes {', '.join(known)}")
    return [n for n in known if not wanted or n in wanted]


def observe(state: ClusterState, *, flt: Filter, emit: Callable[[dict[str, Any]], None],
            follow: bool = True, window: float = 5.0, count: int | None = None,
            status: Callable[[str], None] = lambda _message: None) -> int:
    """Show flows of STATE's cluster that FLT lets through, each as a record given to EMIT, until Ctrl-C
    or SIGTERM (FOLLOW), for WINDOW seconds (not FOLLOW), or until COUNT were shown. Returns how many
    were shown. Everything installed in the nodes is removed before returning or raising."""
    topology = state.topology() if state.exists else None
    if topology is None:
        raise StateError(f"cluster {state.name!r} does not exist; bring it up with `kubesim up`")
    nodes = watched_nodes(topology, flt.nodes)
    directory = ApiNames(components.kubeconfig_path(state), topology)
    watches = [NodeWatch(state.name, node) for node in nodes]
    shown = 0
    with _sigterm_interrupts():
        try:
            directory.refresh()
            for watch in watches:
                watch.start()
            _wait_ready(watches, status)
            status(f"observing {', '.join(nodes)} of cluster {state.name!r}"
                   + (" (Ctrl-C to stop)" if follow else f" for {window:g}s"))
            deadline = None if follow else time.monotonic() + window
            readers = {fd: (watch, lines, parse) for watch in watches
                       for fd, (lines, parse) in watch.readers.items()}
            while readers and (count is None or shown < count):
                wait = 1.0 if deadline is None else deadline - time.monotonic()
                if wait <= 0:
                    break
                ready, _, _ = select.select(list(readers), [], [], min(wait, 1.0))
                for fd in ready:
                    watch, lines, parse = readers[fd]
                    for line in lines.read():
                        flow = parse(line)
                        if flow is None:
                            continue
                        record = describe(flow, directory.for_flow(flow))
                        if flt.matches(record) and (count is None or shown < count):
                            emit(record)
                            shown += 1
                    if lines.ended:
                        del readers[fd]
                        status(f"a listener of node {watch.node} ended (is the node gone?)")
        except KeyboardInterrupt:
            pass
        finally:
            _deferred(lambda: _close_all(watches))
    return shown


def _wait_ready(watches: list[NodeWatch], status: Callable[[str], None]) -> None:
    """Send each node's sentinel until both its listeners have heard one, so that what the caller does
    next is seen; after READY_TIMEOUT, go on and say which did not."""
    deadline = time.monotonic() + READY_TIMEOUT
    fds = {fd: watch for watch in watches for fd in watch.readers}
    while time.monotonic() < deadline and not all(w.ready for w in watches):
        for watch in watches:
            if not watch.ready:
                watch.send_sentinel()
        ready, _, _ = select.select(list(fds), [], [], 0.05)
        for fd in ready:
            watch = fds[fd]
            lines, _parse = watch.readers[fd]
            for line in lines.read():
                watch.note_sentinel(fd, line)
    for watch in watches:
        if not watch.ready:
            missing = {"conntrack", "trace"} - watch.heard
            status(f"node {watch.node}: no sign of life from {' and '.join(sorted(missing))} yet; going on")


def _close_all(watches: list[NodeWatch]) -> None:
    failures = []
    for watch in watches:
        try:
            watch.close()
        except (OSError, subprocess.SubprocessError) as exc:
            failures.append(f"{watch.node}: {exc}")
    if failures:
        raise ObserveError("cleaning up after observe: " + "; ".join(failures))
