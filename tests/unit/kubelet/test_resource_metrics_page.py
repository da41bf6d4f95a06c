"""The kubelet's /metrics/resource page: the node's share of the machine from /proc/stat and meminfo,
and a page that metrics-server's side (control.api.resourcemetrics) reads back as it was written."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from control.api.resourcemetrics import Point, parse_prometheus_text, read_scrape
from control.kubelet.resourcemetrics import ContainerSample, NodeSample, Running, collect, node_sample, render
from control.runtime.containers import ContainerLog, IdleContainer

TICK = os.sysconf("SC_CLK_TCK")


def _proc(tmp_path: Path) -> Path:
    # user nice system idle iowait irq softirq steal: 60 ticks busy of each CPU's second, idle and iowait not
    tmp_path.joinpath("stat").write_text(f"cpu  {30 * TICK} {10 * TICK} {10 * TICK} {900 * TICK} {50 * TICK} "
                                         f"{5 * TICK} {5 * TICK} 0 0 0\ncpu0 1 2 3 4\n")
    tmp_path.joinpath("meminfo").write_text("MemTotal:       1000000 kB\nMemFree:         100000 kB\n"
                                            "MemAvailable:    750000 kB\n")
    return tmp_path


def test_the_node_is_the_machines_load_scaled_to_the_nodes_capacity(tmp_path: Path) -> None:
    machine_cpus = os.cpu_count() or 1
    sample = node_sample(2.0, 4 * 1024**3, 123, _proc(tmp_path))
    assert abs(sample.cpu_seconds - 60.0 * 2.0 / machine_cpus) < 1e-9  # busy seconds x node CPUs / machine's
    assert sample.memory_bytes == 1024**3  # a quarter of the machine's memory in use: a quarter of the node's
    assert sample.timestamp_ms == 123


def test_the_page_has_upstreams_names_and_reads_back_as_written() -> None:
    containers = [ContainerSample("default", "web", "c", 1.25, 4096, 1700000000.0, 1700000005000),
                  ContainerSample("default", "web", "side", 0.75, 1024, 1700000001.0, 1700000005000)]
    page = render(NodeSample(10.5, 2048, 1700000005000), containers)
    names = {s.name for s in parse_prometheus_text(page)}
    assert names == {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                     "container_start_time_seconds", "node_cpu_usage_seconds_total", "node_memory_working_set_bytes",
                     "pod_cpu_usage_seconds_total", "pod_memory_working_set_bytes", "resource_scrape_error"}
    pod = [s for s in parse_prometheus_text(page) if s.name == "pod_cpu_usage_seconds_total"]
    assert [(s.labels, s.value) for s in pod] == [({"namespace": "default", "pod": "web"}, 2.0)]
    scrape = read_scrape(page)
    assert scrape.node == Point(10.5, 2048, 1700000005000)
    assert scrape.containers[("default", "web", "side")] == Point(0.75, 1024, 1700000005000, 1700000001.0)


def test_a_container_of_the_kubelet_with_no_process_reads_zero(tmp_path: Path) -> None:
    async def main() -> str:
        idle = IdleContainer("c", ContainerLog(tmp_path / "log"))
        await idle.start()
        return await collect([Running("default", "p", idle)], None, 1.0, 1024**3)

    samples = {s.name: s for s in parse_prometheus_text(asyncio.run(main())) if s.labels.get("pod") == "p"}
    assert samples["container_cpu_usage_seconds_total"].value == 0
    assert samples["container_memory_working_set_bytes"].value == 0
