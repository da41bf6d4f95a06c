"""Reading a container's log for the kubelet API's /containerLogs/{namespace}/{pod}/{container}.

Every name comes from a URL, so none is trusted: namespace and container must be DNS-1123 labels and
the pod a DNS-1123 subdomain (what the apiserver's validation allows them to be), and the file opened
is the resolved path, checked to lie inside the pod's own log directory, so that neither `..` nor a
symbolic link can lead elsewhere on the machine.

    LogRequestError(code, message)   400 for a malformed name, 404 for an unknown pod or container
"""

from __future__ import annotations

import re
from pathlib import Path

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


def read_log(path: Path, tail: int | None = None, limit_bytes: int | None = None) -> tuple[bytes, int]:
    """What `kubectl logs` shows of the log at PATH (empty if it has written nothing yet): its last TAIL
    lines if TAIL is given, at most LIMIT_BYTES of them; and the offset a follower goes on from."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = b""
    end = len(data)
    if tail is not None:
        # lines[-0:] would be every line; tailLines=0 asks for none
        kept = data.splitlines()[-tail:] if tail > 0 else []
        data = b"".join(line + b"\n" for line in kept)
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data, end


def read_container_log(pod_dir: Path, container: str, tail: int | None) -> bytes:
    """The log of CONTAINER kept in POD_DIR (empty if it has written nothing yet), its last TAIL lines
    if TAIL is given. LogRequestError(400) if the path would leave POD_DIR."""
    return read_log(log_path(pod_dir, container), tail)[0]
