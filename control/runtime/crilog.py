"""CRI's container log format, as the node runtime writes it and the kubelet reads it back:

    2016-10-06T00:17:09.669794202Z stdout F text

one stored line per line a container wrote: its time (RFC3339Nano), the stream, F for a full line or P
for part of one (a line longer than a read, or the end of output left without its newline), and the
bytes written, without their newline.

A container's log is capped as upstream's kubelet caps it (containerLogMaxSize, containerLogMaxFiles;
there the kubelet's log manager rotates and asks the runtime to reopen, here the runtime, the only
writer, rotates before a write would take the file past the size): NAME.log is the file being
written, NAME.log.1 the one rotated last, up to NAME.log.<max files - 1>, the oldest; an older one
is deleted. A rotation only ever happens between whole stored lines, so each file holds whole lines
and a reader reads them oldest first (log_files) as one log.
"""

from __future__ import annotations

import os
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


#: kubesim's caps on one container's log, smaller than upstream kubelet's defaults (10Mi, 5 files) as
#: one machine holds every node's pods: at most LOG_MAX_SIZE * LOG_MAX_FILES bytes per container.
#: The runtime's --container-log-max-size / --container-log-max-files set them (upstream's values too).
LOG_MAX_SIZE = 1024 * 1024
LOG_MAX_FILES = 5


def rotated(path: os.PathLike[str] | str, n: int) -> str:
    """The name of the Nth most recent rotated file of the log at PATH."""
    return f"{os.fspath(path)}.{n}"


def log_files(path: os.PathLike[str] | str) -> list[str]:
    """The files of the log at PATH, oldest first: its rotated files, then PATH itself (those there)."""
    found, n = [], 1
    while os.path.exists(rotated(path, n)):
        found.append(rotated(path, n))
        n += 1
    return [*reversed(found), os.fspath(path)]


def rotate(path: os.PathLike[str] | str, max_files: int) -> None:
    """PATH becomes its first rotated file, the others move one older, and what is past MAX_FILES - 1
    rotated files is deleted."""
    n = 1
    while os.path.exists(rotated(path, n)):
        n += 1
    for k in range(n - 1, 0, -1):  # oldest first, so that no rename overwrites one not yet moved
        if k + 1 >= max_files:
            os.unlink(rotated(path, k))
        else:
            os.replace(rotated(path, k), rotated(path, k + 1))
    os.replace(path, rotated(path, 1))


def retire(path: os.PathLike[str] | str, to: os.PathLike[str] | str) -> None:
    """Move the log at PATH, rotated files and all, to TO (what was at TO before goes): a container's
    log becomes its previous instance's when it restarts."""
    for old in log_files(to):
        if os.path.exists(old):
            os.unlink(old)
    for n in range(1, len(log_files(path))):
        os.replace(rotated(path, n), rotated(to, n))
    if os.path.exists(path):
        os.replace(path, to)
