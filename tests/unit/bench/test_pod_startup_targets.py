"""The pod start-up bench's verdicts: upstream's density thresholds, and no verdict on what was not measured."""

from __future__ import annotations

from typing import Any

from bench.pod_startup import targets


def result(**overrides: Any) -> dict[str, Any]:
    return {"nodes": 20, "pods_per_node": 50, "all_ready_seconds": 28.0, "latency_pods": 500,
            "latency_pods_startup_latency_p99_s": 1.2, "startup_latency_p99_s": 9.5, "runtime_rss_kb_per_pod": 36.0,
            **overrides}


def by_name(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["target"]: line for line in lines}


def test_the_saturation_threshold_is_upstreams_pods_over_throughput_plus_three_minutes() -> None:
    lines = by_name(targets(result()))
    upstream = lines["saturation pods' start-up p99 (upstream's threshold)"]
    assert upstream["limit"] == 1000 / 20 + 180 and upstream["met"] is True
    strict = lines["saturation pods' start-up p99 held to the SLO (stricter than upstream)"]
    assert strict["limit"] == 5.0 and strict["met"] is False  # 9.5 s is over it, and says so
    assert lines["pod startup SLO on the latency pods (upstream's check)"]["met"] is True


def test_an_unmeasured_target_has_no_verdict_and_a_slow_one_fails() -> None:
    lines = by_name(targets(result(latency_pods=0, all_ready_seconds=None, runtime_rss_kb_per_pod=2048.0)))
    assert lines["pod startup SLO on the latency pods (upstream's check)"]["met"] is None
    assert lines["every saturation pod Ready"]["met"] is None
    assert lines["memory per built-in pod, KB"]["met"] is False
