"""Container usage from /proc accounting of a session and from cgroup v1 / v2 counters, on file trees
laid out as the kernel lays them out; and one real busy process measured from the real /proc."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from control.runtime.stats import (
    SOURCE_BUILTIN,
    SOURCE_CGROUP_V1,
    SOURCE_CGROUP_V2,
    SOURCE_PROC,
    Usage,
    cgroup_of,
    cgroup_usage,
    container_stats,
    proc_usage,
    usage_of_session,
)

TICK = os.sysconf("SC_CLK_TCK")


def _process(proc: Path, pid: int, session: int, ticks: tuple[int, int, int, int], pss_kb: int,
             cgroup: str = "0::/\n", command: str = "sh") -> None:
    d = proc / str(pid)
    d.mkdir(parents=True)
    utime, stime, cutime, cstime = ticks
    # fields 3.. of proc(5): state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime ...
    d.joinpath("stat").write_text(f"{pid} ({command}) S 1 {session} {session} 0 -1 0 0 0 0 0 "
                                  f"{utime} {stime} {cutime} {cstime} 20 0 1 0 0 0 0\n")
    d.joinpath("smaps_rollup").write_text(f"00400000-ffff ---p 00000000 00:00 0 [rollup]\nRss: 9999 kB\n"
                                          f"Pss: {pss_kb} kB\n")
    d.joinpath("cgroup").write_text(cgroup)


def test_a_session_is_the_sum_of_its_processes_and_what_they_reaped(tmp_path: Path) -> None:
    _process(tmp_path, 100, 100, (TICK, 0, TICK, 0), 10)  # the leader, and a child it reaped
    _process(tmp_path, 101, 100, (0, TICK, 0, 0), 5, command="while (x) :")  # a live child: ')' in its name
    _process(tmp_path, 200, 200, (50 * TICK, 0, 0, 0), 1000)  # another container's
    (tmp_path / "self").mkdir()
    assert proc_usage(100, tmp_path) == Usage(3_000_000_000, 15 * 1024, SOURCE_PROC)
    assert proc_usage(300, tmp_path) is None


def _cgroup_files(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        directory.joinpath(name).write_text(text)


def test_cgroup_v2_counters_less_inactive_file(tmp_path: Path) -> None:
    _cgroup_files(tmp_path / "kubesim" / "c1", {"cpu.stat": "usage_usec 2500000\nuser_usec 2000000\n",
                                                "memory.current": "1048576\n",
                                                "memory.stat": "anon 500000\ninactive_file 48576\n"})
    assert cgroup_usage({"": "/kubesim/c1"}, tmp_path) == Usage(2_500_000_000, 1_000_000, SOURCE_CGROUP_V2)


def test_cgroup_v1_counters_with_cpu_and_cpuacct_joined(tmp_path: Path) -> None:
    _cgroup_files(tmp_path / "cpu,cpuacct" / "kubesim" / "c1", {"cpuacct.usage": "7000000000\n"})
    _cgroup_files(tmp_path / "memory" / "kubesim" / "c1", {"memory.usage_in_bytes": "3000\n",
                                                            "memory.stat": "cache 10\ntotal_inactive_file 1000\n"})
    groups = {"cpu": "/kubesim/c1", "cpuacct": "/kubesim/c1", "memory": "/kubesim/c1", "": "/"}
    # the unified hierarchy ("0::/") of a hybrid machine has no cpu.stat here: v1 is read
    assert cgroup_usage(groups, tmp_path) == Usage(7_000_000_000, 2000, SOURCE_CGROUP_V1)
    assert cgroup_usage({"memory": "/x"}, tmp_path) is None


def test_cgroup_lines_name_each_controller(tmp_path: Path) -> None:
    _process(tmp_path, 7, 7, (0, 0, 0, 0), 1, cgroup="4:cpu,cpuacct:/a\n3:memory:/b\n1:name=systemd:/\n0::/c\n")
    assert cgroup_of(7, tmp_path) == {"cpu": "/a", "cpuacct": "/a", "memory": "/b", "name=systemd": "/", "": "/c"}


def test_a_cgroup_of_its_own_is_read_and_a_shared_one_is_not(tmp_path: Path) -> None:
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    _process(proc, 1, 1, (0, 0, 0, 0), 1, cgroup="0::/runtime\n")  # the runtime
    _process(proc, 10, 10, (TICK, 0, 0, 0), 4, cgroup="0::/runtime\n")
    _process(proc, 20, 20, (TICK, 0, 0, 0), 4, cgroup="0::/pod/c\n")
    _cgroup_files(root / "pod" / "c", {"cpu.stat": "usage_usec 9\n", "memory.current": "8192\n", "memory.stat": ""})
    assert usage_of_session(10, proc=proc, cgroup_root=root, own_pid=1) == Usage(1_000_000_000, 4096, SOURCE_PROC)
    assert usage_of_session(20, proc=proc, cgroup_root=root, own_pid=1) == Usage(9000, 8192, SOURCE_CGROUP_V2)


def test_a_busy_process_measures_more_than_an_idle_one_and_builtins_are_marked() -> None:
    busy = subprocess.Popen(["sh", "-c", "while :; do :; done"], start_new_session=True)
    idle = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        # wait for work, not for time: until the busy one has used a tenth of a CPU second
        deadline = time.monotonic() + 30
        while (usage_of_session(busy.pid) or Usage(0, 0, "")).cpu_nanoseconds < 100_000_000:
            assert time.monotonic() < deadline, "the busy loop never ran"
            time.sleep(0.05)
        stats = container_stats([("busy", busy.pid), ("idle", idle.pid), ("web", None)])
        assert stats["busy"]["cpu"]["usageCoreNanoSeconds"] > stats["idle"]["cpu"]["usageCoreNanoSeconds"]
        assert stats["busy"]["memory"]["workingSetBytes"] > 0 and stats["busy"]["source"] == SOURCE_PROC
        assert stats["web"]["source"] == SOURCE_BUILTIN and stats["web"]["cpu"]["usageCoreNanoSeconds"] == 0
    finally:
        for process in (busy, idle):
            process.kill()
            process.wait()
