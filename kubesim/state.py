"""The state directory: what a cluster is and everything that was made for it.

    <root>/<cluster>/.kubesim-cluster  the marker: this directory is a cluster's, made by kubesim
    <root>/<cluster>/lock            held (flock) by whoever changes the cluster
    <root>/<cluster>/topology.yaml   the resolved topology it was built from
    <root>/<cluster>/journal.jsonl   one line per object, written and synced *before* it is made
    <root>/<cluster>/phase           building | ready

The journal is written ahead so that even `kubesim up` killed with SIGKILL half way leaves a record
of everything that may exist; `down` removes what the journal names plus whatever carries the
cluster's prefix, and stops recorded processes by pid (checking the pid's start time, so a recycled
pid is never signalled).

A cluster name is a DNS-1123 label wherever it comes from (--name, a directory listing, a state
file), so it can never climb out of the state root; and a directory is only ever removed if it is a
direct child of the state root carrying kubesim's marker, so `down` cannot remove what it did not make.

Errors:
    StateError               a cluster exists already, is busy, or is unknown
    └── StateInputError      a cluster name or a state root that kubesim refuses (bad input, exit 2)
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

from kubesim.errors import StateError, StateInputError
from netsim import names
from netsim.topology import Topology, cluster_name_problem, load_topology

DEFAULT_ROOT = "/var/lib/kubesim"
MARKER = ".kubesim-cluster"
# Directories that are never a state root: removing a "cluster" under one of them would be a disaster,
# and a state root there is a typo (KUBESIM_STATE_DIR=/ or =$HOME), not a choice.
_SYSTEM_DIRS = frozenset(
    Path(p) for p in ("/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/media", "/mnt",
                      "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin",
                      "/usr/lib", "/usr/local", "/usr/sbin", "/var", "/var/lib", "/var/tmp", "/var/log")
)


def check_cluster_name(name: str, *, what: str = "cluster name") -> str:
    """NAME if it is a valid cluster name (a DNS-1123 label); else StateInputError naming the rule."""
    problem = cluster_name_problem(name)
    if problem:
        raise StateInputError(f"{what} {problem}")
    return name


def check_state_root(root: Path | str, *, what: str = "state directory") -> Path:
    """ROOT if it can hold kubesim's state: an absolute path that is not a system directory."""
    given = str(root)
    path = Path(given)
    if not given or not path.is_absolute():
        raise StateInputError(f"{what} {given!r} is not an absolute path; set KUBESIM_STATE_DIR to one such as "
                              f"{DEFAULT_ROOT}")
    if path in _SYSTEM_DIRS or Path(os.path.realpath(path)) in _SYSTEM_DIRS:
        raise StateInputError(f"{what} {given!r} is a system directory, not a place for kubesim's state; set "
                              f"KUBESIM_STATE_DIR to a directory of its own such as {DEFAULT_ROOT}")
    return path


def state_root() -> Path:
    """The state root: $KUBESIM_STATE_DIR (checked) or /var/lib/kubesim."""
    configured = os.environ.get("KUBESIM_STATE_DIR")
    if configured is None:
        return Path(DEFAULT_ROOT)
    return check_state_root(configured, what="KUBESIM_STATE_DIR")


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of PID from /proc/PID/stat (fields 3 and 22), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], fields[19]


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of PID (field 22 of /proc/PID/stat), or None if it is gone."""
    found = _proc_stat(pid)
    return found[1] if found else None


# Z: a zombie (exited, waiting for its parent to reap it); X: dead. Neither runs anything, and neither
# holds a namespace: the kernel drops those at exit, before the parent reaps.
_DEAD_STATES = ("Z", "X", "x")


def is_running(pid: int) -> bool:
    """Whether PID exists and has not exited (a zombie has)."""
    found = _proc_stat(pid)
    return found is not None and found[0] not in _DEAD_STATES


@dataclass(frozen=True)
class RecordedProcess:
    pid: int
    start: str
    role: str
    argv: tuple[str, ...] = ()  # how to start it again (`kubesim start ROLE`)

    def alive(self) -> bool:
        """Whether this very process (pid and start time) still runs. A zombie has exited: it is dead,
        and if it is our child it is reaped here."""
        found = _proc_stat(self.pid)
        if found is None or found[1] != self.start:
            return False
        if found[0] in _DEAD_STATES:
            _reap(self.pid)
            return False
        return True

    def send_signal(self, signum: int) -> bool:
        """Send SIGNUM if this process still runs; whether it did."""
        if not self.alive():
            return False
        with _suppress_gone():
            os.kill(self.pid, signum)
        return True

    def stop(self, grace: float = 5.0) -> bool:
        """SIGTERM, wait up to GRACE seconds, then SIGKILL. Returns whether it was running."""
        return bool(stop_processes([self], grace=grace))


@contextmanager
def _suppress_gone() -> Iterator[None]:
    with suppress(ProcessLookupError):
        yield


def _reap(pid: int) -> None:
    """Collect PID if it is our child, so it does not linger as a zombie."""
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_processes(processes: list[RecordedProcess], grace: float = 5.0) -> list[RecordedProcess]:
    """Stop PROCESSES together: SIGTERM to all, one shared GRACE period for all to exit, then SIGKILL to
    whoever is left. Returns those that were running."""
    running = [p for p in processes if p.send_signal(signal.SIGTERM)]
    deadline = time.monotonic() + grace
    left = running
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if p.alive()]
    for process in left:
        process.send_signal(signal.SIGKILL)
    while left:
        left = [p for p in left if p.alive()]
        if left:
            time.sleep(0.01)
    return running


class ClusterState:
    def __init__(self, name: str, root: Path | None = None):
        self.name = check_cluster_name(name)
        self.root = state_root() if root is None else check_state_root(root)
        self.dir = self.root / self.name

    @property
    def exists(self) -> bool:
        """Whether kubesim made this cluster's state directory (it carries the marker)."""
        return _is_cluster_dir(self.dir)

    def _create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.dir.is_symlink() or (self.dir.exists() and not self.exists):
            raise StateError(f"{self.dir} exists but was not made by kubesim (no {MARKER} in it); move it away "
                             "or pick another cluster name with --name")
        self.dir.mkdir(exist_ok=True, mode=0o700)
        (self.dir / MARKER).write_text(f"kubesim cluster {self.name}\n")

    @contextmanager
    def locked(self, *, create: bool = False) -> Iterator[ClusterState]:
        """Hold the cluster's lock. The kernel drops it if we die, so a crash never wedges a cluster."""
        if create:
            self._create()
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
        """The namespaces and links the journal names, if they are this cluster's to remove: a journal
        line naming anything else (eth0, another cluster's namespace) is never acted on."""
        own = {"netns": names.cluster_prefix(self.name), "link": names.PREFIX}
        return [(e["kind"], e["name"]) for e in self.journal()
                if e.get("kind") in own and isinstance(e.get("name"), str) and e["name"].startswith(own[e["kind"]])]

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
        """The topology the cluster was built from, read with the same bounds and checks as any topology file."""
        path = self.dir / "topology.yaml"
        if not path.is_file():
            return None
        return load_topology(path)

    @property
    def phase(self) -> str:
        try:
            return (self.dir / "phase").read_text().strip()
        except FileNotFoundError:
            return "unknown"

    def set_phase(self, phase: str) -> None:
        (self.dir / "phase").write_text(phase + "\n")

    def remove(self) -> None:
        """Remove the state directory, only if it is kubesim's: a direct child of the state root (no
        symlink on the way) that carries the marker."""
        if Path(os.path.realpath(self.dir)).parent != Path(os.path.realpath(self.root)) or not self.exists:
            raise StateError(f"refusing to remove {self.dir}: it is not a cluster state directory made by kubesim "
                             f"(a directory directly in {self.root} holding {MARKER})")
        shutil.rmtree(self.dir, ignore_errors=True)


def _is_cluster_dir(path: Path) -> bool:
    return not path.is_symlink() and path.is_dir() and (path / MARKER).is_file() and not (path / MARKER).is_symlink()


def known_clusters(root: Path | None = None) -> list[str]:
    """Names of the clusters in the state root: directories with a valid name and kubesim's marker."""
    base = state_root() if root is None else check_state_root(root)
    try:
        entries = list(base.iterdir())
    except FileNotFoundError:
        return []
    return sorted(p.name for p in entries if cluster_name_problem(p.name) is None and _is_cluster_dir(p))
