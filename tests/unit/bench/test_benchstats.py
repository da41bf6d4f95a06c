"""The proxy benchmarks' pure helpers (bench/benchstats.py) and the proxy's reading of the trigger time
they write: wrong percentile math or duplicate addresses would make every benchmark number wrong."""

from __future__ import annotations

import calendar
import time

import pytest

from bench.benchstats import addresses, median_of, percentile, rfc3339_nano, spread, summary_ms
from proxy.server import TRIGGER_TIME, _trigger_time


def test_nearest_rank_percentiles() -> None:
    samples = [float(x) for x in range(1, 21)]  # 1..20, shuffled order must not matter
    samples.reverse()
    assert percentile(samples, 50) == 10.0
    assert percentile(samples, 99) == 20.0  # of 20 samples, p99 is the maximum
    assert percentile(samples, 100) == 20.0
    assert percentile(samples, 5) == 1.0
    assert percentile([7.0], 50) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)


def test_summary_in_milliseconds_and_median_over_runs() -> None:
    s = summary_ms([0.010, 0.020, 0.030, 0.040])
    assert s == {"count": 4, "p50_ms": 20.0, "p99_ms": 40.0, "mean_ms": 25.0, "min_ms": 10.0, "max_ms": 40.0}
    runs = [{"p50_ms": 1.0, "max_ms": 9.0}, {"p50_ms": 3.0, "max_ms": 5.0}, {"p50_ms": 2.0}]
    assert median_of(runs) == {"p50_ms": 2.0}  # only keys every run has


def test_rfc3339_nano_round_trips_through_the_proxy() -> None:
    when = calendar.timegm((2026, 12, 7, 2, 30, 15, 0, 0, 0)) + 0.123456
    stamp = rfc3339_nano(when)
    assert stamp == "2026-12-07T02:30:15.123456Z"
    assert rfc3339_nano(float(int(when))) == "2026-12-07T02:30:15Z"
    got = _trigger_time({"metadata": {"annotations": {TRIGGER_TIME: stamp}}})
    assert got == pytest.approx(when, abs=1e-6)


def test_proxy_keeps_nanoseconds_and_whole_seconds_of_the_trigger_time() -> None:
    base = calendar.timegm(time.strptime("2026-12-07T02:30:15", "%Y-%m-%dT%H:%M:%S"))
    read = [_trigger_time({"metadata": {"annotations": {TRIGGER_TIME: s}}})
            for s in ("2026-12-07T02:30:15.987654321Z", "2026-12-07T02:30:15Z", "not a time")]
    assert read[0] == pytest.approx(base + 0.987654321)
    assert read[1] == base
    assert read[2] is None


def test_spread_covers_first_middle_and_last() -> None:
    assert spread(10_000, 3) == [0, 5000, 9999]
    picks = spread(10_000, 20)
    assert len(picks) == 20 and picks[0] == 0 and picks[-1] == 9999
    assert spread(3, 20) == [0, 1, 2]  # never more picks than items, no duplicates
    assert spread(5, 1) == [0]
    assert spread(0, 3) == []


def test_addresses_are_distinct_hosts_and_bounded() -> None:
    got = addresses("10.244.0.0/16", 50_000)
    assert len(set(got)) == 50_000
    assert got[0] == "10.244.0.1" and got[255] == "10.244.1.0"
    assert "10.244.0.0" not in got and "10.244.255.255" not in got
    assert addresses("10.250.0.0/16", 1, skip=3) == ["10.250.0.4"]
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/30 has 2 host addresses"):
        addresses("10.0.0.0/30", 3)
