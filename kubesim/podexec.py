"""`kubesim exec POD -- CMD`: a command in a pod's container through the apiserver (pods/exec over
WebSocket, control.client.exec_in_pod), with this terminal's ends: stdin with -i, a raw-mode terminal
that follows this one's size with -t, and the command's exit code as ours."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import termios
import threading
import tty as ttymode
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from control.client import ExecIO, exec_in_pod, load_kubeconfig

READ_CHUNK = 32 * 1024


async def _stdin() -> AsyncIterator[bytes]:
    """This process' stdin, chunk by chunk until its end. A daemon thread reads it: a read blocked on a
    terminal must not keep the process from exiting when the command ends first."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                chunk = os.read(0, READ_CHUNK)
            except OSError:
                chunk = b""
            loop.call_soon_threadsafe(queue.put_nowait, chunk)
            if not chunk:
                return

    threading.Thread(target=read, name="stdin", daemon=True).start()
    while chunk := await queue.get():
        yield chunk


async def _sizes() -> AsyncIterator[tuple[int, int]]:
    """This terminal's size now, then each time it changes (SIGWINCH)."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    loop.add_signal_handler(signal.SIGWINCH, changed.set)
    try:
        while True:
            with contextlib.suppress(OSError):
                size = os.get_terminal_size(sys.stdout.fileno())
                yield size.columns, size.lines
            await changed.wait()
            changed.clear()
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)


@contextlib.contextmanager
def _raw_terminal(wanted: bool) -> Iterator[None]:
    """stdin in raw mode while the command owns the terminal (keys go to it as typed), restored after."""
    if not (wanted and sys.stdin.isatty()):
        yield
        return
    saved = termios.tcgetattr(0)
    ttymode.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _writer(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    return write


def run_in_pod(kubeconfig: Path, namespace: str, pod: str, command: list[str], *, container: str | None = None,
               stdin: bool = False, tty: bool = False) -> int:
    """Run COMMAND in POD and return its exit code; control.client's errors for a refused session."""
    terminal = tty and sys.stdout.isatty()

    async def main() -> int:
        async with load_kubeconfig(kubeconfig) as client:
            io = ExecIO(stdin=_stdin() if stdin else None, stdout=_writer(1), stderr=_writer(2),
                        sizes=_sizes() if terminal else None)
            return await exec_in_pod(client, namespace, pod, command, container=container, io=io, tty=terminal)

    with _raw_terminal(terminal and stdin):
        return asyncio.run(main())
