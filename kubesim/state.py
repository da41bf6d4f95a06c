"""The state directory: what a cluster is and everything that was made for it.

    <root>/<cluster>/lock            held (flock) by whoever changes the cluster
    <root>/<cluster>/topology.yaml   the resolved topology it was built from
    <root>/<cluster>/journal.jsonl   one line per object, written and synced *before* it is made
    <root>/<cluster>/phase           building | ready

The journal is written ahead so that even `kubesim up` killed with SIGKILL half way leaves a record
of everything that may exist; `down` removes what the journal names plus whatever carries the
cluster's prefix, and stops recorded processes by pid (checking the pid's start time, so a recycled
pid is never signalled).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from netsim.topology import Topology, parse_topology

DEFAULT_ROOT = "/var/lib/kubesim"


class StateError(Exception):
    """The state directory says no: a cluster exists already, is busy, or is unknown."""


def state_root() -> Path:
    return Path(os.environ.get("KUBESIM_STATE_DIR", DEFAULT_ROOT))


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of PID (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    return stat[stat.rindex(")") + 2:].split()[19]


@dataclass(frozen=True)
class RecordedProcess:
    pid: int
    start: str
    role: str
    argv: tuple[str, ...] = ()  # how to start it again (`kubesim start ROLE`)

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.start

    def stop(self, grace: float = 5.0) -> bool:
        """SIGTERM, wait up to GRACE seconds, then SIGKILL. Returns whether it was running."""
        if not self.alive():
            return False
        with _suppress_gone():
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.alive():
            _reap(self.pid)
            time.sleep(0.05)
        if self.alive():
            with _suppress_gone():
                os.kill(self.pid, signal.SIGKILL)
            while self.alive():
                _reap(self.pid)
                time.sleep(0.01)
        _reap(self.pid)
        return True


@contextmanager
def _suppress_gone() -> Iterator[None]:
    with suppress(ProcessLookupError):
        yield


def _reap(pid: int) -> None:
    """Collect PID if it is our child, so it does not linger as a zombie (and look alive)."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class ClusterState:
    def __init__(self, name: str, root: Path | None = None):
        self.name = name
        self.dir = (root or state_root()) / name

    @property
    def exists(self) -> bool:
        return self.dir.is_dir()

    @contextmanager
    def locked(self, *, create: bool = False) -> Iterator[ClusterState]:
        """Hold the cluster's lock. The kernel drops it if we die, so a crash never wedges a cluster."""
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)
        elif not self.exists:
            raise StateError(f"cluster {self.name!r} does not exist")
        handle = open(self.dir / "lock", "a+")  # noqa: SIM115 - held for the whole block
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateError(f"cluster {self.name!r} is busy: another kubesim command is changing it") from None
            yield self
        finally:
            handle.close()

    # -- journal ----------------------------------------------------------------------------------

    def record(self, kind: str, name: str, **extra: Any) -> None:
        line = json.dumps({"kind": kind, "name": name, **extra}) + "\n"
        fd = os.open(self.dir / "journal.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def journal(self) -> list[dict[str, Any]]:
        try:
            lines = (self.dir / "journal.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by a crash mid-write names nothing we made yet
        return entries

    def recorded_objects(self) -> list[tuple[str, str]]:
        return [(e["kind"], e["name"]) for e in self.journal() if e.get("kind") in ("netns", "link")]

    def record_process(self, pid: int, role: str, argv: list[str] | None = None) -> RecordedProcess:
        start = process_start_time(pid)
        if start is None:
            raise StateError(f"process {pid} ({role}) exited before it could be recorded")
        self.record("process", role, pid=pid, start=start, argv=list(argv or []))
        return RecordedProcess(pid, start, role, tuple(argv or ()))

    def processes(self) -> list[RecordedProcess]:
        latest: dict[str, RecordedProcess] = {}
        for entry in self.journal():
            if entry.get("kind") == "process":
                latest[entry["name"]] = RecordedProcess(entry["pid"], entry["start"], entry["name"],
                                                        tuple(entry.get("argv") or ()))
        return list(latest.values())

    # -- topology and phase -----------------------------------------------------------------------

    def save_topology(self, topology: Topology) -> None:
        (self.dir / "topology.yaml").write_text(yaml.safe_dump(topology.to_dict(), sort_keys=False))

    def topology(self) -> Topology | None:
        try:
            data = yaml.safe_load((self.dir / "topology.yaml").read_text())
        except FileNotFoundError:
            return None
        return parse_topology(data, source=str(self.dir / "topology.yaml"))

    @property
    def phase(self) -> str:
        try:
            return (self.dir / "phase").read_text().strip()
        except FileNotFoundError:
            return "unknown"

    def set_phase(self, phase: str) -> None:
        (self.dir / "phase").write_text(phase + "\n")

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def known_clusters(root: Path | None = None) -> list[str]:
    base = root or state_root()
    try:
        return sorted(p.name for p in base.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []
