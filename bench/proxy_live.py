"""Benchmark: the REAL kube-proxy process (`python -m proxy`) against a real apiserver process, with S
Services x E distinct endpoints; one-endpoint changes timed from the API write to the kernel. Prints JSON.
Needs root. As root:

    python bench/proxy_live.py [--services 10000] [--endpoints 5] [--changes 20] [--runs 3]

The apiserver (`python -m control.apiserver`, SQLite store, HTTPS, tokens) runs in a namespace of its own
(ksim-test-<random>.0) with a bridge; every proxy runs in a fresh node namespace (ksim-test-<random>.<n>)
wired to that bridge by a veth, with upstream's flags (--kubeconfig, --node-name, --mode, --cluster-cidr,
--service-cidr; everything else default: min-sync-period 1 s, sync-period 30 s, metrics on the node's
127.0.0.1:10249). The Services and EndpointSlices are created through the API before any proxy starts.

For each mode (nftables, then iptables) and each of --runs runs, a fresh proxy is started; then:
  - first_sync_s: proxy start -> its first full sync is reported done (kubeproxy_sync_full_* count);
  - rss_mb: the proxy's VmRSS (/proc/<pid>/status) after that first sync, and after the changes
    (and VmHWM, the peak);
  - --changes one-endpoint changes, on Services spread over the whole sorted range (first ... last):
    one endpoint of the Service's EndpointSlice is replaced through the API (PUT, with the
    last-change-trigger-time annotation set to the moment of the write, as the EndpointSlice controller
    does). Changes are --gap seconds apart (a lone change, not a burst: the runner's min-sync-period
    would otherwise batch them).
    * write_to_kernel: from just before the PUT to the moment the kernel announces the committed
      nf_tables transaction naming the new endpoint (a netlink socket in the node's namespace subscribed
      to NFNLGRP_NFTABLES, as `nft monitor` is; see Monitor): no polling delay, and no load from listing
      50k elements. This is the number the targets are about. Both modes are seen this way: iptables-nft's
      rules are nf_tables rules too (the KUBE-SEP chain's `-s <endpoint>` match holds the address).
    * metric: the proxy's own kubeproxy_network_programming_duration_seconds over the same changes
      (trigger time -> end of its sync, by the proxy's clock): count, mean (sum / count) and bucket counts.
      Its buckets are upstream's (0.25 s and up), so only the mean says anything below 250 ms.
    * every change is also checked against the kernel afterwards: the run's final addresses must all be in
      `nft list ruleset` of the node namespace (a change announced but then lost would fail).
  Per run: p50 / p99 (nearest rank) / min / max; across runs: the median of each.
Everything is removed at the end (processes by pid, namespaces by name); the root namespace is untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ctypes
import errno
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

# bench/ is sys.path[0] when a benchmark is run as a script (`python bench/X.py`), as `make bench` does.
from benchstats import addresses, median_of, rfc3339_nano, spread, summary_ms

from control.apiserver.auth import write_token_file
from control.apiserver.certs import make_certificates
from control.client import ENDPOINT_SLICES, NAMESPACES, NODES, SERVICES, Client
from netsim import namespaces
from netsim.probe import http_get

API_IP = "192.168.255.1"
NODE_NET = "192.168.255.{}/24"
API_PORT = 6443
CLONE_NEWNET = 0x40000000
NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
SO_RCVBUFFORCE = 33
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
NEW_ENDPOINTS = "10.250.0.0/16"
NAMESPACE = "bench"
ADMIN_TOKEN = "bench-admin-" + uuid.uuid4().hex
PROXY_TOKEN = "bench-proxy-" + uuid.uuid4().hex
TARGETS = {"one_endpoint_change_p50_ms": 50, "one_endpoint_change_p99_ms": 100, "proxy_rss_mb": 150}


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


class Namespaces:
    """ksim-test-<random>.<n>: made here, deleted here (deleting a namespace removes its veth end and rules)."""

    def __init__(self) -> None:
        self.prefix = f"ksim-test-{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []

    def make(self) -> str:
        name = f"{self.prefix}.{len(self.made)}"
        run(["ip", "netns", "add", name])
        self.made.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def delete(self, name: str) -> None:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)
        self.made.remove(name)

    def delete_all(self) -> None:
        for name in reversed(list(self.made)):
            self.delete(name)


def api_namespace(nss: Namespaces) -> str:
    ns = nss.make()
    run(["ip", "-n", ns, "link", "add", "br0", "type", "bridge"])
    run(["ip", "-n", ns, "addr", "add", f"{API_IP}/24", "dev", "br0"])
    run(["ip", "-n", ns, "link", "set", "br0", "up"])
    return ns


def node_namespace(nss: Namespaces, api_ns: str, index: int) -> tuple[str, str]:
    """A node namespace wired to the apiserver's bridge; its address."""
    ns = nss.make()
    port = f"n{index}"
    run(["ip", "-n", api_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
    run(["ip", "-n", api_ns, "link", "set", port, "master", "br0", "up"])
    address = NODE_NET.format(10 + index)
    run(["ip", "-n", ns, "addr", "add", address, "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    return ns, address.split("/")[0]


def kubeconfig(path: Path, ca: Path, token: str) -> None:
    ca_data = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "bench", "cluster": {"server": f"https://{API_IP}:{API_PORT}",
                                                   "certificate-authority-data": ca_data}}],
        "users": [{"name": "kube-proxy", "user": {"token": token}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "kube-proxy"}}],
        "current-context": "bench"}))
    path.chmod(0o600)


def start_apiserver(work: Path, api_ns: str) -> subprocess.Popen[bytes]:
    make_certificates(work, addresses=[API_IP])
    write_token_file(work / "tokens.csv", [(ADMIN_TOKEN, "kubernetes-admin", ("system:masters",)),
                                           (PROXY_TOKEN, "system:kube-proxy", ())])
    return subprocess.Popen(namespaces.command_in(api_ns, [
        sys.executable, "-m", "control.apiserver", "--store", f"sqlite://{work / 'apiserver.db'}",
        "--bind-address", "0.0.0.0", "--secure-port", str(API_PORT), "--advertise-address", API_IP,
        "--tls-cert-file", str(work / "apiserver.crt"), "--tls-private-key-file", str(work / "apiserver.key"),
        "--token-auth-file", str(work / "tokens.csv"), "--service-cluster-ip-range", SERVICE_CIDR]),
        stdout=subprocess.DEVNULL, stderr=open(work / "apiserver.log", "wb"))


def metrics(ns: str) -> dict[str, float]:
    """The proxy's Prometheus samples, `name{labels}` -> value."""
    status, text = http_get(ns, "127.0.0.1", 10249, "/metrics", timeout=10)
    if status != 200:
        raise RuntimeError(f"metrics answered {status}")
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def vm(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields["VmRSS"], "hwm_mb": fields["VmHWM"]}


class Monitor:
    """The moment each awaited address first appears in a committed nf_tables change of a namespace: a
    netlink socket there, subscribed to NFNLGRP_NFTABLES, the notifications the kernel multicasts when a
    transaction commits (what `nft monitor` prints; nft 1.0.6's monitor itself first caches the whole
    ruleset and printed nothing within minutes at 10k Services). A notification naming the address (its
    4 bytes in a new map element or rule) is the change being in the kernel. Read on a thread, timed with
    time.monotonic, the clock the writes are timed with."""

    def __init__(self, ns: str, copy: Path | None = None) -> None:
        with namespaces.entered(ns):
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        # A full sync commits ~100k elements at once: a big buffer, so that the notifications are not lost.
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
        self.sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
        self.sock.settimeout(0.2)
        self.copy = open(copy, "w") if copy else None  # noqa: SIM115
        self.lock = threading.Lock()
        self.awaited: dict[bytes, threading.Event] = {}
        self.seen: dict[bytes, float] = {}
        self.messages = 0
        self.overruns = 0
        self.stopped = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stopped:
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError as exc:  # ENOBUFS: the kernel dropped notifications; say so in the result
                if exc.errno == errno.ENOBUFS:
                    self.overruns += 1
                    continue
                raise
            now = time.monotonic()
            self.messages += 1
            if self.copy is not None:
                self.copy.write(f"{now:.6f} {len(data)} bytes\n")
            if not self.awaited:
                continue
            with self.lock:
                for needle, event in list(self.awaited.items()):
                    if needle in data:
                        self.seen[needle] = now
                        del self.awaited[needle]
                        event.set()

    def ready(self, ns: str, timeout: float = 60) -> None:
        """Check the subscription works: a probe table, made and removed at once, must be seen."""
        probe = f"ksim-bench-probe-{uuid.uuid4().hex[:6]}"
        event = self.expect_bytes(probe.encode())
        deadline = time.monotonic() + timeout
        while not event.is_set():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no nf_tables notification in {ns} within {timeout} s")
            run(namespaces.command_in(ns, ["nft", f"add table ip {probe}; delete table ip {probe}"]))
            event.wait(0.5)

    def expect_bytes(self, needle: bytes) -> threading.Event:
        event = threading.Event()
        with self.lock:
            self.awaited[needle] = event
        return event

    def expect(self, ip: str) -> threading.Event:
        return self.expect_bytes(socket.inet_aton(ip))

    def seen_at(self, ip: str) -> float:
        return self.seen[socket.inet_aton(ip)]

    def stop(self) -> None:
        self.stopped = True
        self.thread.join(5)
        self.sock.close()
        if self.copy is not None:
            self.copy.close()


def objects(n_services: int, n_endpoints: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    ips = addresses(CLUSTER_CIDR, n_services * n_endpoints)
    services, slices = [], []
    for i in range(n_services):
        name = f"svc-{i:05d}"
        services.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE},
                         "spec": {"type": "ClusterIP", "selector": {"app": name},
                                  "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
        eps = [{"addresses": [ips[i * n_endpoints + j]], "conditions": {"ready": True},
                "nodeName": f"node-{(i * n_endpoints + j) % 100}"} for j in range(n_endpoints)]
        slices.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": f"{name}-abcde", "namespace": NAMESPACE,
                                    "labels": {"kubernetes.io/service-name": name}},
                       "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                       "endpoints": eps})
    return services, slices


async def create_all(client: Client, services: list[dict[str, Any]],
                     slices: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    start = time.monotonic()
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    gate = asyncio.Semaphore(32)

    async def one(resource: Any, body: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await client.create(resource, body)

    await asyncio.gather(*(one(SERVICES, s) for s in services))
    created = await asyncio.gather(*(one(ENDPOINT_SLICES, s) for s in slices))
    return list(created), time.monotonic() - start


async def wait_first_sync(ns: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the proxy exited ({proc.returncode}) before its first sync")
        try:
            if metrics(ns).get("kubeproxy_sync_full_proxy_rules_duration_seconds_count", 0) >= 1:
                return
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no first full sync within {timeout} s")


def histogram_delta(before: dict[str, float], after: dict[str, float], name: str) -> dict[str, Any]:
    def d(key: str) -> float:
        return after.get(key, 0) - before.get(key, 0)

    count, total = d(f"{name}_count"), d(f"{name}_sum")
    buckets = {k[len(name) + 12:-2]: int(d(k)) for k in after if k.startswith(f"{name}_bucket{{le=")}
    return {"count": int(count), "mean_ms": round(total / count * 1000, 2) if count else None,
            "cumulative_buckets_s": buckets}


async def one_run(args: argparse.Namespace, mode: str, index: int, nss: Namespaces, api_ns: str, work: Path,
                  client: Client, slices: list[dict[str, Any]], counter: list[int]) -> dict[str, Any]:
    node_ns, node_ip = node_namespace(nss, api_ns, index)
    node_name = f"bench-node-{index}"
    node = await client.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}})
    node["status"] = {"addresses": [{"type": "InternalIP", "address": node_ip}]}
    await client.update_status(NODES, node)
    log = open(work / f"proxy-{mode}-{index}.log", "wb")  # noqa: SIM115
    started = time.monotonic()
    proc = subprocess.Popen(namespaces.command_in(node_ns, [
        sys.executable, "-m", "proxy", "--kubeconfig", str(work / "kube-proxy.kubeconfig"), "--node-name",
        node_name, "--mode", mode, "--cluster-cidr", CLUSTER_CIDR, "--service-cidr", SERVICE_CIDR]),
        stdout=log, stderr=log)
    monitor = None
    try:
        await wait_first_sync(node_ns, proc, args.sync_timeout)
        first_sync = time.monotonic() - started
        await asyncio.sleep(0.5)  # let the sync's garbage go before reading RSS
        rss_first = vm(proc.pid)
        monitor = Monitor(node_ns, work / f"monitor-{mode}-{index}.log" if args.keep else None)
        await asyncio.to_thread(monitor.ready, node_ns)
        before = metrics(node_ns)
        latencies, acks, final = [], [], {}
        for pick in spread(len(slices), args.changes):
            counter[0] += 1
            new_ip = addresses(NEW_ENDPOINTS, 1, skip=counter[0])[0]
            body = slices[pick]
            body["endpoints"][0]["addresses"] = [new_ip]
            event = monitor.expect(new_ip)
            written = time.time()
            body["metadata"].setdefault("annotations", {})[
                "endpoints.kubernetes.io/last-change-trigger-time"] = rfc3339_nano(written)
            t0 = time.monotonic()
            slices[pick] = await client.update(ENDPOINT_SLICES, body)
            acks.append(time.monotonic() - t0)
            if not await asyncio.to_thread(event.wait, args.change_timeout):
                raise RuntimeError(f"{new_ip} (slice {body['metadata']['name']}) not in the kernel after "
                                   f"{args.change_timeout} s")
            latencies.append(monitor.seen_at(new_ip) - t0)
            if args.keep:
                print(f"{mode} run {index}: {new_ip} in slice {body['metadata']['name']} written at {t0:.6f}, "
                      f"in the kernel after {latencies[-1] * 1000:.1f} ms", file=sys.stderr)
            final[body["metadata"]["name"]] = new_ip
            await asyncio.sleep(args.gap)
        after = metrics(node_ns)
        rss_after = vm(proc.pid)
        ruleset = run(namespaces.command_in(node_ns, ["nft", "list", "ruleset"])).stdout
        missing = [ip for ip in final.values() if not re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d])", ruleset)]
        if missing:
            raise RuntimeError(f"changes lost from the kernel: {missing}")
        full_name = "kubeproxy_sync_full_proxy_rules_duration_seconds_count"
        return {
            "first_sync_s": round(first_sync, 2),
            "rss_after_first_sync": rss_first, "rss_after_changes": rss_after,
            "write_to_kernel": summary_ms(latencies),
            "api_write_ack": summary_ms(acks),
            "metric_network_programming": histogram_delta(before, after,
                                                          "kubeproxy_network_programming_duration_seconds"),
            "metric_partial_sync": histogram_delta(before, after,
                                                   "kubeproxy_sync_partial_proxy_rules_duration_seconds"),
            "periodic_full_syncs_during_changes": int(after.get(full_name, 0) - before.get(full_name, 0)),
            "netlink_notifications": monitor.messages, "netlink_overruns": monitor.overruns,
        }
    finally:
        if monitor is not None:
            monitor.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        await client.delete(NODES, node_name)
        nss.delete(node_ns)


async def drive(args: argparse.Namespace, nss: Namespaces, api_ns: str, work: Path) -> dict[str, Any]:
    # This coroutine's sockets are made in the apiserver's namespace (see main): the API is reached at API_IP.
    client = Client(f"https://{API_IP}:{API_PORT}", token=ADMIN_TOKEN, ca_file=str(work / "ca.crt"), timeout=60)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                await client.get(NAMESPACES, "default")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        services, slices = objects(args.services, args.endpoints)
        slices, create_s = await create_all(client, services, slices)
        slices.sort(key=lambda s: s["metadata"]["name"])
        result: dict[str, Any] = {"objects_created_s": round(create_s, 1)}
        counter = [0]
        index = 0
        for mode in args.modes:
            runs = []
            for _ in range(args.runs):
                index += 1
                runs.append(await one_run(args, mode, index, nss, api_ns, work, client, slices, counter))
            result[mode] = {
                "median_of_runs": {
                    "first_sync_s": statistics.median(r["first_sync_s"] for r in runs),
                    "rss_after_first_sync_mb": statistics.median(r["rss_after_first_sync"]["rss_mb"] for r in runs),
                    "rss_after_changes_mb": statistics.median(r["rss_after_changes"]["rss_mb"] for r in runs),
                    "rss_peak_mb": statistics.median(r["rss_after_changes"]["hwm_mb"] for r in runs),
                    "rss_peak_mb_min_max": [min(r["rss_after_changes"]["hwm_mb"] for r in runs),
                                            max(r["rss_after_changes"]["hwm_mb"] for r in runs)],
                    "write_to_kernel": median_of(r["write_to_kernel"] for r in runs),
                    "metric_network_programming_mean_ms": statistics.median(
                        r["metric_network_programming"]["mean_ms"] or 0 for r in runs),
                },
                "runs": runs,
            }
        return result
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--changes", type=int, default=20, help="one-endpoint changes per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per mode, each with a fresh proxy")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between changes")
    parser.add_argument("--modes", nargs="+", choices=["nftables", "iptables"], default=["nftables", "iptables"])
    parser.add_argument("--sync-timeout", type=float, default=300)
    parser.add_argument("--change-timeout", type=float, default=60)
    parser.add_argument("--keep", metavar="DIR", help="keep the logs (apiserver, proxies, notification times) in DIR")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root (namespaces, the proxy's rules)"}))
        return 1
    nss = Namespaces()
    apiserver = None
    with tempfile.TemporaryDirectory(prefix="proxy-live-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            api_ns = api_namespace(nss)
            apiserver = start_apiserver(work, api_ns)
            kubeconfig(work / "kube-proxy.kubeconfig", work / "ca.crt", PROXY_TOKEN)
            # The driver's own sockets (API client) live in the apiserver's namespace: a thread of its own,
            # moved there for its whole life, so namespaces.entered() stays free for the metrics sockets.
            outcome: dict[str, Any] = {}

            def driver() -> None:
                fd = os.open(namespaces.path_of(api_ns), os.O_RDONLY)
                try:
                    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {api_ns}")
                finally:
                    os.close(fd)
                try:
                    outcome["result"] = asyncio.run(drive(args, nss, api_ns, work))
                except BaseException as exc:  # reported below, with the logs' tails
                    outcome["error"] = exc

            thread = threading.Thread(target=driver)
            thread.start()
            thread.join()
            if "error" in outcome:
                for log in sorted(work.glob("*.log")):
                    tail = log.read_text(errors="replace").splitlines()[-15:]
                    print(f"--- {log.name}\n" + "\n".join(tail), file=sys.stderr)
                raise outcome["error"]
            result = {
                "benchmark": "proxy_live", "services": args.services, "endpoints_per_service": args.endpoints,
                "changes_per_run": args.changes, "runs_per_mode": args.runs, "gap_s": args.gap,
                "kernel": platform.release(), "python": platform.python_version(),
                "nft": run(["nft", "--version"]).stdout.strip(),
                "iptables": run(["iptables", "--version"]).stdout.strip(),
                "targets": TARGETS, **outcome["result"],
            }
        finally:
            if apiserver is not None:
                apiserver.terminate()
                try:
                    apiserver.wait(30)
                except subprocess.TimeoutExpired:
                    apiserver.kill()
                    apiserver.wait()
            nss.delete_all()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
