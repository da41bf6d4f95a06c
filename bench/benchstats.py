"""Pure helpers the proxy benchmarks share (bench/proxy_live.py, bench/datapath.py): percentile
summaries, medians over runs, RFC 3339 timestamps with nanoseconds, which Services to touch, and the
addresses of many distinct endpoints. No I/O here, so tests/unit can check them without root."""

from __future__ import annotations

import ipaddress
import math
import statistics
import time
from collections.abc import Iterable, Sequence


def percentile(samples: Sequence[float], p: float) -> float:
    """The nearest-rank percentile (0 < p <= 100): the smallest sample with at least p% of the samples at
    or below it. With 20 samples p99 is the maximum: nothing is interpolated between samples."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile {p} is not in (0, 100]")
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 / p99 / mean / min / max of durations in seconds, as milliseconds."""
    return {"count": len(seconds), "p50_ms": round(percentile(seconds, 50) * 1000, 2),
            "p99_ms": round(percentile(seconds, 99) * 1000, 2),
            "mean_ms": round(statistics.fmean(seconds) * 1000, 2), "min_ms": round(min(seconds) * 1000, 2),
            "max_ms": round(max(seconds) * 1000, 2)}


def median_of(runs: Iterable[dict[str, float]]) -> dict[str, float]:
    """Key by key, the median over runs of each run's summary (the keys every run has)."""
    runs = list(runs)
    keys = [k for k in runs[0] if all(k in r for r in runs)] if runs else []
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


def rfc3339_nano(when: float) -> str:
    """UTC RFC 3339 with a fraction, as upstream writes endpoints.kubernetes.io/last-change-trigger-time
    (time.RFC3339Nano: trailing zeros of the fraction dropped). To the microsecond: a float of Unix
    seconds holds no more than that."""
    whole = math.floor(when)
    micros = round((when - whole) * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    fraction = f"{micros:06d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def spread(count: int, picks: int) -> list[int]:
    """PICKS indices evenly over range(COUNT), first and last included (for picks >= 2): which Services a
    benchmark touches, so that it does not measure only the head of a sorted map."""
    if count <= 0 or picks <= 0:
        return []
    if picks == 1 or count == 1:
        return [0]
    return sorted({round(i * (count - 1) / (picks - 1)) for i in range(picks)})


def addresses(network: str, count: int, *, skip: int = 0) -> list[str]:
    """COUNT distinct host addresses of NETWORK in order, after the first SKIP hosts; a clear error when
    the network is too small."""
    net = ipaddress.ip_network(network)
    hosts = net.num_addresses - (2 if net.prefixlen < net.max_prefixlen - 1 else 0)
    if skip + count > hosts:
        raise ValueError(f"{network} has {hosts} host addresses; {skip + count} were asked for")
    first = int(net.network_address) + (1 if net.prefixlen < net.max_prefixlen - 1 else 0) + skip
    return [str(ipaddress.ip_address(first + i)) for i in range(count)]
