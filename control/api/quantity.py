"""Kubernetes resource quantities ("100m", "1.5", "1Gi", "1e3"): parse, compare, print canonically.

The semantics of k8s.io/apimachinery/pkg/api/resource (quantity.go): a signed decimal number with one
suffix, binary-SI (Ki..Ei), decimal-SI (n, u, m, "", k, M, G, T, P, E) or a decimal exponent (e3, E-2).
Values are exact (fractions) and, like upstream's ParseQuantity, rounded up to the nano unit. The
suffix family chosen by the writer is kept as the format, so "1024Mi" prints as "1Gi" and "1000m" as "1".

    q = parse_quantity("1.5Gi")        # raises QuantityError for "1.5.5", "abc", "1Gb"
    q.value                            # Fraction(3221225472, 2)
    str(q)                             # "1536Mi"
    parse_quantity("500m") < parse_quantity("1")
    milli_value("0.5m"), value("1.5")  # 1, 2: Quantity.MilliValue() / Value() round up (towards +inf)

Exceptions: QuantityError (a ValueError) carries upstream's decode error text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

__all__ = ["QUANTITY_REGEX_MESSAGE", "Quantity", "QuantityError", "milli_value", "parse_quantity", "value"]

# Upstream's ErrFormatWrong text, which the apiserver returns (400) when a body holds a bad quantity.
QUANTITY_REGEX_MESSAGE = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"

BINARY_SI = "BinarySI"
DECIMAL_SI = "DecimalSI"
DECIMAL_EXPONENT = "DecimalExponent"

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exp: suffix for suffix, exp in _DECIMAL.items()}
# A whole number of bytes that is no multiple of 1024 has no suffix (AsCanonicalBase1024Bytes, exponent 0).
_BINARY_SUFFIX = {0: "", **{exp: suffix for suffix, exp in _BINARY.items()}}

# Sign, digits with at most one point (".5" and "5." are accepted upstream), then the suffix.
_NUMBER = re.compile(r"^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(.*)$")
_EXPONENT = re.compile(r"^[eE]([+-]?[0-9]+)$")
_NANO = Fraction(1, 10**9)


class QuantityError(ValueError):
    """Not a quantity; str() is upstream's message."""


@dataclass(frozen=True, order=False)
class Quantity:
    value: Fraction
    format: str = DECIMAL_SI

    def __lt__(self, other: Quantity) -> bool:
        return self.value < other.value

    def __le__(self, other: Quantity) -> bool:
        return self.value <= other.value

    def __gt__(self, other: Quantity) -> bool:
        return self.value > other.value

    def __ge__(self, other: Quantity) -> bool:
        return self.value >= other.value

    def __str__(self) -> str:
        return canonical(self.value, self.format)

    @property
    def is_negative(self) -> bool:
        return self.value < 0


def parse_quantity(text: str | int | float) -> Quantity:
    """Parse a quantity as a JSON body carries it: a string, or a bare number (Quantity.UnmarshalJSON)."""
    if isinstance(text, bool):
        raise QuantityError(QUANTITY_REGEX_MESSAGE)
    if isinstance(text, int):
        return Quantity(Fraction(text), DECIMAL_SI)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise QuantityError(QUANTITY_REGEX_MESSAGE)
        text = repr(text)
    if not isinstance(text, str):
        raise QuantityError(QUANTITY_REGEX_MESSAGE)
    return _parse_text(text)


@lru_cache(maxsize=4096)  # the scheduler reads the same few request strings for every pod
def _parse_text(text: str) -> Quantity:
    stripped = text.strip()
    match = _NUMBER.match(stripped)
    if not stripped or match is None:
        raise QuantityError(QUANTITY_REGEX_MESSAGE)
    sign, digits, suffix = match.groups()
    number = Fraction(digits if not digits.endswith(".") else digits[:-1])
    if suffix in _BINARY:
        value, fmt = number * 2 ** _BINARY[suffix], BINARY_SI
    elif suffix in _DECIMAL:
        value, fmt = number * Fraction(10) ** _DECIMAL[suffix], DECIMAL_SI
    elif (exp := _EXPONENT.match(suffix)) is not None:
        power = int(exp.group(1))
        if abs(power) > 1000:  # upstream caps the scale long before this; keep Fractions small
            raise QuantityError(QUANTITY_REGEX_MESSAGE)
        value, fmt = number * Fraction(10) ** power, DECIMAL_EXPONENT
    else:
        raise QuantityError("unable to parse quantity's suffix")
    if sign == "-":
        value = -value
    # ParseQuantity rounds anything finer than a nano unit up (away from zero).
    scaled = value / _NANO
    if scaled.denominator != 1:
        value = Fraction(math.ceil(scaled) if value > 0 else math.floor(scaled)) * _NANO
    return Quantity(value, fmt)


def canonical(value: Fraction, fmt: str) -> str:
    """Quantity.String(): the shortest exact form in the quantity's suffix family (CanonicalizeBytes)."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    if fmt == BINARY_SI and magnitude >= 1024 and magnitude.denominator == 1:
        mantissa, exp = int(magnitude), 0
        while mantissa % 1024 == 0 and exp < 60:
            mantissa //= 1024
            exp += 10
        return f"{sign}{mantissa}{_BINARY_SUFFIX[exp]}"
    # Decimal: mantissa * 10^exp, exp as large as exactness allows, then lowered to a multiple of 3.
    exp = -9
    mantissa = int(magnitude / _NANO)
    while mantissa % 10 == 0:
        mantissa //= 10
        exp += 1
    while exp % 3:
        mantissa *= 10
        exp -= 1
    if fmt == DECIMAL_EXPONENT:
        return f"{sign}{mantissa}" + (f"e{exp}" if exp else "")
    if exp > 18:
        mantissa *= 10 ** (exp - 18)
        exp = 18
    return f"{sign}{mantissa}{_DECIMAL_SUFFIX[exp]}"


def milli_value(raw: object) -> int:
    """Quantity.MilliValue(): thousandths, rounded up ("100m" -> 100, "1" -> 1000, "0.1m" -> 1)."""
    return math.ceil(parse_quantity(raw).value * 1000)  # type: ignore[arg-type]


def value(raw: object) -> int:
    """Quantity.Value(): units, rounded up ("1Ki" -> 1024, "1.5" -> 2)."""
    return math.ceil(parse_quantity(raw).value)  # type: ignore[arg-type]
