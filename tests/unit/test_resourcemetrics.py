import pytest

from control.api.resourcemetrics import (
    Point,
    cpu_nanocores,
    format_cpu,
    format_memory,
    format_timestamp,
    format_window,
    parse_prometheus_text,
    read_scrape,
    usage_between,
)

TEXT = """# HELP node_cpu_usage_seconds_total Cumulative cpu time
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 12.5 1700000000000
container_memory_working_set_bytes{container="web",namespace="default",pod="p-1"} 2097152 1700000000000
container_cpu_usage_seconds_total{container="a\\"b",pod="x"} 3
"""


def test_parse_samples_with_labels_and_timestamps() -> None:
    s = parse_prometheus_text(TEXT)
    assert [x.name for x in s] == ["node_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                                   "container_cpu_usage_seconds_total"]
    assert s[0].value == 12.5 and s[0].timestamp_ms == 1700000000000
    assert s[1].labels == {"container": "web", "namespace": "default", "pod": "p-1"}
    assert s[2].labels["container"] == 'a"b' and s[2].timestamp_ms is None


def test_malformed_line_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="name value"):
        parse_prometheus_text("just_a_name\n")


def test_cpu_rate_and_formats() -> None:
    assert cpu_nanocores(1.0, 0, 1.5, 1000) == 500_000_000
    assert cpu_nanocores(5.0, 0, 1.0, 1000) == 0  # counter reset
    with pytest.raises(ValueError):
        cpu_nanocores(1.0, 10, 2.0, 10)
    assert format_cpu(123456) == "123456n"
    assert format_memory(2097152) == "2048Ki"


# -- scrapes into metrics.k8s.io usage -------------------------------------------------------------

PAGE = """# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 100.5 1700000010000
node_memory_working_set_bytes 4194304 1700000010000
container_cpu_usage_seconds_total{container="busy",namespace="default",pod="p"} 9.5 1700000010000
container_memory_working_set_bytes{container="busy",namespace="default",pod="p"} 2048 1700000010000
container_start_time_seconds{container="busy",namespace="default",pod="p"} 1699999990 1700000010000
pod_cpu_usage_seconds_total{namespace="default",pod="p"} 9.5 1700000010000
resource_scrape_error 0
"""


def test_a_page_reads_as_the_node_and_each_container() -> None:
    scrape = read_scrape(PAGE)
    assert scrape.node == Point(100.5, 4194304, 1700000010000)
    assert scrape.containers == {("default", "p", "busy"): Point(9.5, 2048, 1700000010000, 1699999990)}


def test_a_container_sample_without_its_names_is_refused() -> None:
    with pytest.raises(ValueError, match="namespace, pod and container"):
        read_scrape('container_cpu_usage_seconds_total{pod="p"} 1 1000\n')
    with pytest.raises(ValueError, match="timestamp"):
        read_scrape("node_cpu_usage_seconds_total 1\nnode_memory_working_set_bytes 1\n")


def test_usage_is_the_rate_since_the_earlier_scrape_over_its_window() -> None:
    earlier = Point(10.0, 0, 1_000, 50.0)
    now = Point(12.0, 3 * 1024 + 5, 5_000, 50.0)
    usage = usage_between(earlier, now)
    assert usage is not None
    assert (usage.nanocores, usage.memory_bytes, usage.window_ms) == (500_000_000, 3077, 4_000)
    assert (format_cpu(usage.nanocores), format_memory(usage.memory_bytes)) == ("500000000n", "3Ki")


def test_a_restarted_or_new_container_is_measured_since_its_start() -> None:
    restarted = Point(1.0, 0, 20_000, 18.0)  # started at 18 s; the earlier point was of the old instance
    usage = usage_between(Point(40.0, 0, 10_000, 2.0), restarted)
    assert usage is not None and (usage.nanocores, usage.window_ms) == (500_000_000, 2_000)
    assert usage_between(None, Point(1.0, 0, 20_000, 0.0)) is None  # no start, no earlier point: unknown


def test_windows_and_timestamps_print_as_upstream_writes_them() -> None:
    assert [format_window(ms) for ms in (0, 1000, 10_500, 1_250, 75_000)] == ["0s", "1s", "10.5s", "1.25s", "1m15s"]
    assert format_timestamp(1700000010000) == "2023-11-14T22:13:30Z"
