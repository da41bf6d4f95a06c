"""The network side: a thin asyncio layer over answer_wire, on UDP and TCP.

Every query is answered from the zone current when it arrives (ZONE_OF is called per query, so a
swapped zone takes effect at once). A query that makes answer_wire fail is a bug; it is logged and
answered SERVFAIL, and the server keeps answering everyone else. TCP carries any number of
length-prefixed queries per connection (RFC 7766), with an idle timeout and a cap on connections so a
client cannot pin the server's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import cast

import dns.rcode

from control.dns._answer import Reply, Transport, answer_wire
from control.dns._zone import Zone

log = logging.getLogger("control.dns")

#: Called after every answered (or dropped) query: (reply, transport, client address, seconds taken).
Observer = Callable[[Reply, Transport, tuple[str, int], float], None]

TCP_IDLE_SECONDS = 10.0
MAX_TCP_CONNECTIONS = 256
PORT_ATTEMPTS = 20


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
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()

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
        loop = asyncio.get_running_loop()
        if udp_sock is not None or tcp_sock is not None:
            assert udp_sock is not None and tcp_sock is not None, "give both sockets or neither"
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self), sock=udp_sock)
            self._tcp = await asyncio.start_server(self._serve_tcp, sock=tcp_sock)
            return
        # Port 0: the kernel picks a free UDP port, which TCP may already use; then pick again.
        for attempt in range(PORT_ATTEMPTS):
            self._udp, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self), local_addr=(host, port))
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, self.port, reuse_address=True)
                return
            except OSError as exc:
                self._udp.close()
                self._udp = None
                if port != 0 or exc.errno != errno.EADDRINUSE or attempt == PORT_ATTEMPTS - 1:
                    raise

    @property
    def port(self) -> int:
        assert self._udp is not None, "the server has not started"
        port: int = self._udp.get_extra_info("sockname")[1]
        return port

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
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


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer):
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass DatagramTransport: cast, not assert.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        wire = self.server.answer(data, "udp", addr)
        if wire is not None and self.transport is not None:
            self.transport.sendto(wire, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: nothing to do, keep serving.
        log.debug("udp error: %s", exc)
