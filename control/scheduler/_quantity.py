"""Kubernetes resource quantities as the scheduler needs them: integers in milli-units (cpu) or units.

The semantics of k8s.io/apimachinery/pkg/api/resource: a signed decimal with one suffix, binary-SI
(Ki..Ei), decimal-SI (n, u, m, "", k, M, G, T, P, E) or a decimal exponent (e3, E-2). The scheduler
reads cpu with Quantity.MilliValue() and everything else with Quantity.Value(); both round up
(towards +inf), so "0.5m" cpu counts as 1m and "1.5" bytes as 2.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

__all__ = ["QuantityError", "milli_value", "parse_quantity", "value"]

_SUFFIXES: dict[str, Fraction] = {
    "Ki": Fraction(2**10), "Mi": Fraction(2**20), "Gi": Fraction(2**30), "Ti": Fraction(2**40),
    "Pi": Fraction(2**50), "Ei": Fraction(2**60),
    "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
    "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
    "P": Fraction(10**15), "E": Fraction(10**18),
}
# An exponent is tried before the suffixes so that "1E3" is 1000 while a bare "1E" is one exa.
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:[eE]([+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$")


class QuantityError(ValueError):
    """Not a Kubernetes quantity."""


@lru_cache(maxsize=4096)
def _parse_text(text: str) -> Fraction:
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise QuantityError(f"{text!r} is not a quantity: quantities must match the regular expression "
                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
    number = Fraction(match[1])
    if match[2] is not None:
        exponent = int(match[2])
        return number * (Fraction(10) ** exponent)
    return number * _SUFFIXES[match[3] or ""]


def parse_quantity(raw: object) -> Fraction:
    """A quantity as JSON carries it (a string, or a bare number) as an exact fraction."""
    if isinstance(raw, bool):
        raise QuantityError(f"{raw!r} is not a quantity")
    if isinstance(raw, int):
        return Fraction(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise QuantityError(f"{raw!r} is not a quantity")
        return Fraction(str(raw))
    if isinstance(raw, str):
        return _parse_text(raw)
    raise QuantityError(f"{raw!r} is not a quantity")


def milli_value(raw: object) -> int:
    """Quantity.MilliValue(): thousandths, rounded up ("100m" -> 100, "1" -> 1000, "0.1m" -> 1)."""
    return math.ceil(parse_quantity(raw) * 1000)


def value(raw: object) -> int:
    """Quantity.Value(): units, rounded up ("1Ki" -> 1024, "1.5" -> 2)."""
    return math.ceil(parse_quantity(raw))
