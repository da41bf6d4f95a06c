"""Reading a container's log for the kubelet API's /containerLogs/{namespace}/{pod}/{container}.

Every name comes from a URL, so none is trusted: namespace and container must be DNS-1123 labels and
the pod a DNS-1123 subdomain (what the apiserver's validation allows them to be), and the file opened
is the resolved path, checked to lie inside the pod's own log directory, so that neither `..` nor a
symbolic link can lead elsewhere on the machine.

    LogRequestError(code, message)   400 for a malformed name, 404 for an unknown pod or container,
                                     422 for PodLogOptions out of range

Logs are stored in CRI's format, a time on each line, so that the kubelet can honour PodLogOptions
(sinceSeconds, sinceTime, timestamps, tailLines, limitBytes) as upstream's kuberuntime_logs.go does,
across the files the runtime rotated the log into (crilog.log_files), oldest first.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from control.runtime.crilog import log_files, parse_rfc3339, rfc3339nano

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class LogRequestError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _is_label(value: str) -> bool:
    return len(value) <= 63 and _LABEL.fullmatch(value) is not None


def _is_subdomain(value: str) -> bool:
    return len(value) <= 253 and _SUBDOMAIN.fullmatch(value) is not None


def validate_log_request(namespace: str, pod: str, container: str | None) -> None:
    """LogRequestError(400) naming the first part of the request that is not a valid Kubernetes name."""
    if not _is_label(namespace):
        raise LogRequestError(400, f"invalid namespace {namespace!r}: it must be a DNS-1123 label (lower case "
                                   "letters, digits and '-', at most 63 characters)")
    if not _is_subdomain(pod):
        raise LogRequestError(400, f"invalid pod name {pod!r}: it must be a DNS-1123 subdomain (lower case "
                                   "letters, digits, '-' and '.', at most 253 characters)")
    if container is not None and not _is_label(container):
        raise LogRequestError(400, f"invalid container name {container!r}: it must be a DNS-1123 label (lower "
                                   "case letters, digits and '-', at most 63 characters)")


def log_path(pod_dir: Path, container: str, *, previous: bool = False) -> Path:
    """The log file of CONTAINER (its previous instance's with PREVIOUS) in POD_DIR, resolved.
    LogRequestError(400) if the path would leave POD_DIR."""
    root = pod_dir.resolve()
    path = (root / (f"{container}.previous.log" if previous else f"{container}.log")).resolve()
    if not path.is_relative_to(root) or path.parent != root:
        raise LogRequestError(400, f"container {container!r}: its log path leaves the pod's log directory")
    return path


# -- CRI's log format and PodLogOptions ------------------------------------------------------------------
#
# Each line a container writes is stored as CRI's runtime log format: `TIME STREAM TAG CONTENT`, TIME in
# RFC3339Nano, STREAM stdout or stderr, TAG F for a full line or P for part of one (a line longer than a
# read, or one left without its newline when the container ended).

_CRI = re.compile(rb"(\S+) (stdout|stderr) ([FP])(?: (.*))?")


@dataclass(frozen=True)
class LogLine:
    ns: int | None  # None: a line not in CRI's format (a log written before kubesim kept times)
    stream: str
    content: bytes  # with its newline unless it is a partial line


def parse_line(raw: bytes) -> LogLine:
    """A stored line (without its newline)."""
    match = _CRI.fullmatch(raw)
    if match is not None:
        try:
            ns = parse_rfc3339(match[1].decode())
        except ValueError:
            ns = None
        if ns is not None:
            content = match[4] or b""
            return LogLine(ns, match[2].decode(), content if match[3] == b"P" else content + b"\n")
    return LogLine(None, "stdout", raw + b"\n")


@dataclass(frozen=True)
class LogOptions:
    """PodLogOptions as the kubelet applies them (kuberuntime_logs.go's semantics)."""

    since_ns: int | None = None
    timestamps: bool = False
    tail: int | None = None
    limit_bytes: int | None = None
    previous: bool = False
    follow: bool = False

    def keeps(self, line: LogLine) -> bool:
        # a line of unknown time is kept: nothing says it is older
        return self.since_ns is None or line.ns is None or line.ns >= self.since_ns

    def render(self, line: LogLine) -> bytes:
        if self.timestamps and line.ns is not None:
            return rfc3339nano(line.ns).encode() + b" " + line.content
        return line.content


def _integer(query: Mapping[str, str], name: str, least: int, causes: list[str]) -> int | None:
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise LogRequestError(400, f"{name}: Invalid value: {value!r}: must be an integer") from None
    if number < least:
        causes.append(f"{name}: Invalid value: {number}: must be "
                      + ("greater than or equal to 0" if least == 0 else "greater than 0"))
    return number


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("1", "true")


def log_options(query: Mapping[str, str], now_ns: int | None = None) -> LogOptions:
    """PodLogOptions from a query; LogRequestError 400 for a value that does not parse, 422 (upstream's
    ValidatePodLogOptions) for one out of range or for both sinceSeconds and sinceTime."""
    causes: list[str] = []
    tail = _integer(query, "tailLines", 0, causes)
    limit = _integer(query, "limitBytes", 1, causes)
    since_seconds = _integer(query, "sinceSeconds", 1, causes)
    since_time = query.get("sinceTime") or None
    if since_seconds is not None and since_time is not None:
        causes.append("at most one of `sinceTime` or `sinceSeconds` may be specified")
    if causes:
        raise LogRequestError(422, "PodLogOptions is invalid: " + "; ".join(causes))
    since_ns = None
    if since_seconds is not None:
        since_ns = (time.time_ns() if now_ns is None else now_ns) - since_seconds * 1_000_000_000
    elif since_time is not None:
        try:
            since_ns = parse_rfc3339(since_time)
        except ValueError:
            raise LogRequestError(400, f"sinceTime: Invalid value: {since_time!r}: must be an RFC3339 time, "
                                       "such as 2024-01-02T15:04:05Z") from None
    return LogOptions(since_ns, _flag(query, "timestamps"), tail, limit, _flag(query, "previous"),
                      _flag(query, "follow"))


class LineDecoder:
    """Stored log bytes, fed in chunks as they are read, back to whole LogLines."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[LogLine]:
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        return [parse_line(line) for line in lines]


class Limiter:
    """What is left to send under limitBytes (no limit: everything)."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    def take(self, data: bytes) -> bytes:
        if self.left is None:
            return data
        data = data[:self.left]
        self.left -= len(data)
        return data

    @property
    def spent(self) -> bool:
        return self.left == 0


def read_log(path: Path, options: LogOptions) -> tuple[bytes, int]:
    """What `kubectl logs` shows of the log at PATH now (empty if it has written nothing yet) under
    OPTIONS (follow aside: what is sent before following), and the offset a follower goes on from.
    The limit is not applied here: the caller's Limiter spends it on this and what follows."""
    older = b""
    *rotated, current = log_files(path)
    for name in rotated:  # the log's rotated files, oldest first, each of whole lines (crilog)
        with contextlib.suppress(FileNotFoundError):
            older += Path(name).read_bytes()
    try:
        data = Path(current).read_bytes()
    except FileNotFoundError:
        data = b""
    end = data.rfind(b"\n") + 1  # a line still being written is the follower's
    lines = [line for line in map(parse_line, (older + data[:end]).splitlines()) if options.keeps(line)]
    if options.tail is not None:
        # lines[-0:] would be every line; tailLines=0 asks for none
        lines = lines[-options.tail:] if options.tail > 0 else []
    return b"".join(options.render(line) for line in lines), end


def read_container_log(pod_dir: Path, container: str, tail: int | None) -> bytes:
    """The log of CONTAINER kept in POD_DIR (empty if it has written nothing yet), its last TAIL lines
    if TAIL is given. LogRequestError(400) if the path would leave POD_DIR."""
    return read_log(log_path(pod_dir, container), LogOptions(tail=tail))[0]
