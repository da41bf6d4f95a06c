"""Resource quantities: one parser for the apiserver and the scheduler, so both round the same way."""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from control.api.quantity import BINARY_SI, DECIMAL_EXPONENT, DECIMAL_SI, milli_value, parse_quantity, value

_FORMATS = st.sampled_from([BINARY_SI, DECIMAL_SI, DECIMAL_EXPONENT])
_SUFFIXES = st.sampled_from(["", "n", "u", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti", "e3", "E-2", "e0"])


@given(st.integers(-(10**12), 10**12), st.integers(0, 9), _SUFFIXES)
def test_the_canonical_form_round_trips(whole: int, decimals: int, suffix: str) -> None:
    text = f"{whole / 10**decimals:.{decimals}f}{suffix}"
    q = parse_quantity(text)
    again = parse_quantity(str(q))
    assert again.value == q.value
    assert str(again) == str(q)


@given(st.fractions(min_value=-(10**9), max_value=10**9, max_denominator=10**12), _FORMATS)
def test_values_are_exact_nano_multiples_rounded_away_from_zero(number: Fraction, fmt: str) -> None:
    q = parse_quantity(f"{float(number)!r}")
    nanos = q.value * 10**9
    assert nanos.denominator == 1
    assert abs(q.value) >= abs(Fraction(repr(float(number))))


@given(st.fractions(min_value=0, max_value=10**6, max_denominator=10**9))
def test_milli_value_and_value_round_up(number: Fraction) -> None:
    text = repr(float(number))
    exact = Fraction(text)
    assert milli_value(text) == math.ceil(parse_quantity(text).value * 1000) >= exact * 1000
    assert value(text) == math.ceil(parse_quantity(text).value) >= exact


def test_the_copies_agree_on_the_cases_they_disagreed_on() -> None:
    # The scheduler's copy kept sub-nano digits; ParseQuantity rounds them up first.
    assert str(parse_quantity("0.0000000001")) == "1n"
    assert milli_value("0.0000000001") == 1 and value("1.0000000001") == 2
    assert milli_value("0.5m") == 1 and value("1.5") == 2 and value("1Ki") == 1024 and milli_value(1) == 1000


def test_whole_bytes_that_are_no_multiple_of_1024_print_without_a_suffix() -> None:
    # Quantity.String() of "69563.5Ki": 71233024 bytes, not a multiple of 1024 (the hypothesis test found it).
    assert str(parse_quantity("69563.5Ki")) == "71233024"
    assert str(parse_quantity("1.5Ki")) == "1536"
    assert str(parse_quantity("2Ki")) == "2Ki"
