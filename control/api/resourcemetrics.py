"""Conversions for the metrics pipeline (kubelet /metrics/resource -> metrics.k8s.io).

The pure core that the apiserver's metrics.k8s.io (control/apiserver/metricsapi.py, metrics-server's
role) builds on: it parses the Prometheus text format the kubelet's /metrics/resource speaks into
one Scrape per node, and turns two scrapes' cumulative CPU counters into metrics-server's usage
strings (cpu in nanocores, "123456n"; memory in kibibytes, "12345Ki") over a window ("10.5s").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0
    timestamp_ms: int | None = None


def _parse_labels(text: str, line: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    i = 0
    while i < len(text):
        eq = text.find("=", i)
        if eq < 0 or eq + 1 >= len(text) or text[eq + 1] != '"':
            raise ValueError(f"malformed labels in metrics line {line!r}: expected name=\"value\"")
        key = text[i:eq].strip().lstrip(",").strip()
        j, out = eq + 2, []
        while j < len(text) and text[j] != '"':
            if text[j] == "\\" and j + 1 < len(text):
                out.append({"n": "\n", "\\": "\\", '"': '"'}.get(text[j + 1], text[j + 1]))
                j += 2
                continue
            out.append(text[j])
            j += 1
        if j >= len(text):
            raise ValueError(f"unterminated label value in metrics line {line!r}")
        labels[key] = "".join(out)
        i = j + 1
        while i < len(text) and text[i] in ", ":
            i += 1
    return labels


def parse_prometheus_text(text: str) -> list[Sample]:
    """Parse Prometheus text exposition (format 0.0.4); comments and blank lines are skipped."""
    samples: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        labels: dict[str, str] = {}
        if "{" in line:
            name, rest = line.split("{", 1)
            close = rest.rfind("}")
            if close < 0:
                raise ValueError(f"missing '}}' in metrics line {line!r}")
            labels = _parse_labels(rest[:close], line)
            tail = rest[close + 1 :].split()
        else:
            name, *tail = line.split()
        if not tail or len(tail) > 2:
            raise ValueError(f"metrics line {line!r} needs 'name value [timestamp_ms]'")
        ts = int(tail[1]) if len(tail) == 2 else None
        samples.append(Sample(name.strip(), labels, float(tail[0]), ts))
    return samples


def cpu_nanocores(prev_seconds: float, prev_ms: int, cur_seconds: float, cur_ms: int) -> int:
    """Rate of a cumulative CPU-seconds counter between two samples, in nanocores."""
    if cur_ms <= prev_ms:
        raise ValueError("cpu samples need increasing timestamps to compute a rate")
    delta = max(0.0, cur_seconds - prev_seconds)  # a counter reset (restart) reads as 0, not negative
    return int(delta * 1e9 / ((cur_ms - prev_ms) / 1000.0))


def format_cpu(nanocores: int) -> str:
    return f"{max(0, nanocores)}n"


def format_memory(bytes_: float) -> str:
    return f"{max(0, int(bytes_)) // 1024}Ki"


@dataclass(frozen=True)
class Point:
    """One scrape's reading of a node or container: cumulative CPU seconds, working set bytes, when."""

    cpu_seconds: float
    memory_bytes: float
    timestamp_ms: int
    start_time: float = 0.0  # a container's start, seconds since the epoch (0: not known)


ContainerKey = tuple[str, str, str]  # namespace, pod, container


@dataclass
class Scrape:
    """What one kubelet's /metrics/resource said."""

    node: Point | None = None
    containers: dict[ContainerKey, Point] = field(default_factory=dict)


def read_scrape(text: str) -> Scrape:
    """The node's and the containers' points of a /metrics/resource page (ValueError if it is not one).
    A sample without its timestamp is dated by the other samples of its node or container."""
    scrape = Scrape()
    node: dict[str, tuple[float, int | None]] = {}
    containers: dict[ContainerKey, dict[str, tuple[float, int | None]]] = {}
    for sample in parse_prometheus_text(text):
        if sample.name.startswith("node_"):
            node[sample.name] = (sample.value, sample.timestamp_ms)
        elif sample.name.startswith("container_"):
            labels = sample.labels
            key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
            if not all(key):
                raise ValueError(f"{sample.name} needs namespace, pod and container labels, got {labels}")
            containers.setdefault(key, {})[sample.name] = (sample.value, sample.timestamp_ms)
    scrape.node = _point(node, "node")
    for key, values in containers.items():
        point = _point(values, "container")
        if point is not None:
            scrape.containers[key] = point
    return scrape


def _point(values: dict[str, tuple[float, int | None]], prefix: str) -> Point | None:
    cpu = values.get(f"{prefix}_cpu_usage_seconds_total")
    memory = values.get(f"{prefix}_memory_working_set_bytes")
    if cpu is None or memory is None:
        return None  # metrics-server, too, skips what lacks either
    stamp = cpu[1] or memory[1]
    if stamp is None:
        raise ValueError(f"{prefix}_cpu_usage_seconds_total has no timestamp: the rate needs one")
    start = values.get("container_start_time_seconds", (0.0, None))[0]
    return Point(cpu[0], memory[0], stamp, start)


@dataclass(frozen=True)
class Usage:
    nanocores: int
    memory_bytes: int
    timestamp_ms: int
    window_ms: int


def usage_between(prev: Point | None, cur: Point) -> Usage | None:
    """CUR's usage: the CPU rate since PREV (the same node or container, scraped earlier), or since the
    container's start when PREV is missing or from before a restart; None when no rate can be known."""
    if prev is not None and prev.start_time == cur.start_time and cur.timestamp_ms > prev.timestamp_ms:
        return Usage(cpu_nanocores(prev.cpu_seconds, prev.timestamp_ms, cur.cpu_seconds, cur.timestamp_ms),
                     int(cur.memory_bytes), cur.timestamp_ms, cur.timestamp_ms - prev.timestamp_ms)
    started_ms = int(cur.start_time * 1000)
    if cur.start_time > 0 and cur.timestamp_ms > started_ms:
        return Usage(cpu_nanocores(0.0, started_ms, cur.cpu_seconds, cur.timestamp_ms), int(cur.memory_bytes),
                     cur.timestamp_ms, cur.timestamp_ms - started_ms)
    return None


def format_window(window_ms: int) -> str:
    """A window as Go's time.Duration prints it: "10.5s", "1m0.25s", "0s"."""
    minutes, ms = divmod(max(0, window_ms), 60_000)
    seconds = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"


def format_timestamp(timestamp_ms: int) -> str:
    """An RFC 3339 time in seconds, as metav1.Time is written."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp_ms / 1000))
