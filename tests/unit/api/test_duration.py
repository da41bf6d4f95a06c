"""Durations as Go's time.ParseDuration reads them (its own test table's cases, in seconds)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from control.api.duration import DurationError, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0), ("5s", 5), ("30s", 30), ("1478s", 1478), ("-5s", -5), ("+5s", 5), ("-0", 0), ("+0", 0),
    ("5.0s", 5), ("5.6s", 5.6), ("5.s", 5), (".5s", 0.5), ("1.0s", 1), ("1.00s", 1), ("1.004s", 1.004),
    ("100.00100s", 100.001), ("10ns", 1e-8), ("11us", 1.1e-5), ("12\u00b5s", 1.2e-5), ("12\u03bcs", 1.2e-5),
    ("13ms", 0.013), ("14s", 14), ("15m", 900), ("16h", 57600), ("3h30m", 12600), ("10.5s4m", 250.5),
    ("-2m3.4s", -123.4), ("1h2m3s4ms5us6ns", 3723.004005006), ("39h9m14.425s", 140954.425),
])
def test_go_parse_duration_cases(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("text", "message"), [
    ("", 'time: invalid duration ""'), ("3", 'time: missing unit in duration "3"'),
    ("-", 'time: invalid duration "-"'), ("s", 'time: invalid duration "s"'), (".", 'time: invalid duration "."'),
    ("-.", 'time: invalid duration "-."'), (".s", 'time: invalid duration ".s"'),
    ("+.s", 'time: invalid duration "+.s"'), ("1d", 'time: unknown unit "d" in duration "1d"'),
    ("2.5", 'time: missing unit in duration "2.5"'), ("9223372037s", 'time: invalid duration "9223372037s"'),
])
def test_go_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)
    assert str(caught.value) == message


@given(st.lists(st.tuples(st.integers(0, 10**4), st.sampled_from(["h", "m", "s", "ms", "us", "ns"])),
                min_size=1, max_size=5))
def test_terms_add_up(terms: list[tuple[int, str]]) -> None:
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
    text = "".join(f"{n}{unit}" for n, unit in terms)
    assert parse_duration(text) == pytest.approx(sum(n * scale[u] for n, u in terms), rel=1e-12, abs=1e-12)
    assert parse_duration("-" + text) == -parse_duration(text)
