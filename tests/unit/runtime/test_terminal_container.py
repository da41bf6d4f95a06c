"""A `tty: true` container's process runs on a real pseudo-terminal (no privileges needed: the test runs
the command here instead of entering a pod's namespaces): it is a terminal of 24x80, Enter typed by a raw
client (CR) ends a line, what it prints lands in the CRI log as stdout, and the end of the process ends
the output."""

from __future__ import annotations

import asyncio
from pathlib import Path

from control.kubelet.logs import LineDecoder
from control.runtime.containers import ContainerLog, ProcessContainer, make_container
from control.runtime.terminal import TerminalContainer

SCRIPT = "tty; stty size; read answer; echo got-$answer; echo oops >&2; exit 7"


class HereTerminal(TerminalContainer):
    def command_line(self) -> list[str]:
        return self.argv  # here, not in a pod's namespaces (those need root)


def test_tty_containers_get_a_terminal_and_the_others_pipes(tmp_path: Path) -> None:
    spec = {"name": "c", "image": "busybox", "command": ["sh"], "stdin": True}
    log = ContainerLog(tmp_path / "c.log")
    assert type(make_container(spec, netns="ns", hostname="h", log=log, env={})) is ProcessContainer
    assert type(make_container({**spec, "tty": True}, netns="ns", hostname="h", log=log,
                               env={})) is TerminalContainer


def test_the_process_runs_on_a_terminal_that_takes_a_raw_enter(tmp_path: Path) -> None:
    async def main() -> tuple[int | None, list[tuple[str, bytes]]]:
        log = ContainerLog(tmp_path / "c.log")
        container = HereTerminal("c", log, "ns", ["sh", "-c", SCRIPT], {}, stdin=True)
        await container.start()
        assert container.running and container.stdin is not None
        container.stdin.write(b"yes\r")  # what kubectl in raw mode sends for Enter
        await container.stdin.drain()
        await asyncio.wait_for(container.exited.wait(), 30)
        lines = LineDecoder().feed((tmp_path / "c.log").read_bytes())
        return container.exit_code, [(line.stream, line.content) for line in lines]

    code, lines = asyncio.run(main())
    assert code == 7
    assert {stream for stream, _ in lines} == {"stdout"}  # one output: stderr comes the same way
    text = b"".join(content for _, content in lines).decode()
    assert "/dev/pts/" in text and "24 80" in text
    assert "got-yes" in text and "oops" in text
    assert "yes" in text.split("got-yes")[0]  # the terminal echoed what was typed


def test_a_container_stopped_ends_its_terminal(tmp_path: Path) -> None:
    async def main() -> int | None:
        container = HereTerminal("c", ContainerLog(tmp_path / "c.log"), "ns", ["sleep", "600"], {})
        await container.start()
        assert container.stdin is None  # no `stdin: true`: nothing to write to
        await container.stop(5)
        return container.exit_code

    assert asyncio.run(main()) == 143
