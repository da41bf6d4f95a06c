"""Benchmark: nftables and iptables sync times for S services x E endpoints, against kube-proxy's
chain-per-object nftables layout.

Prints one JSON document. Needs root: every measurement loads rules into a throwaway network namespace
(ksim-test-<random>.<n>, deleted afterwards); the root namespace is never touched.
These are in-process timings of the sync itself; the proxy process as deployed (informers, the bounded-
frequency runner, an apiserver's watch in between) is measured by bench/proxy_live.py.

    python bench/proxy_sync.py                       # S = 1000, 10000; baseline at 1000 and 4000
    python bench/proxy_sync.py --services 1000 --baseline 1000

(a) full sync: plan + render + programming the kernel, two ways side by side (runs interleaved):
    "preloaded" (big sets over netlink, then one small `nft -f`; proxy/nftables/preload.py) and
    "classic" (one `nft -f` recreating the table); each as a first sync and as a re-sync over the table;
(b) one-endpoint change with S services present: plan + render + diff + one partial `nft -f`;
(d) iptables mode, per flavour (nft-based and legacy iptables), in upstream's layout: (a) and (b) through
    one `iptables-restore --noflush` each; and the nft-based one with KUBE-SEP chains for local endpoints
    only (proxy/iptables/layout.py).
(c) baseline: the same services the straightforward kube-proxy way (pkg/proxy/nftables: a chain per
    service and per endpoint, dispatched by a verdict map), one `nft -f`. nft 1.0.6 loads that in time
    quadratic in the chains of a transaction (~200 s at 10k), hence the separate, capped sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

from proxy import NodeContext, ProxyPlan, plan, services_from, slices_from
from proxy.iptables import IptablesBackend, SubprocessIptables
from proxy.nftables import NftablesBackend, SubprocessNft

NODE = NodeContext(name="node-a", node_ips=("172.18.0.2",), cluster_cidrs=("10.244.0.0/16",),
                   service_cidrs=("10.96.0.0/12",))


def objects(n_services: int, n_endpoints: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services, slices = [], []
    for i in range(n_services):
        name = f"svc-{i}"
        services.append({"metadata": {"namespace": "bench", "name": name},
                         "spec": {"clusterIP": f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}",
                                  "ports": [{"name": "http", "port": 80}]}})
        eps = []
        for j in range(n_endpoints):
            k = i * n_endpoints + j
            # Endpoints spread over 100 nodes, as in a real cluster; few are this node's.
            eps.append({"addresses": [f"10.{244 + k // 65536}.{k // 256 % 256}.{k % 256}"],
                        "nodeName": f"node-{k % 100}", "conditions": {"ready": True}})
        slices.append({"metadata": {"namespace": "bench", "name": f"{name}-1",
                                    "labels": {"kubernetes.io/service-name": name}},
                       "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                       "endpoints": eps})
    return services, slices


def make_plan(services: list[dict[str, Any]], slices: list[dict[str, Any]]) -> ProxyPlan:
    return plan(services_from(services), slices_from(slices), NODE)


class Netns:
    def __init__(self) -> None:
        self.prefix = f"ksim-test-{uuid.uuid4().hex[:8]}"
        self.made: list[str] = []

    def make(self) -> str:
        name = f"{self.prefix}.{len(self.made)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.made.append(name)
        return name

    def delete_all(self) -> None:
        for name in reversed(self.made):
            subprocess.run(["ip", "netns", "delete", name], check=False)


def measure_nftables(netns: Netns, n_services: int, n_endpoints: int, *, preload: bool) -> dict[str, Any]:
    """One run: a first full sync into an empty namespace, a full re-sync over it (what the hourly full
    sync and a restarted proxy do), then a one-endpoint change."""
    services, slices = objects(n_services, n_endpoints)
    ns = netns.make()
    backend = NftablesBackend(runner=SubprocessNft(netns=ns), preload=preload)
    steps = _timed_steps(backend)
    t0 = time.perf_counter()
    c0 = time.process_time()
    ports = services_from(services)
    parsed = list(slices_from(slices))
    t_parsed = time.perf_counter()
    p = plan(ports, parsed, NODE)
    t1 = time.perf_counter()
    full = backend.sync(p, full=True)
    t2 = time.perf_counter()
    c2 = time.process_time()
    first = {"parse_s": t_parsed - t0, "plan_s": t1 - t_parsed, "render_and_kernel_s": t2 - t1,
             "plan_render_kernel_s": t2 - t_parsed, "total_s": t2 - t0, "python_cpu_s": c2 - c0,
             **_drain(steps), "transaction_lines": full.lines, "how": backend.last_full}

    t3 = time.perf_counter()
    again = backend.sync(p, full=True)
    t4 = time.perf_counter()
    resync = {"render_and_kernel_s": t4 - t3, **_drain(steps), "transaction_lines": again.lines,
              "how": backend.last_full}

    # One endpoint replaced (a pod rescheduled), with everything else present. As the proxy's change
    # tracker does, only the changed EndpointSlice is parsed again and only its Service re-planned.
    i = n_services // 2
    slices[i]["endpoints"][0]["addresses"] = ["10.250.0.1"]
    t5 = time.perf_counter()
    parsed[i] = slices_from([slices[i]])[0]
    p2 = plan(ports, parsed, NODE, previous=p, changed={("bench", f"svc-{i}")})
    t6 = time.perf_counter()
    partial = backend.sync(p2)
    t7 = time.perf_counter()
    assert p2 == make_plan(services, slices)
    assert not partial.full
    change = {"parse_and_plan_s": t6 - t5, "render_diff_and_nft_s": t7 - t6, **_drain(steps),
              "total_s": t7 - t5, "transaction_lines": partial.lines}
    return {"full_sync": first, "full_resync": resync, "one_endpoint_change": change}


def _timed_steps(backend: NftablesBackend) -> dict[str, list[float]]:
    """Wrap the backend's runner (each `nft -f`) and element loader (each netlink batch) with timers."""
    steps: dict[str, list[float]] = {"nft_s": [], "netlink_s": []}
    inner = backend.runner
    real_run = inner.run

    def run(transaction: str) -> None:
        start = time.perf_counter()
        real_run(transaction)
        steps["nft_s"].append(time.perf_counter() - start)

    inner.run = run  # type: ignore[method-assign]
    loader = backend.elements
    if loader is not None:
        real_load = loader.load

        def load(*args: Any, **kwargs: Any) -> int:
            start = time.perf_counter()
            n = real_load(*args, **kwargs)
            steps["netlink_s"].append(time.perf_counter() - start)
            return n

        loader.load = load  # type: ignore[method-assign]
    return steps


def _drain(steps: dict[str, list[float]]) -> dict[str, float]:
    """The step times recorded since the last call (summed per kind: a preloaded sync runs nft twice)."""
    out = {k: sum(v) for k, v in steps.items()}
    for v in steps.values():
        v.clear()
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase and number: median, min and max over the runs (strings, e.g. "how", from the first run)."""
    out: dict[str, Any] = {"runs": len(runs)}
    for phase in runs[0]:
        out[phase] = {}
        for key, first in runs[0][phase].items():
            if isinstance(first, str):
                out[phase][key] = sorted({r[phase][key] for r in runs})
                continue
            values = [r[phase][key] for r in runs]
            digits = 0 if isinstance(first, int) else 4
            out[phase][key] = {"median": round(statistics.median(values), digits),
                               "min": round(min(values), digits), "max": round(max(values), digits)}
    return out


def measure_nftables_modes(netns: Netns, n_services: int, n_endpoints: int, runs: int) -> dict[str, Any]:
    """The preloaded full sync and the classic one-transaction full sync, runs interleaved so that both
    see the same machine load."""
    results: dict[str, list[dict[str, Any]]] = {"preloaded": [], "classic": []}
    for _ in range(runs):
        for mode in results:
            results[mode].append(measure_nftables(netns, n_services, n_endpoints, preload=mode == "preloaded"))
    return {"services": n_services, "endpoints_per_service": n_endpoints,
            **{mode: summarize(r) for mode, r in results.items()}}


def measure_iptables(netns: Netns, n_services: int, n_endpoints: int, flavour: Any,
                     endpoint_chains: Any = None) -> dict[str, Any]:
    services, slices = objects(n_services, n_endpoints)
    ns = netns.make()
    runner = SubprocessIptables(netns=ns, flavour=flavour)
    backend = IptablesBackend(runner=runner, endpoint_chains=endpoint_chains)
    restore_seconds: list[float] = []
    real_restore = runner.restore

    def timed_restore(text: str) -> None:
        start = time.perf_counter()
        real_restore(text)
        restore_seconds.append(time.perf_counter() - start)

    runner.restore = timed_restore  # type: ignore[method-assign]
    t0 = time.perf_counter()
    ports = services_from(services)
    parsed = list(slices_from(slices))
    p = plan(ports, parsed, NODE)
    t1 = time.perf_counter()
    full = backend.sync(p, full=True)
    t2 = time.perf_counter()

    i = n_services // 2
    slices[i]["endpoints"][0]["addresses"] = ["10.250.0.1"]
    t3 = time.perf_counter()
    parsed[i] = slices_from([slices[i]])[0]
    p2 = plan(ports, parsed, NODE, previous=p, changed={("bench", f"svc-{i}")})
    t4 = time.perf_counter()
    partial = backend.sync(p2)
    t5 = time.perf_counter()
    assert not partial.full
    return {
        "flavour": flavour, "endpoint_chains": backend.endpoint_chains,
        "services": n_services, "endpoints_per_service": n_endpoints,
        "full_sync": {"parse_and_plan_s": round(t1 - t0, 4), "render_save_and_restore_s": round(t2 - t1, 4),
                      "iptables_restore_s": round(restore_seconds[0], 4), "total_s": round(t2 - t0, 4),
                      "transaction_lines": full.lines},
        "one_endpoint_change": {"parse_and_plan_s": round(t4 - t3, 4),
                                "render_and_restore_s": round(t5 - t4, 4),
                                "iptables_restore_s": round(restore_seconds[-1], 4), "total_s": round(t5 - t3, 4),
                                "transaction_lines": partial.lines},
    }


def measure_iptables_runs(netns: Netns, n_services: int, n_endpoints: int, flavour: Any, runs: int,
                          endpoint_chains: Any = None) -> dict[str, Any]:
    results = [measure_iptables(netns, n_services, n_endpoints, flavour, endpoint_chains) for _ in range(runs)]
    phases = ("full_sync", "one_endpoint_change")
    return {k: v for k, v in results[0].items() if k not in phases} | summarize([{p: r[p] for p in phases}
                                                                                for r in results])


def baseline_transaction(n_services: int, n_endpoints: int) -> str:
    """kube-proxy's own nftables layout, reduced to ClusterIP services: chains per service and endpoint."""
    t = "ip kube-proxy"
    lines = [f"add table {t}",
             f"add chain {t} nat-prerouting {{ type nat hook prerouting priority -100 ; policy accept ; }}",
             f"add chain {t} services", f"add chain {t} mark-for-masquerade",
             f"add rule {t} mark-for-masquerade meta mark set meta mark or 0x4000",
             f"add map {t} service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
             f"add rule {t} nat-prerouting jump services",
             f"add rule {t} services ip daddr . meta l4proto . th dport vmap @service-ips"]
    elements = []
    for i in range(n_services):
        cip = f"10.{96 + i // 65536}.{i // 256 % 256}.{i % 256}"
        svc = f"service-{i:05d}-bench/svc-{i}/tcp/http"
        # knftables/kube-proxy ensureChain: "add chain" then "flush chain", for every chain, every sync.
        lines += [f"add chain {t} {svc}", f"flush chain {t} {svc}"]
        lines.append(f"add rule {t} {svc} ip daddr {cip} tcp dport 80 ip saddr != 10.244.0.0/16 "
                     f"jump mark-for-masquerade")
        targets = []
        for j in range(n_endpoints):
            k = i * n_endpoints + j
            ep = f"10.{244 + k // 65536}.{k // 256 % 256}.{k % 256}"
            chain = f"endpoint-{i:05d}-{j}-bench/svc-{i}/tcp/http__{ep}/8080"
            lines += [f"add chain {t} {chain}", f"flush chain {t} {chain}"]
            lines.append(f"add rule {t} {chain} ip saddr {ep} jump mark-for-masquerade")
            lines.append(f"add rule {t} {chain} meta l4proto tcp dnat ip to {ep}:8080")
            targets.append(f"{j} : goto {chain}")
        lines.append(f"add rule {t} {svc} numgen random mod {n_endpoints} vmap {{ {', '.join(targets)} }}")
        elements.append(f"{cip} . tcp . 80 : goto {svc}")
    for i in range(0, len(elements), 1000):
        lines.append(f"add element {t} service-ips {{ {', '.join(elements[i:i + 1000])} }}")
    return "\n".join(lines) + "\n"


def measure_baseline(netns: Netns, n_services: int, n_endpoints: int) -> dict[str, Any]:
    text = baseline_transaction(n_services, n_endpoints)
    ns = netns.make()
    start = time.perf_counter()
    SubprocessNft(netns=ns, timeout=3600).run(text)
    seconds = time.perf_counter() - start
    return {"services": n_services, "endpoints_per_service": n_endpoints,
            "chains": text.count("add chain"), "nft_s": round(seconds, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="runs per nftables size and mode (medians, min, max)")
    parser.add_argument("--baseline", type=int, nargs="*", default=[1000, 4000],
                        help="service counts for the kube-proxy-layout baseline (slow: quadratic in chains)")
    parser.add_argument("--modes", nargs="+", choices=["nftables", "iptables"], default=["nftables", "iptables"])
    parser.add_argument("--iptables-flavours", nargs="+", choices=["nft", "legacy"], default=["nft", "legacy"])
    parser.add_argument("--iptables-default", type=int, nargs="*", default=[10000],
                        help="service counts for the proxy's default iptables-nft layout (endpoint_chains auto)")
    parser.add_argument("--iptables-local-seps", type=int, nargs="*", default=[10000],
                        help="service counts for the nft-based iptables with KUBE-SEP chains for local endpoints "
                             "only (proxy/iptables/layout.py)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print(json.dumps({"error": "needs root (loads rules into throwaway network namespaces)"}))
        return 1
    netns = Netns()
    try:
        nft_version = subprocess.run(["nft", "--version"], capture_output=True, text=True).stdout.strip()
        result: dict[str, Any] = {
            "nft": nft_version, "kernel": platform.release(), "python": platform.python_version(),
        }
        if "nftables" in args.modes:
            result["nftables"] = [measure_nftables_modes(netns, s, args.endpoints, args.runs) for s in args.services]
            baseline = [measure_baseline(netns, s, args.endpoints) for s in args.baseline]
            for b in baseline:
                # The same Services, in the same run: how much faster our full sync writes them.
                ours = next((r for r in result["nftables"] if r["services"] == b["services"]), None)
                if ours is not None:
                    b["speedup_vs_preloaded_full_sync"] = round(
                        b["nft_s"] / ours["preloaded"]["full_sync"]["plan_render_kernel_s"]["median"], 1)
                    b["speedup_vs_classic_full_sync"] = round(
                        b["nft_s"] / ours["classic"]["full_sync"]["plan_render_kernel_s"]["median"], 1)
            result["baseline_kube_proxy_layout"] = baseline
        if "iptables" in args.modes:
            result["iptables_version"] = subprocess.run(["iptables-nft", "--version"], capture_output=True,
                                                        text=True).stdout.strip()
            # Upstream's layout, then the proxy's default (iptables-nft: "auto", the one with KUBE-SEP chains
            # for local endpoints only above upstream's large-cluster threshold).
            result["iptables"] = [measure_iptables_runs(netns, s, args.endpoints, flavour, args.runs, "all")
                                  for flavour in args.iptables_flavours for s in args.services]
            result["iptables_nft_default"] = [measure_iptables_runs(netns, s, args.endpoints, "nft", args.runs)
                                              for s in args.iptables_default]
            result["iptables_nft_local_seps"] = [measure_iptables_runs(netns, s, args.endpoints, "nft", args.runs,
                                                                       "local") for s in args.iptables_local_seps]
        result |= {
            "targets": {"full_sync_10000x5_s": 0.5, "full_sync_speedup_vs_baseline": 60,
                        "one_endpoint_change_at_10000_s": 0.05, "iptables_full_sync_10000x5_s": 5.0},
            "note": "plan_render_kernel_s: plan + render + programming the kernel (parsing is done on arrival "
                    "by the live proxy's informers, so it is reported apart, as parse_s)",
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    finally:
        netns.delete_all()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
