"""Reachability checks from inside a namespace, in-process: ICMP echo over a raw socket opened in the
namespace (root only), many targets at once, no ping binary and no process per probe; and one HTTP GET
over a socket made in a namespace."""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import socket
import struct
import time

from netsim import namespaces


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo_request(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"kubesim-probe"
    return struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload


def ping_all(ns: str | None, targets: list[str], *, timeout: float = 3.0, interval: float = 0.2) -> dict[str, bool]:
    """Send ICMP echo requests from namespace NS to every target (resent every INTERVAL, since the first
    one may be spent on ARP) and report which answered within TIMEOUT."""
    if not targets:
        return {}
    with namespaces.entered(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    answered = dict.fromkeys(targets, False)
    deadline = time.monotonic() + timeout
    next_send = 0.0
    seq = 0
    try:
        while not all(answered.values()):
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_send:
                seq += 1
                for target in targets:
                    if not answered[target]:
                        # Unreachable for now (no neighbour yet): try again next round.
                        with contextlib.suppress(OSError):
                            sock.sendto(_echo_request(ident, seq), (target, 0))
                next_send = now + interval
            ready, _, _ = select.select([sock], [], [], max(0.0, min(next_send, deadline) - time.monotonic()))
            if not ready:
                continue
            packet, (source, _) = sock.recvfrom(2048)
            header_len = (packet[0] & 0x0F) * 4
            icmp_type, _, _, reply_ident, _ = struct.unpack("!BBHHH", packet[header_len:header_len + 8])
            if icmp_type == 0 and reply_ident == ident and source in answered:
                answered[source] = True
    finally:
        sock.close()
    return answered


def http_get(ns: str | None, host: str, port: int = 80, path: str = "/", *, timeout: float = 2.0) -> tuple[int, str]:
    """GET http://HOST:PORT/PATH over a new connection from inside namespace NS (the socket is made there,
    then used from here): (status, body). Connection failures raise OSError."""
    with namespaces.entered(ns) if ns else contextlib.nullcontext():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.sock = sock
        conn.request("GET", path, headers={"Connection": "close"})
        answer = conn.getresponse()
        return answer.status, answer.read().decode(errors="replace")
    except http.client.HTTPException as exc:
        raise OSError(f"GET http://{host}:{port}{path}: {exc!r}") from exc
    finally:
        sock.close()
