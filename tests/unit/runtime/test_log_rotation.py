"""A container's CRI log capped as upstream's containerLogMaxSize / containerLogMaxFiles cap it: the
runtime rotates before a write would pass the size, keeps at most the files asked for, and the
kubelet's reader reads across the rotated files for tailLines, sinceTime and follow."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from control.kubelet import streaming
from control.kubelet.logs import LineDecoder, LogOptions, read_log
from control.runtime.containers import ContainerLog
from control.runtime.crilog import cri_line, log_files, parse_rfc3339, retire

#: a time written with all nine fraction digits: a stored line is at most this long (Go's RFC3339Nano drops
#: trailing zeros, so a line written at another time may be up to ten bytes shorter, never longer)
LONGEST = 1_800_000_000_123_456_789


def _write(log: ContainerLog, first: int, count: int) -> None:
    for i in range(first, first + count):
        log.append("stdout", [(f"line {i:04d}".encode(), False)])


def test_the_log_is_rotated_before_it_passes_its_size_and_keeps_at_most_its_files(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    one = len(cri_line("stdout", b"line 0000", ns=LONGEST))
    log = ContainerLog(path, max_size=10 * one, max_files=3)
    _write(log, 0, 25)
    assert log_files(path) == [f"{path}.2", f"{path}.1", str(path)]
    # a line's length varies by a byte or so with its time's digits: each file under the size, not exact
    assert all(0 < Path(f).stat().st_size <= 10 * one for f in log_files(path))
    data, _ = read_log(path, LogOptions())
    assert data.decode().split("\n")[:-1] == [f"line {i:04d}" for i in range(25)]
    _write(log, 25, 10)  # another rotation: the oldest file is gone
    assert log_files(path) == [f"{path}.2", f"{path}.1", str(path)]
    data, _ = read_log(path, LogOptions())
    kept = [int(line.split()[1]) for line in data.decode().split("\n")[:-1]]
    assert kept == list(range(kept[0], 35)) and 5 <= kept[0] <= 15
    assert not Path(f"{path}.3").exists()


def test_tail_and_since_read_across_the_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    one = len(cri_line("stdout", b"line 0000", ns=LONGEST))
    log = ContainerLog(path, max_size=4 * one, max_files=5)
    _write(log, 0, 5)
    between = time.time_ns()
    while time.time_ns() == between:  # the next line's time is later than this
        pass
    _write(log, 5, 7)
    assert len(log_files(path)) == 3
    tail, _ = read_log(path, LogOptions(tail=6))
    assert tail.decode().split("\n")[:-1] == [f"line {i:04d}" for i in range(6, 12)]
    since, _ = read_log(path, LogOptions(since_ns=between + 1, timestamps=True))
    stamped = since.decode().split("\n")[:-1]
    assert [line.split(" ", 1)[1] for line in stamped] == [f"line {i:04d}" for i in range(5, 12)]
    assert all(parse_rfc3339(line.split(" ", 1)[0]) > between for line in stamped)


def test_a_follower_reads_on_across_a_rotation_each_line_once(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    one = len(cri_line("stdout", b"line 0000", ns=LONGEST))
    log = ContainerLog(path, max_size=3 * one, max_files=20)  # every file kept, however far it falls behind
    _write(log, 0, 2)
    done = [False]

    async def main() -> list[str]:
        got: list[str] = []
        decoder = LineDecoder()

        async def follow() -> None:
            async for chunk in streaming.follow_file(path, 0, lambda: done[0], interval=0.01):
                got.extend(line.content.decode().strip() for line in decoder.feed(chunk))

        follower = asyncio.ensure_future(follow())
        for i in range(2, 11):  # rotations while it follows, with it reading between them or not
            _write(log, i, 1)
            await asyncio.sleep(0.01 * (i % 3))
        done[0] = True
        await asyncio.wait_for(follower, 10)
        return got

    got = asyncio.run(main())
    assert got == [f"line {i:04d}" for i in range(11)]
    assert len(log_files(path)) >= 4


def test_a_previous_instance_takes_its_rotated_files_with_it(tmp_path: Path) -> None:
    path, previous = tmp_path / "app.log", tmp_path / "app.previous.log"
    one = len(cri_line("stdout", b"line 0000", ns=LONGEST))
    _write(ContainerLog(previous, max_size=one, max_files=5), 0, 4)  # an older previous instance: replaced
    _write(ContainerLog(path, max_size=2 * one, max_files=5), 100, 5)
    retire(path, previous)
    assert log_files(path) == [str(path)] and not path.exists()
    data, _ = read_log(previous, LogOptions())
    assert data.decode().split("\n")[:-1] == [f"line {i:04d}" for i in range(100, 105)]


def test_caps_that_cannot_hold_a_log_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2 files"):
        ContainerLog(tmp_path / "app.log", max_size=1024, max_files=1)
    with pytest.raises(ValueError, match="max size must be positive"):
        ContainerLog(tmp_path / "app.log", max_size=0, max_files=5)
