"""Pod places made by a small helper process (namespaces.create_pod_place, run elsewhere).

A place's set-up runs in a forked child (netsim.namespaces), and fork(2) costs the process that forks in
proportion to its memory: the node runtime (~50 MB, four threads) stalled every thread for several
milliseconds a pod while the kernel copied its page tables, and the child paid copy-on-write faults on
top. So each process that makes places starts one helper, a fresh interpreter that imports only the
standard library and netsim's namespace code (~12 MB), and asks it: the helper forks, the child sets the
place up, the helper pins it, exactly as create_pod_place does in-process.

    maker = PlaceMaker()                       # per process; the helper starts on first use
    maker.make(netns, setup_arguments(place))  # raises NamespaceError in create_pod_place's words

One request at a time (a lock): a place takes a few milliseconds, and callers on several threads queue.
The helper ends with the process that started it (PR_SET_PDEATHSIG); one that died, or missed a
deadline, is ended and started again by the next request.

Run as a program (what PlaceMaker starts): ``python -I -S placemaker.py FD ROOT``, FD a SOCK_SEQPACKET
socket to serve, ROOT the directory holding the netsim package.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

_MESSAGE_MAX = 1 << 20  # a request carries a place's set-up arguments: paths, well under this
_GRACE = 5.0  # seconds the helper gets beyond the set-up's own timeout before it is taken for dead


class PlaceMaker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._helper: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._pid = os.getpid()

    def make(self, name: str, setup_argv: list[str], *, timeout: float = 30.0) -> None:
        """create_pod_place(NAME, the set-up of SETUP_ARGV) in the helper: NamespaceError on failure."""
        from netsim.errors import NamespaceError

        request = json.dumps({"name": name, "argv": setup_argv, "timeout": timeout}).encode()
        with self._lock:
            sock = self._connected()
            try:
                sock.settimeout(timeout + _GRACE)
                sock.send(request)
                answer = sock.recv(_MESSAGE_MAX)
            except OSError as exc:  # a timeout too: the helper is stuck, or gone
                self._stop()
                raise NamespaceError(f"setting up the pod namespaces of {name}: the place helper did not "
                                     f"answer ({exc or type(exc).__name__}); it is started again") from None
            if not answer:
                self._stop()
                raise NamespaceError(f"setting up the pod namespaces of {name}: the place helper ended; "
                                     "it is started again")
        said = answer.decode(errors="replace")
        if said != "ok":
            raise NamespaceError(said)

    def close(self) -> None:
        with self._lock:
            self._stop()

    @property
    def helper_pid(self) -> int | None:
        """The running helper's pid (benchmarks read its CPU time), None before the first place."""
        helper = self._helper
        return helper.pid if helper is not None and helper.poll() is None else None

    def _connected(self) -> socket.socket:
        if self._pid != os.getpid():  # a forked copy of the process that started the helper: not ours
            self._helper, self._socket, self._pid = None, None, os.getpid()
        if self._socket is not None and self._helper is not None and self._helper.poll() is None:
            return self._socket
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            root = str(Path(__file__).resolve().parent.parent)
            self._helper = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(__file__).resolve()), str(theirs.fileno()), root],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._socket = ours
        return ours

    def _stop(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._helper is not None:
            if self._helper.poll() is None:
                self._helper.kill()  # by its pid, ours: its set-up children go with it (their death signal)
            self._helper.wait()
            self._helper = None


def _serve(fd: int) -> None:
    from functools import partial

    from netsim import _podsetup, namespaces

    sock = socket.socket(fileno=fd)
    while True:
        request = sock.recv(_MESSAGE_MAX)
        if not request:
            return  # the process that started us closed its end
        try:
            asked = json.loads(request)
            namespaces.create_pod_place(str(asked["name"]), partial(_podsetup.main, [str(a) for a in asked["argv"]]),
                                        timeout=float(asked["timeout"]))
            said = "ok"
        except Exception as exc:  # every failure goes back, in create_pod_place's words
            said = str(exc) or type(exc).__name__
        sock.send(said.encode()[:_MESSAGE_MAX])


def _main(argv: list[str]) -> None:
    fd, root = int(argv[1]), argv[2]
    parent = os.getppid()
    sys.path.insert(0, root)
    from netsim import namespaces

    # Ended with the process that started us (and our set-up children with us: theirs is ours).
    if not namespaces.die_with_parent(parent):
        sys.exit(1)
    _serve(fd)


if __name__ == "__main__":
    _main(sys.argv)
