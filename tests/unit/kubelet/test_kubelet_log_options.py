"""PodLogOptions on the kubelet API's containerLogs (HTTPS on loopback, a log stored in CRI's format with
known line times): timestamps, sinceSeconds and sinceTime, tailLines (and a follow going on from there),
limitBytes ending the stream, and 422/400 for options upstream's validation refuses. Also how the node
runtime stores what a container writes: one CRI line per line, its time, stream and F/P tag."""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path

import aiohttp
import pytest

from control.kubelet.logs import LogRequestError, log_options
from control.kubelet.workloads import ContainerLog, IdleContainer
from control.runtime.crilog import MAX_LINE, cri_line, parse_rfc3339, rfc3339nano
from tests.unit.kubelet.test_kubelet_log_follow import LOGS, _append, _with_kubelet

# The stored lines' times are fixed when the module is imported, which can be minutes before a test runs on a
# busy machine: the sinceSeconds tests ask for the last half hour, which holds T2 and T3 but not T1.
NOW = time.time_ns()
HOUR_AGO = NOW - 3600 * 1_000_000_000
T1, T2, T3 = HOUR_AGO, NOW - 2_000_000_000, NOW - 1_000_000_000
STORED = (cri_line("stdout", b"old", ns=T1) + cri_line("stderr", b"two", ns=T2)
          + cri_line("stdout", b"thr", ns=T3, partial=True) + cri_line("stdout", b"ee", ns=T3))


def _stamp(ns: int) -> bytes:
    return rfc3339nano(ns).encode() + b" "


async def _get(url: str, context: ssl.SSLContext, params: dict[str, str]) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, \
            session.get(url + LOGS, params=params, ssl=context) as response:
        return response.status, await response.read()


def _run(tmp_path: Path, params: dict[str, str]) -> tuple[int, bytes]:
    result: list[tuple[int, bytes]] = []

    async def test(url: str, context: ssl.SSLContext, container: IdleContainer, log: Path) -> None:
        log.write_bytes(STORED)
        result.append(await _get(url, context, params))

    asyncio.run(_with_kubelet(tmp_path, test))
    return result[0]


def test_the_whole_log_is_both_streams_with_partial_lines_joined(tmp_path: Path) -> None:
    assert _run(tmp_path, {}) == (200, b"old\ntwo\nthree\n")


def test_timestamps_prefix_each_stored_line_with_its_time(tmp_path: Path) -> None:
    # tailLines counts stored lines, as upstream's: a line stored in two parts is two
    assert _run(tmp_path, {"timestamps": "true", "tailLines": "3"}) == (
        200, _stamp(T2) + b"two\n" + _stamp(T3) + b"thr" + _stamp(T3) + b"ee\n")


def test_since_seconds_keeps_the_lines_written_since(tmp_path: Path) -> None:
    assert _run(tmp_path, {"sinceSeconds": "1800"}) == (200, b"two\nthree\n")


def test_since_time_keeps_the_lines_written_at_or_after_it(tmp_path: Path) -> None:
    assert _run(tmp_path, {"sinceTime": rfc3339nano(T2)}) == (200, b"two\nthree\n")
    assert _run(tmp_path / "later", {"sinceTime": rfc3339nano(T2 + 1)}) == (200, b"three\n")


def test_tail_lines_zero_is_nothing_and_more_than_there_are_is_all(tmp_path: Path) -> None:
    assert _run(tmp_path, {"tailLines": "0"}) == (200, b"")
    assert _run(tmp_path / "all", {"tailLines": "9"}) == (200, b"old\ntwo\nthree\n")


def test_limit_bytes_caps_what_is_sent_timestamps_included(tmp_path: Path) -> None:
    assert _run(tmp_path, {"limitBytes": "6"}) == (200, b"old\ntw")
    stamped = _stamp(T1) + b"old\n"
    assert _run(tmp_path / "t", {"limitBytes": str(len(stamped) + 1), "timestamps": "1"}) == (200, stamped + b"2")


@pytest.mark.parametrize(("params", "code", "words"), [
    ({"sinceSeconds": "5", "sinceTime": "2026-01-01T00:00:00Z"}, 422, "at most one of `sinceTime` or `sinceSeconds`"),
    ({"sinceSeconds": "0"}, 422, "sinceSeconds: Invalid value: 0: must be greater than 0"),
    ({"tailLines": "-1"}, 422, "tailLines: Invalid value: -1: must be greater than or equal to 0"),
    ({"limitBytes": "0"}, 422, "limitBytes: Invalid value: 0: must be greater than 0"),
    ({"sinceTime": "an hour ago"}, 400, "sinceTime: Invalid value: 'an hour ago': must be an RFC3339 time"),
    ({"tailLines": "two"}, 400, "tailLines: Invalid value: 'two': must be an integer"),
])
def test_options_upstream_refuses_are_refused_naming_the_field(tmp_path: Path, params: dict[str, str], code: int,
                                                               words: str) -> None:
    status, body = _run(tmp_path, params)
    assert status == code and words in body.decode()


def test_a_follow_goes_on_from_the_tail_with_the_options_applied(tmp_path: Path) -> None:
    async def test(url: str, context: ssl.SSLContext, container: IdleContainer, log: Path) -> None:
        log.write_bytes(STORED)
        params = {"follow": "true", "tailLines": "2", "timestamps": "true"}
        async with aiohttp.ClientSession() as session, \
                session.get(url + LOGS, params=params, ssl=context) as response:
            assert await response.content.readline() == _stamp(T3) + b"thr" + _stamp(T3) + b"ee\n"
            t4 = time.time_ns()
            _append(log, cri_line("stderr", b"four", ns=t4))
            assert await response.content.readline() == _stamp(t4) + b"four\n"
            await container.stop(0)
            assert await response.read() == b""

    asyncio.run(_with_kubelet(tmp_path, test))


def test_a_follow_ends_when_limit_bytes_are_spent(tmp_path: Path) -> None:
    async def test(url: str, context: ssl.SSLContext, container: IdleContainer, log: Path) -> None:
        log.write_bytes(STORED)
        params = {"follow": "true", "sinceSeconds": "1800", "limitBytes": "12"}
        async with aiohttp.ClientSession() as session, \
                session.get(url + LOGS, params=params, ssl=context) as response:
            assert await response.content.readexactly(10) == b"two\nthree\n"
            _append(log, cri_line("stdout", b"four", ns=time.time_ns()))
            assert await response.read() == b"fo"  # then the end, the container still running
            assert container.running

    asyncio.run(_with_kubelet(tmp_path, test))


def test_since_seconds_counts_back_from_now() -> None:
    assert log_options({"sinceSeconds": "10"}, now_ns=NOW).since_ns == NOW - 10_000_000_000
    with pytest.raises(LogRequestError) as refused:
        log_options({"limitBytes": "0", "sinceSeconds": "0"})
    message = refused.value.message
    assert refused.value.code == 422 and "limitBytes" in message and "sinceSeconds" in message


def test_rfc3339_times_read_back_to_the_nanosecond_as_go_writes_them() -> None:
    assert rfc3339nano(1475713029_669794202) == "2016-10-06T00:17:09.669794202Z"
    assert rfc3339nano(1475713029_500000000) == "2016-10-06T00:17:09.5Z"
    assert rfc3339nano(1475713029_000000000) == "2016-10-06T00:17:09Z"
    assert parse_rfc3339("2016-10-06T00:17:09.669794202Z") == 1475713029_669794202
    assert parse_rfc3339("2016-10-06T02:17:09.5+02:00") == 1475713029_500000000
    for bad in ("2016-10-06 00:17:09Z", "2016-13-06T00:17:09Z", "2016-10-06T00:17:09"):
        with pytest.raises(ValueError):
            parse_rfc3339(bad)


def test_the_runtime_stores_each_line_a_container_writes_in_cri_format(tmp_path: Path) -> None:
    log = ContainerLog(tmp_path / "app.log")

    async def pump() -> None:
        reader = asyncio.StreamReader()
        pumping = asyncio.get_running_loop().create_task(log.pump("stderr", reader))
        for chunk in (b"hel", b"lo\nwor", b"ld\n" + b"x" * (MAX_LINE + 1), b"\n", b"no newline"):
            reader.feed_data(chunk)
            while len(reader._buffer):  # each chunk read on its own, as a pipe delivers writes
                await asyncio.sleep(0)
        reader.feed_eof()
        await pumping

    before = time.time_ns()
    asyncio.run(pump())
    log.write("a built-in's own line")
    stored = (tmp_path / "app.log").read_bytes().splitlines()
    fields = [line.split(b" ", 3) for line in stored]
    assert [(f[1], f[2], f[3]) for f in fields] == [
        (b"stderr", b"F", b"hello"), (b"stderr", b"F", b"world"), (b"stderr", b"P", b"x" * MAX_LINE),
        (b"stderr", b"F", b"x"), (b"stderr", b"P", b"no newline"), (b"stdout", b"F", b"a built-in's own line")]
    times = [parse_rfc3339(f[0].decode()) for f in fields]
    assert times == sorted(times) and times[0] >= before
