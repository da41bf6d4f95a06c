"""Durations written as Go's time.ParseDuration reads them ("40s", "1m30s", "1.5h", "-500ms", "0"):
the form of every controller-manager and kubesim timing flag, so they all parse one way."""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["DurationError", "parse_duration"]

_UNITS = {"ns": Fraction(1, 10**9), "us": Fraction(1, 10**6), "\u00b5s": Fraction(1, 10**6),
          "\u03bcs": Fraction(1, 10**6), "ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60),
          "h": Fraction(3600)}
# One term: digits with an optional fraction (either side of the point may be empty, not both), then
# letters up to the next digit or point, which must be a unit.
_TERM = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


class DurationError(ValueError):
    """Not a Go duration; the message is Go's."""


def parse_duration(text: str) -> float:
    """Seconds in TEXT. As Go: a sign, then "0" alone or one or more number+unit terms; a number
    without a unit, an unknown unit or an empty string is an error."""
    original = text
    sign = -1 if text[:1] == "-" else 1
    if text[:1] in "+-":
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise DurationError(f'time: invalid duration "{original}"')
    total = Fraction(0)
    pos = 0
    while pos < len(text):
        match = _TERM.match(text, pos)
        assert match is not None  # every part of the pattern may be empty
        whole, fraction, unit = match.groups()
        if not whole and not fraction:
            raise DurationError(f'time: invalid duration "{original}"')
        if not unit:
            raise DurationError(f'time: missing unit in duration "{original}"')
        if unit not in _UNITS:
            raise DurationError(f'time: unknown unit "{unit}" in duration "{original}"')
        number = Fraction(int(whole or "0")) + (Fraction(int(fraction), 10 ** len(fraction)) if fraction else 0)
        total += number * _UNITS[unit]
        pos = match.end()
    if total * 10**9 >= 2**63:  # Go's Duration is an int64 of nanoseconds
        raise DurationError(f'time: invalid duration "{original}"')
    return float(sign * total)
