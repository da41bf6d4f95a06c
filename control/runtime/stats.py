"""Per-container CPU and memory, measured as CRI's ListContainerStats reports them: cumulative CPU time
(usageCoreNanoSeconds) and the memory working set (workingSetBytes).

Where a container's process lives in a cgroup of its own, the cgroup's counters are read, as
containerd reads them: cgroup v2 (cpu.stat usage_usec; memory.current less memory.stat's
inactive_file) or v1 (cpuacct.usage; memory.usage_in_bytes less total_inactive_file). kubesim's
runtime does not make cgroups today (they are the machine's, outside any namespace the cluster owns,
and a crashed runtime would leave them behind), so a container's process shares the runtime's cgroup;
then its usage comes from /proc accounting of the processes of its session (each process container
is started in a session of its own, which its children inherit): user + system time of the live
ones and of the children they have reaped, and the proportional set size (Pss) of their memory, so
that pages shared between them count once.

A built-in workload (agnhost netexec, nginx, pause) is served by the runtime process itself and has
no process to measure: it is reported with source "builtin" and zero usage, which is what it adds
beyond the runtime's own usage (that is counted in the node's).

    usage_of_session(pid) -> Usage | None     None: the process is gone
    container_stats([(id, pid)]) -> {id: ListContainerStats' item}   one pass over /proc for all
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE_CGROUP_V2 = "cgroup-v2"
SOURCE_CGROUP_V1 = "cgroup-v1"
SOURCE_PROC = "proc"
SOURCE_BUILTIN = "builtin"

#: /proc/PID/stat fields (1-based, as proc(5) numbers them) after the command's closing parenthesis
_SESSION, _UTIME, _STIME, _CUTIME, _CSTIME = 6, 14, 15, 16, 17


@dataclass(frozen=True)
class Usage:
    cpu_nanoseconds: int
    memory_working_set_bytes: int
    source: str


def _stat_fields(text: str) -> list[str]:
    """The fields of a /proc/PID/stat line, numbered from 1: the command (field 2) may hold spaces
    and parentheses, so the split starts after its last ')'."""
    close = text.rfind(")")
    head = text[:text.find("(")].strip()
    return [head, text[text.find("(") + 1:close], *text[close + 1:].split()]


def sessions(proc: Path = Path("/proc")) -> dict[int, dict[int, list[str]]]:
    """session -> pid -> stat fields of every live process, from one pass over PROC."""
    found: dict[int, dict[int, list[str]]] = {}
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields((proc / entry.name / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue  # it ended while we looked
        if len(fields) > _CSTIME and fields[_SESSION - 1].isdigit():
            found.setdefault(int(fields[_SESSION - 1]), {})[int(entry.name)] = fields
    return found


def _pss_bytes(pid: int, proc: Path) -> int:
    """The process' proportional set size (smaps_rollup), or its RSS where that file is missing."""
    try:
        for line in (proc / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    try:
        return int((proc / str(pid) / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError, ValueError):
        return 0


def proc_usage(session: int, proc: Path = Path("/proc"),
               snapshot: dict[int, dict[int, list[str]]] | None = None) -> Usage | None:
    """/proc accounting of SESSION's processes (from SNAPSHOT, sessions()' answer, when given: one pass
    over /proc for many containers), or None when none is left."""
    members = (snapshot if snapshot is not None else sessions(proc)).get(session)
    if not members:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_ticks = sum(int(f[i - 1]) for f in members.values() for i in (_UTIME, _STIME, _CUTIME, _CSTIME))
    memory = sum(_pss_bytes(pid, proc) for pid in members)
    return Usage(cpu_ticks * 1_000_000_000 // ticks, memory, SOURCE_PROC)


def cgroup_of(pid: int, proc: Path = Path("/proc")) -> dict[str, str]:
    """controller (or "" for the v2 unified hierarchy) -> the process' cgroup path, from /proc/PID/cgroup."""
    found: dict[str, str] = {}
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return found
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        controllers = parts[1].split(",") if parts[1] else [""]
        for controller in controllers:
            found[controller] = parts[2]
    return found


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, PermissionError, IndexError, ValueError):
        return None


def _stat_value(path: Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (FileNotFoundError, PermissionError, ValueError):
        pass
    return 0


def cgroup_usage(cgroups: dict[str, str], root: Path = Path("/sys/fs/cgroup")) -> Usage | None:
    """The counters of the cgroups CGROUPS names (cgroup_of's answer), or None when they cannot be read.
    v2 where the unified hierarchy has the cpu and memory controllers, else v1's cpuacct and memory."""
    unified = cgroups.get("")
    if unified is not None:
        # a v2-only machine mounts the hierarchy at the root; a hybrid one under "unified"
        for base in (root, root / "unified"):
            here = base / unified.lstrip("/")
            usage_usec = _stat_value(here / "cpu.stat", "usage_usec") if (here / "cpu.stat").exists() else None
            current = _read_int(here / "memory.current")
            if usage_usec is not None and current is not None:
                working = max(0, current - _stat_value(here / "memory.stat", "inactive_file"))
                return Usage(usage_usec * 1000, working, SOURCE_CGROUP_V2)
    cpu_path, memory_path = cgroups.get("cpuacct"), cgroups.get("memory")
    if cpu_path is None or memory_path is None:
        return None
    # v1 mounts cpuacct alone or joined with cpu ("cpu,cpuacct"), depending on the distribution
    for cpu_dir in ("cpuacct", "cpu,cpuacct", "cpuacct,cpu"):
        nanoseconds = _read_int(root / cpu_dir / cpu_path.lstrip("/") / "cpuacct.usage")
        if nanoseconds is not None:
            break
    else:
        return None
    memory_dir = root / "memory" / memory_path.lstrip("/")
    usage = _read_int(memory_dir / "memory.usage_in_bytes")
    if usage is None:
        return None
    working = max(0, usage - _stat_value(memory_dir / "memory.stat", "total_inactive_file"))
    return Usage(nanoseconds, working, SOURCE_CGROUP_V1)


def usage_of_session(pid: int, *, proc: Path = Path("/proc"), cgroup_root: Path = Path("/sys/fs/cgroup"),
                     own_pid: int | None = None, snapshot: dict[int, dict[int, list[str]]] | None = None
                     ) -> Usage | None:
    """The usage of the container whose first process is PID (a session leader): its cgroup's counters
    when it has a cgroup of its own (not OWN_PID's, the runtime's), else /proc accounting (of SNAPSHOT)."""
    mine = cgroup_of(os.getpid() if own_pid is None else own_pid, proc)
    theirs = cgroup_of(pid, proc)
    if theirs and theirs != mine:
        measured = cgroup_usage(theirs, cgroup_root)
        if measured is not None:
            return measured
    return proc_usage(pid, proc, snapshot)


def stats_entry(usage: Usage | None, timestamp_ns: int) -> dict[str, Any]:
    """One container's item of ListContainerStats (CRI's ContainerStats, JSON-shaped): usage 0 and source
    "builtin" for a container without a process."""
    usage = usage or Usage(0, 0, SOURCE_BUILTIN)
    return {"timestamp": timestamp_ns, "source": usage.source,
            "cpu": {"timestamp": timestamp_ns, "usageCoreNanoSeconds": usage.cpu_nanoseconds},
            "memory": {"timestamp": timestamp_ns, "workingSetBytes": usage.memory_working_set_bytes}}


def container_stats(containers: list[tuple[str, int | None]]) -> dict[str, dict[str, Any]]:
    """id -> stats_entry of each (id, pid) of CONTAINERS: a pid of None is a built-in workload's. A process
    container whose process has just ended reads as usage 0 from /proc (nothing of it is left)."""
    found: dict[str, dict[str, Any]] = {}
    snapshot = sessions() if any(pid is not None for _, pid in containers) else {}
    for container_id, pid in containers:
        usage = None
        if pid is not None:
            usage = usage_of_session(pid, snapshot=snapshot) or Usage(0, 0, SOURCE_PROC)
        found[container_id] = stats_entry(usage, time.time_ns())
    return found
