"""Real connections for the NetworkPolicy truth tables: every ordered pair of the nine pods at once.

Used by the kernel tier (pods of one node namespace) and the packet tier (pods of a whole cluster):
both give each pod's network namespace and address.
"""

from __future__ import annotations

import errno
import select
import socket
import time
from collections.abc import Mapping

from netsim import namespaces
from tests.netpol_cases import ALL_PODS, PodRef, Reachability

# Long enough for a SYN and its answer between namespaces (well under a millisecond; this is 500 times
# that, for a loaded machine); a dropped SYN is retransmitted only after a second, so anything
# unanswered by then was dropped.
PROBE_WINDOW = 0.5


def probe_matrix(netns: Mapping[PodRef, str], ips: Mapping[PodRef, str], protocol: str, port: int,
                 window: float = PROBE_WINDOW) -> Reachability:
    """Every ordered pair of distinct pods at once (non-blocking sockets, each made in its source's
    namespace): a TCP connection that completes, or a UDP probe that is answered ("hostname", which
    agnhost's netexec and the kernel tier's servers both answer), within WINDOW is allowed. A pod
    reaching itself never crosses a node, so it counts as allowed."""
    kind = socket.SOCK_STREAM if protocol == "TCP" else socket.SOCK_DGRAM
    pending: dict[socket.socket, tuple[PodRef, PodRef]] = {}
    allowed = {(p, p): True for p in ALL_PODS}
    try:
        for src in ALL_PODS:
            for dst in ALL_PODS:
                if src == dst:
                    continue
                with namespaces.entered(netns[src]):
                    s = socket.socket(socket.AF_INET, kind)
                s.setblocking(False)
                pending[s] = (src, dst)
                if kind == socket.SOCK_STREAM:
                    code = s.connect_ex((ips[dst], port))
                    assert code in (0, errno.EINPROGRESS), f"{src}->{dst}: connect gave {errno.errorcode[code]}"
                else:
                    s.sendto(b"hostname", (ips[dst], port))
        deadline = time.monotonic() + window
        while pending and (left := deadline - time.monotonic()) > 0:
            waiting = list(pending)
            if kind == socket.SOCK_STREAM:
                _, ready, _ = select.select([], waiting, [], left)
            else:
                ready, _, _ = select.select(waiting, [], [], left)
            for s in ready:
                pair = pending.pop(s)
                error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                assert error == 0, f"{pair[0]}->{pair[1]}: {errno.errorcode.get(error, error)} (a server is missing?)"
                if kind == socket.SOCK_DGRAM:
                    s.recv(256)
                allowed[pair] = True
                s.close()
        for pair in pending.values():
            allowed[pair] = False
    finally:
        for s in pending:
            s.close()
    return Reachability(allowed)
