"""The network side: a thin asyncio layer over answer_wire, on UDP and TCP.

Every query is answered from the zone current when it arrives (ZONE_OF is called per query, so a
swapped zone takes effect at once). A query that makes answer_wire fail is a bug; it is logged and
answered SERVFAIL, and the server keeps answering everyone else. TCP carries any number of
length-prefixed queries per connection (RFC 7766), with an idle timeout and a cap on connections so a
client cannot pin the server's memory. UDP is read in batches, everything waiting at once, and when the
server falls behind each source gets its fair share of answers (control/dns/_shed.py): a flood from one
pod is dropped in part, everyone else is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable

import dns.rcode

from control.dns._answer import Reply, Transport, answer_wire
from control.dns._shed import keep
from control.dns._zone import Zone

log = logging.getLogger("control.dns")

#: Called after every answered (or dropped) query: (reply, transport, client address, seconds taken).
Observer = Callable[[Reply, Transport, tuple[str, int], float], None]

TCP_IDLE_SECONDS = 10.0
MAX_TCP_CONNECTIONS = 256
PORT_ATTEMPTS = 20
#: The most datagrams read per wake-up, and how many of them make a batch the server answers at once;
#: more waiting than that means it is behind, and the heaviest sources lose their surplus.
MAX_DRAIN = 1024
BATCH_CAPACITY = 64
#: Kernel receive buffer for the UDP socket: room for bursts between two reads.
UDP_RCVBUF = 1 << 20
SHED_LOG_SECONDS = 1.0


def _servfail(data: bytes) -> Reply:
    query_id = int.from_bytes(data[0:2], "big") if len(data) >= 2 else 0
    recursion_desired = int.from_bytes(data[2:4], "big") & 0x0100 if len(data) >= 4 else 0
    flags = 0x8000 | recursion_desired | dns.rcode.SERVFAIL
    return Reply(query_id.to_bytes(2, "big") + flags.to_bytes(2, "big") + bytes(8), dns.rcode.SERVFAIL,
                 query_id=query_id, query_size=len(data))


class DNSServer:
    def __init__(self, zone_of: Callable[[], Zone], *, observer: Observer | None = None):
        self.zone_of = zone_of
        self.observer = observer
        self._udp: socket.socket | None = None
        self._tcp: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        #: Queries dropped by load shedding, in all and since the last log line (by source).
        self.shed = 0
        self._shed_recent: dict[str, int] = {}
        self._shed_logged = 0.0
        self._shed_since = 0.0

    def answer(self, data: bytes, transport: Transport, peer: tuple[str, int]) -> bytes | None:
        started = time.perf_counter()
        try:
            reply = answer_wire(self.zone_of(), data, transport)
        except Exception:
            log.exception("answering a %d-byte %s query from %s failed", len(data), transport, peer[0])
            reply = _servfail(data)
        if self.observer is not None:
            try:
                self.observer(reply, transport, peer, time.perf_counter() - started)
            except Exception:
                log.exception("query observer failed")
        return reply.wire

    async def start(self, host: str = "0.0.0.0", port: int = 53, *,
                    udp_sock: socket.socket | None = None, tcp_sock: socket.socket | None = None) -> None:
        """Listen on HOST:PORT (both protocols), or on sockets the caller bound (e.g. inside a network
        namespace). Port 0 picks a free port, the same for UDP and TCP when possible."""
        if udp_sock is not None or tcp_sock is not None:
            assert udp_sock is not None and tcp_sock is not None, "give both sockets or neither"
            self._serve_udp(udp_sock)
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock)
            return
        # Port 0: the kernel picks a free UDP port, which TCP may already use; then pick again.
        for attempt in range(PORT_ATTEMPTS):
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
            self._serve_udp(sock)
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, self.port, reuse_address=True)
                return
            except OSError as exc:
                self._close_udp()
                if port != 0 or exc.errno != errno.EADDRINUSE or attempt == PORT_ATTEMPTS - 1:
                    raise

    def _serve_udp(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # a smaller buffer than asked for is no reason not to serve
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
        self._udp = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._udp_readable)

    def _close_udp(self) -> None:
        if self._udp is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._udp.fileno())
            self._udp.close()
            self._udp = None

    def _udp_readable(self) -> None:
        sock = self._udp
        if sock is None:
            return
        batch: list[tuple[bytes, tuple[str, int]]] = []
        for _ in range(MAX_DRAIN):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # An ICMP error queued for an earlier reply (a client that went away): keep reading.
                log.debug("udp error: %s", exc)
                continue
            batch.append((data, (str(addr[0]), int(addr[1]))))
        for (data, addr), answer in zip(batch, keep([addr[0] for _, addr in batch], BATCH_CAPACITY), strict=True):
            if not answer:
                self._note_shed(addr[0])
                continue
            wire = self.answer(data, "udp", addr)
            if wire is not None:
                with contextlib.suppress(OSError):  # a full send buffer drops the reply, as UDP may
                    sock.sendto(wire, addr)

    def _note_shed(self, source: str) -> None:
        """Count a shed query; at most one log line a second, naming the heaviest source."""
        now = time.monotonic()
        if not self._shed_recent:
            self._shed_since = now
        self.shed += 1
        self._shed_recent[source] = self._shed_recent.get(source, 0) + 1
        if now - self._shed_logged >= SHED_LOG_SECONDS:
            heaviest = max(self._shed_recent, key=lambda s: self._shed_recent[s])
            log.warning("behind on UDP queries: dropped %d in %.1f s, %d of them from %s (its surplus over a "
                        "fair share)", sum(self._shed_recent.values()), now - self._shed_since,
                        self._shed_recent[heaviest], heaviest)
            self._shed_recent.clear()
            self._shed_logged = now

    @property
    def port(self) -> int:
        assert self._udp is not None, "the server has not started"
        port: int = self._udp.getsockname()[1]
        return port

    async def stop(self) -> None:
        self._close_udp()
        if self._tcp is not None:
            self._tcp.close()
            for task in list(self._connections):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._tcp.wait_closed()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._connections.add(task)
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            while True:
                head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_SECONDS)
                data = await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")), TCP_IDLE_SECONDS)
                wire = self.answer(data, "tcp", (str(peer[0]), int(peer[1])))
                if wire is None:
                    break  # a response or a runt: nothing sane follows on this stream
                writer.write(len(wire).to_bytes(2, "big") + wire)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
