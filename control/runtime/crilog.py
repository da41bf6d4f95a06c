"""CRI's container log format, as the node runtime writes it and the kubelet reads it back:

    2016-10-06T00:17:09.669794202Z stdout F text

one stored line per line a container wrote: its time (RFC3339Nano), the stream, F for a full line or P
for part of one (a line longer than a read, or the end of output left without its newline), and the
bytes written, without their newline.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

#: a line longer than this is stored in parts (P), as runtimes bound a line in memory
MAX_LINE = 16 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})")


def rfc3339nano(ns: int) -> str:
    """NS nanoseconds from the epoch as Go's time.RFC3339Nano writes them (trailing zeros dropped)."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{fraction:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"


def parse_rfc3339(text: str) -> int:
    """Nanoseconds from the epoch of an RFC3339 time (any fraction up to nanoseconds); ValueError if malformed."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an RFC3339 time")
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    seconds = (moment - _EPOCH) // timedelta(seconds=1)
    return seconds * 1_000_000_000 + int((fraction or "").ljust(9, "0"))


def cri_line(stream: str, content: bytes, *, partial: bool = False, ns: int | None = None) -> bytes:
    """One stored log line: CONTENT (no newline) written to STREAM at NS (now by default)."""
    when = rfc3339nano(time.time_ns() if ns is None else ns)
    return f"{when} {stream} {'P' if partial else 'F'} ".encode() + content + b"\n"


class LineSplitter:
    """A stream's bytes, as they are read, cut into the stored lines they make (content, partial)."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[tuple[bytes, bool]]:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        out = [(line, False) for line in lines]
        while len(self._pending) >= MAX_LINE:
            out.append((self._pending[:MAX_LINE], True))
            self._pending = self._pending[MAX_LINE:]
        return out

    def close(self) -> list[tuple[bytes, bool]]:
        rest, self._pending = self._pending, b""
        return [(rest, True)] if rest else []
