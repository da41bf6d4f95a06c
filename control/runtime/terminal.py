"""A process container with `tty: true`: its stdin, stdout and stderr are one pseudo-terminal that the
runtime holds the other end of, as containerd's shim does for a tty container. So the shell that
`kubectl debug -it` (or `kubectl attach -it`) reaches is interactive: it echoes, Enter ends a line (the
terminal turns the CR a raw client sends into NL), isatty() is true, and `stty size` has an answer
(80x24 until a client attached with a terminal resizes it: resize()).

What the terminal prints is stored as stdout lines of the container's log (a terminal has one output),
in CRI's format like every other container's output; attach and logs read it from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import struct
import termios

from control.runtime.containers import ContainerError, ProcessContainer, now_rfc3339
from control.runtime.crilog import LineSplitter

ROWS, COLUMNS = 24, 80
_READ = 65536

__all__ = ["TerminalContainer"]


def _take_terminal() -> None:
    """In the child, after setsid: its stdin (the terminal) becomes its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class TerminalContainer(ProcessContainer):
    """A ProcessContainer on a pseudo-terminal (see the module's docstring)."""

    _writer: asyncio.StreamWriter | None = None
    _master = -1  # the terminal's end the runtime holds, while it is open

    async def start(self) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        try:
            self.process = await asyncio.create_subprocess_exec(
                *self.command_line(), stdin=slave, stdout=slave, stderr=slave, env=self.environment(),
                start_new_session=True, preexec_fn=_take_terminal)
        except OSError as exc:
            os.close(master)
            raise ContainerError("StartError", f"failed to start {self.argv[0]!r}: {exc.strerror}") from None
        finally:
            os.close(slave)  # the child's now: the terminal ends (EIO on the master) when its last user does
        os.set_blocking(master, False)
        self._master = master
        loop = asyncio.get_running_loop()
        if self.keeps_stdin:
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, os.fdopen(os.dup(master), "wb", buffering=0))
            self._writer = asyncio.StreamWriter(transport, protocol, None, loop)
        self._pumps = [loop.create_task(self._copy_output(master))]
        self.started_at = now_rfc3339()
        self._waiter = loop.create_task(self._wait())

    async def _copy_output(self, master: int) -> None:
        """What the terminal prints, into the log, until its last user is gone; then the master is closed."""
        loop = asyncio.get_running_loop()
        splitter = LineSplitter()
        readable = asyncio.Event()
        loop.add_reader(master, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    chunk = os.read(master, _READ)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: nothing holds the terminal any more
                    break
                if not chunk:
                    break
                self.log.append("stdout", splitter.feed(chunk))
        finally:
            loop.remove_reader(master)
            self.log.append("stdout", splitter.close())
            if self._writer is not None:
                self._writer.close()
            self._master = -1
            with contextlib.suppress(OSError):
                os.close(master)

    @property
    def stdin(self) -> asyncio.StreamWriter | None:
        return self._writer

    def resize(self, width: int, height: int) -> None:
        """The terminal sized WIDTH x HEIGHT, as an attached client's terminal is (the kernel tells the
        foreground process group with SIGWINCH); nothing once the terminal is gone."""
        if self._master >= 0:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

