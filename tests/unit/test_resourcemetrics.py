import pytest

from control.api.resourcemetrics import cpu_nanocores, format_cpu, format_memory, parse_prometheus_text

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
