"""The kubelet's /metrics/resource: the node's and its containers' CPU and memory in the Prometheus text
format and with the metric names of upstream's resource metrics endpoint
(pkg/kubelet/metrics/collectors/resource_metrics.go), which metrics-server scrapes.

Container figures come from the node runtime's ListContainerStats (control/runtime/stats.py). The
node's come from the machine: every node namespace shares the machine's one kernel, so /proc/stat
and /proc/meminfo describe the whole machine, not this node. They are scaled to the node's capacity
(its busy fraction of the machine's CPUs times the node's CPUs; its used fraction of the machine's
memory times the node's memory), so `kubectl top nodes` shows the machine's load as a percentage
of each node, the same for every node of the cluster. SOURCE_ANNOTATION on the Node says so.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from control.kubelet.remote import RemoteContainer
from control.runtime import RuntimeClient
from control.runtime.containers import Container
from control.runtime.stats import container_stats

log = logging.getLogger("kubelet")

#: the Node annotation naming where these numbers come from (shown by `kubectl describe node`)
SOURCE_ANNOTATION = "kubesim.io/resource-metrics-source"
# short: `kubectl describe node` cuts annotations longer than a line
NODE_SOURCE = "node: machine /proc scaled to capacity (one shared kernel); containers: runtime cgroup or /proc"

#: /proc/stat's cpu columns that are not busy time: idle and iowait
_IDLE_COLUMNS = (3, 4)


@dataclass(frozen=True)
class ContainerSample:
    namespace: str
    pod: str
    container: str
    cpu_seconds: float
    memory_bytes: int
    start_time: float  # seconds since the epoch
    timestamp_ms: int


@dataclass(frozen=True)
class NodeSample:
    cpu_seconds: float
    memory_bytes: int
    timestamp_ms: int


def machine_usage(proc: Path = Path("/proc")) -> tuple[float, int, int, int]:
    """(busy CPU seconds of all CPUs since boot, CPUs, bytes of memory in use, bytes of memory) of the
    machine. In use is MemTotal less MemAvailable (what the kernel could not give a new process at
    once), the working set's meaning for a whole machine."""
    first = (proc / "stat").read_text().splitlines()[0].split()
    if first[0] != "cpu":
        raise ValueError(f"{proc}/stat does not begin with the cpu line: {first[:1]}")
    columns = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    busy = sum(v for i, v in enumerate(columns) if i not in _IDLE_COLUMNS)
    memory: dict[str, int] = {}
    for line in (proc / "meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("MemTotal", "MemAvailable"):
            memory[key] = int(rest.split()[0]) * 1024
    total = memory.get("MemTotal", 0)
    return busy / os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1, total - memory.get("MemAvailable", total), total


def node_sample(node_cpus: float, node_memory: int, timestamp_ms: int, proc: Path = Path("/proc")) -> NodeSample:
    """The node's share of the machine, as the module docstring says."""
    busy, cpus, used, total = machine_usage(proc)
    memory = int(used * node_memory / total) if total else 0
    return NodeSample(busy * node_cpus / cpus, memory, timestamp_ms)


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    escaped = (f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in pairs)
    return "{" + ",".join(escaped) + "}"


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


_HELP = {
    "container_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the container in core-seconds"),
    "container_memory_working_set_bytes": ("gauge", "Current working set of the container in bytes"),
    "container_start_time_seconds": ("gauge", "Start time of the container since unix epoch in seconds"),
    "node_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "Current working set of the node in bytes"),
    "pod_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "Current working set of the pod in bytes"),
    "resource_scrape_error": ("gauge", "1 if there was an error while getting container metrics, 0 otherwise"),
}


def render(node: NodeSample, containers: list[ContainerSample], scrape_error: bool = False) -> str:
    """The /metrics/resource page: each family's HELP and TYPE, then its samples with their timestamps."""
    rows: dict[str, list[str]] = {name: [] for name in _HELP}

    def add(name: str, labels: list[tuple[str, str]], value: float, timestamp_ms: int | None) -> None:
        stamp = f" {timestamp_ms}" if timestamp_ms is not None else ""
        rows[name].append(f"{name}{_labels(labels) if labels else ''} {_number(value)}{stamp}")

    pods: dict[tuple[str, str], list[ContainerSample]] = {}
    for c in sorted(containers, key=lambda c: (c.namespace, c.pod, c.container)):
        labels = [("container", c.container), ("namespace", c.namespace), ("pod", c.pod)]
        add("container_cpu_usage_seconds_total", labels, c.cpu_seconds, c.timestamp_ms)
        add("container_memory_working_set_bytes", labels, c.memory_bytes, c.timestamp_ms)
        add("container_start_time_seconds", labels, c.start_time, c.timestamp_ms)
        pods.setdefault((c.namespace, c.pod), []).append(c)
    for (namespace, pod), members in pods.items():
        labels = [("namespace", namespace), ("pod", pod)]
        stamp = max(c.timestamp_ms for c in members)
        add("pod_cpu_usage_seconds_total", labels, sum(c.cpu_seconds for c in members), stamp)
        add("pod_memory_working_set_bytes", labels, sum(c.memory_bytes for c in members), stamp)
    add("node_cpu_usage_seconds_total", [], node.cpu_seconds, node.timestamp_ms)
    add("node_memory_working_set_bytes", [], node.memory_bytes, node.timestamp_ms)
    add("resource_scrape_error", [], 1 if scrape_error else 0, None)
    lines: list[str] = []
    for name, (kind, text) in _HELP.items():
        if not rows[name]:
            continue
        lines += [f"# HELP {name} [STABLE] {text}", f"# TYPE {name} {kind}", *rows[name]]
    return "\n".join(lines) + "\n"


def _epoch(rfc3339: str | None) -> float:
    if not rfc3339:
        return 0.0
    try:
        return float(calendar.timegm(time.strptime(rfc3339[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return 0.0


@dataclass(frozen=True)
class Running:
    """A running container of a pod of this node, as the kubelet's pod workers know it."""

    namespace: str
    pod: str
    container: Container


async def collect(running: list[Running], runtime: RuntimeClient | None, node_cpus: float,
                  node_memory: int) -> str:
    """The page for RUNNING's containers: the runtime's measure of those it runs (one ListContainerStats),
    this process' own of those kept in the kubelet (a kubelet without a runtime)."""
    error = False
    remote: dict[str, dict[str, Any]] = {}
    if runtime is not None and any(isinstance(r.container, RemoteContainer) for r in running):
        try:
            remote = {item["id"]: item for item in (await runtime.call("ListContainerStats"))["stats"]}
        except Exception as exc:  # the page still says what is known, and that something is missing
            log.warning("ListContainerStats failed: %s", exc)
            error = True
    local = await asyncio.get_running_loop().run_in_executor(None, container_stats, [
        (str(i), getattr(r.container, "pid", None)) for i, r in enumerate(running)
        if not isinstance(r.container, RemoteContainer)])
    samples: list[ContainerSample] = []
    for i, r in enumerate(running):
        c = r.container
        item = remote.get(str(c.id)) if isinstance(c, RemoteContainer) else local.get(str(i))
        if item is None:
            continue  # started or ended between the two looks
        samples.append(ContainerSample(
            r.namespace, r.pod, c.name, item["cpu"]["usageCoreNanoSeconds"] / 1e9,
            int(item["memory"]["workingSetBytes"]), _epoch(c.started_at), int(item["timestamp"]) // 1_000_000))
    node = await asyncio.get_running_loop().run_in_executor(None, node_sample, node_cpus, node_memory,
                                                            time.time_ns() // 1_000_000)
    return render(node, samples, error)
