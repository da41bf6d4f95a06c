"""DNS clients that run inside a pod's network namespace (`ip netns exec NS python -m tests.dnsload ...`),
for the e2e tests and bench/dns.py. Times are CLOCK_MONOTONIC, which every process on the machine shares,
so the caller can set them against its own (e.g. the moment it deleted a pod).

    pinned SERVER NAME [--rate 20] [--sport 40053]
        One UDP socket on a fixed source port (one conntrack flow, as a long-lived stub resolver's) sending
        a query every 1/RATE s, whatever came back, until stdin closes; prints "up" once a first answer
        came, then at the end one JSON object: {"sent": [[id, t], ...], "answered": {id: t}}.
    load SERVER NAME... [--seconds 5] [--window 16] [--sockets 1]
        Closed loop: WINDOW queries in flight over SOCKETS sockets, NAMES in turn; prints JSON with the answers
        per second, latency percentiles and the queries lost (no answer within a second).
    flood SERVER [--rate 10000] [--seconds 3] [--port 53] [--bind ADDRESS]
        RATE queries a second from one socket for missing names, reading what comes back; prints
        "flooding", then at the end JSON with how many went and how many were answered.
    until SERVER
        Reads a name per line on stdin, prints "polling", then asks every 2 ms until the name has an A
        record and prints the monotonic time of that answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import signal
import socket
import sys
import threading
import time

import dns.message
import dns.rcode

LOST_AFTER = 1.0


def query(name: str, query_id: int) -> bytes:
    wire: bytes = dns.message.make_query(name, "A", id=query_id).to_wire()
    return wire


def reply_id(data: bytes) -> int:
    return int.from_bytes(data[0:2], "big")


def pinned(server: str, name: str, rate: float, sport: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", sport))
    sock.setblocking(False)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    sent: list[tuple[int, float]] = []
    answered: dict[int, float] = {}
    told = False
    next_send = time.monotonic()
    query_id = 0
    while not stop.is_set():
        now = time.monotonic()
        if now >= next_send:
            query_id = (query_id + 1) & 0xFFFF
            sock.sendto(query(name, query_id), (server, 53))
            sent.append((query_id, now))
            next_send += 1 / rate
        readable, _, _ = select.select([sock], [], [], max(0.0, min(0.01, next_send - time.monotonic())))
        if readable:
            data = sock.recv(4096)
            if len(data) >= 12 and data[3] & 0x0F == dns.rcode.NOERROR:
                answered.setdefault(reply_id(data), time.monotonic())
                if not told:
                    print("up", flush=True)
                    told = True
    print(json.dumps({"sent": sent, "answered": answered}), flush=True)


def outage(sent: list[tuple[int, float]], answered: dict[int, float], since: float) -> float | None:
    """Seconds from the first query after SINCE left unanswered to the first answered one after the last
    unanswered one (0.0: none went unanswered); None if the client never recovered."""
    # The last second's queries may still be on their way back: they count neither way.
    last = sent[-1][1] if sent else since
    after = [(qid, t) for qid, t in sent if since <= t <= last - LOST_AFTER]
    lost = [i for i, (qid, _) in enumerate(after) if qid not in answered]
    if not lost:
        return 0.0
    if lost[-1] == len(after) - 1:
        return None
    return after[lost[-1] + 1][1] - after[lost[0]][1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


def load(server: str, names: list[str], seconds: float, window: int, sockets: int) -> None:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sockets)]
    for sock in socks:
        sock.setblocking(False)
    wires = [bytearray(query(n, 0)) for n in names]
    in_flight: dict[int, float] = {}
    latencies: list[float] = []
    lost = 0
    next_id = 0
    start = time.monotonic()
    end = start + seconds
    while True:
        now = time.monotonic()
        for qid in [q for q, t in in_flight.items() if now - t > LOST_AFTER]:
            del in_flight[qid]
            lost += 1
        if now >= end:
            break
        while len(in_flight) < window:
            next_id = (next_id + 1) & 0xFFFF
            wire = wires[next_id % len(wires)]
            wire[0:2] = next_id.to_bytes(2, "big")
            in_flight[next_id] = time.monotonic()
            socks[next_id % sockets].sendto(wire, (server, 53))
        readable, _, _ = select.select(socks, [], [], 0.05)
        for sock in readable:
            while True:
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    break
                sent_at = in_flight.pop(reply_id(data), None)
                if sent_at is not None:
                    latencies.append(time.monotonic() - sent_at)
    elapsed = time.monotonic() - start
    # The last WINDOW queries are still on their way at the end: neither answered nor lost.
    print(json.dumps({"answers": len(latencies), "lost": lost, "seconds": round(elapsed, 3),
                      "qps": round(len(latencies) / elapsed, 1),
                      "p50_ms": round(percentile(latencies, 0.5) * 1000, 3),
                      "p99_ms": round(percentile(latencies, 0.99) * 1000, 3)}), flush=True)


def flood(server: str, port: int, bind: str, rate: int, seconds: float) -> None:
    """RATE queries a second for names that are not there (NXDOMAIN: the costliest answer), for SECONDS
    or until SIGTERM (a test stops it once its own queries are done, however long they took)."""
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, 0))
    sock.setblocking(False)
    wires = [query(f"x{i}.default.svc.cluster.local", i) for i in range(256)]
    sent = answered = 0
    print("flooding", flush=True)
    start = time.monotonic()
    while (now := time.monotonic()) < start + seconds and not stopped:
        due = int((now - start) * rate)
        while sent < due:
            with contextlib.suppress(BlockingIOError):  # a full send buffer: that query is lost, as in a flood
                sock.sendto(wires[sent % 256], (server, port))
            sent += 1
        while select.select([sock], [], [], 0)[0]:
            sock.recv(4096)
            answered += 1
        time.sleep(0.001)
    print(json.dumps({"sent": sent, "answered": answered, "seconds": round(time.monotonic() - start, 3)}), flush=True)


def until(server: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.002)
    query_id = 0
    for line in sys.stdin:
        name = line.strip()
        print("polling", flush=True)
        while True:
            query_id = (query_id + 1) & 0xFFFF
            sock.sendto(query(name, query_id), (server, 53))
            deadline = time.monotonic() + 0.002
            found = False
            while time.monotonic() < deadline:
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    break
                if reply_id(data) == query_id:
                    response = dns.message.from_wire(data)
                    found = response.rcode() == dns.rcode.NOERROR and bool(response.answer)
                    break
            if found:
                print(f"{time.monotonic():.6f}", flush=True)
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p = sub.add_parser("pinned")
    p.add_argument("server")
    p.add_argument("name")
    p.add_argument("--rate", type=float, default=20)
    p.add_argument("--sport", type=int, default=40053)
    ld = sub.add_parser("load")
    ld.add_argument("server")
    ld.add_argument("names", nargs="+")
    ld.add_argument("--seconds", type=float, default=5)
    ld.add_argument("--window", type=int, default=16)
    ld.add_argument("--sockets", type=int, default=1)
    f = sub.add_parser("flood")
    f.add_argument("server")
    f.add_argument("--port", type=int, default=53)
    f.add_argument("--bind", default="0.0.0.0")
    f.add_argument("--rate", type=int, default=10_000)
    f.add_argument("--seconds", type=float, default=3)
    u = sub.add_parser("until")
    u.add_argument("server")
    args = parser.parse_args()
    if args.mode == "pinned":
        pinned(args.server, args.name, args.rate, args.sport)
    elif args.mode == "load":
        load(args.server, args.names, args.seconds, args.window, args.sockets)
    elif args.mode == "flood":
        flood(args.server, args.port, args.bind, args.rate, args.seconds)
    else:
        until(args.server)


if __name__ == "__main__":
    main()
