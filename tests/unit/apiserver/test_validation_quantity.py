"""The quantity parser that resource validation relies on, against upstream's behaviour
(k8s.io/apimachinery/pkg/api/resource/quantity_test.go): parsing, canonical printing, comparison, errors."""

from __future__ import annotations

from fractions import Fraction

import pytest

from control.api.quantity import QUANTITY_REGEX_MESSAGE, QuantityError, parse_quantity


@pytest.mark.parametrize(("text", "canonical", "value"), [
    ("100m", "100m", Fraction(1, 10)),
    ("1", "1", Fraction(1)),
    ("1000m", "1", Fraction(1)),
    ("1.5", "1500m", Fraction(3, 2)),
    ("0.5", "500m", Fraction(1, 2)),
    (".5", "500m", Fraction(1, 2)),
    ("5.", "5", Fraction(5)),
    ("+1", "1", Fraction(1)),
    ("-1", "-1", Fraction(-1)),
    ("1Ki", "1Ki", Fraction(1024)),
    ("1024Mi", "1Gi", Fraction(2**30)),
    ("1.5Gi", "1536Mi", Fraction(3 * 2**29)),
    ("0.5Ki", "512", Fraction(512)),
    ("0.1Gi", "107374182400m", Fraction(2**30, 10)),
    ("1k", "1k", Fraction(1000)),
    ("1M", "1M", Fraction(10**6)),
    ("1e3", "1e3", Fraction(1000)),
    ("1E3", "1e3", Fraction(1000)),
    ("12e-3", "12e-3", Fraction(12, 1000)),
    ("0.0000000001", "1n", Fraction(1, 10**9)),  # rounded up to the nano unit
    (1, "1", Fraction(1)),
    (2.5, "2500m", Fraction(5, 2)),
])
def test_parse_and_print(text: str | int | float, canonical: str, value: Fraction) -> None:
    quantity = parse_quantity(text)
    assert quantity.value == value
    assert str(quantity) == canonical


@pytest.mark.parametrize(("text", "message"), [
    ("", QUANTITY_REGEX_MESSAGE),
    ("abc", QUANTITY_REGEX_MESSAGE),
    ("Ki", QUANTITY_REGEX_MESSAGE),
    ("1Gb", "unable to parse quantity's suffix"),
    ("1.5.5", "unable to parse quantity's suffix"),
    ("1i", "unable to parse quantity's suffix"),
    (True, QUANTITY_REGEX_MESSAGE),
    (float("nan"), QUANTITY_REGEX_MESSAGE),
])
def test_errors(text: object, message: str) -> None:
    with pytest.raises(QuantityError) as caught:
        parse_quantity(text)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_comparison_across_suffixes() -> None:
    assert parse_quantity("500m") < parse_quantity("1")
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("1024Mi") <= parse_quantity("1Gi") <= parse_quantity("1024Mi")
    assert parse_quantity("-1Mi").is_negative
