"""Named network namespaces, made and entered in-process.

``ip netns add`` costs a process and ~3.5 ms; the same work done here through unshare(2), a bind
mount and setns(2) costs ~1 ms. Namespaces are per *thread* in Linux, so ``entered(name)`` switches
only the calling thread and always switches back. Sockets keep the namespace they were created in,
which is how a netlink socket "lives" inside a node or pod namespace while we use it from here.

The names are files under /run/netns, exactly where iproute2 keeps them, so ``ip netns`` and
``ip netns exec`` see ours and we see theirs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from netsim.errors import NamespaceError

NETNS_DIR = "/run/netns"
_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
# One namespace switch at a time per thread is the rule; the lock keeps two of our own threads from
# interleaving unshare/mount steps on the same name.
_lock = threading.RLock()


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise NamespaceError(f"{what}: {os.strerror(code)}")


def path_of(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def command_in(name: str, argv: list[str]) -> list[str]:
    """ARGV run inside network namespace NAME, as a command line: nsenter switches only the network
    namespace, so the process shares the mount namespace (and sees every /run/netns pin); `ip netns
    exec` would also give it a mount namespace and /sys of its own."""
    return ["nsenter", f"--net={path_of(name)}", "--", *argv]


def exists(name: str) -> bool:
    return os.path.exists(path_of(name))


def list_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def create(name: str) -> None:
    """Make a new network namespace and pin it at /run/netns/NAME (like ``ip netns add``)."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    target = path_of(name)
    with _lock:
        try:
            fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            raise NamespaceError(f"network namespace {name!r} already exists") from None
        # All or nothing: whatever stops us once the pin file exists (an error, or a Ctrl-C landing
        # between two of the calls below) removes it, or a half-made name is left that nobody recorded.
        try:
            os.close(fd)
            _pin_new_namespace(name, target)
        except BaseException:
            _unpin(target)
            raise


def _pin_new_namespace(name: str, target: str) -> None:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        # The way back is set up before the thread leaves: nothing may strand it in the new namespace.
        try:
            _check(_libc.unshare(_CLONE_NEWNET), f"creating network namespace {name!r}")
            _check(
                _libc.mount(b"/proc/thread-self/ns/net", target.encode(), b"none", _MS_BIND, None),
                f"pinning network namespace {name!r}",
            )
        finally:
            _check(_libc.setns(home, _CLONE_NEWNET), "returning to the original network namespace")
    finally:
        os.close(home)


def delete(name: str) -> bool:
    """Unpin a namespace; the kernel frees it (and its interfaces) once nothing uses it.
    Returns whether it existed."""
    target = path_of(name)
    if not os.path.exists(target):
        return False
    _unpin(target)
    return True


def _unpin(target: str) -> None:
    if _libc.umount2(target.encode(), _MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not a mount point (half-made)
            raise NamespaceError(f"unmounting {target}: {os.strerror(code)}")
    with suppress(FileNotFoundError):
        os.unlink(target)


@contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the body with the calling thread inside namespace NAME (None: stay where we are)."""
    if name is None:
        yield
        return
    with _lock:
        try:
            fd = os.open(path_of(name), os.O_RDONLY)
        except FileNotFoundError:
            raise NamespaceError(f"network namespace {name!r} does not exist") from None
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _check(_libc.setns(fd, _CLONE_NEWNET), f"entering network namespace {name!r}")
            try:
                yield
            finally:
                _check(_libc.setns(home, _CLONE_NEWNET), "returning to the original network namespace")
        finally:
            os.close(fd)
            os.close(home)


def write_sysctl(name: str | None, key: str, value: str) -> None:
    """Set a net.* sysctl inside namespace NAME: /proc/sys/net resolves against the writer's namespace."""
    path = "/proc/sys/" + key.replace(".", "/")
    with entered(name):
        try:
            with open(path, "w") as handle:
                handle.write(value)
        except OSError as exc:
            raise NamespaceError(f"setting {key}={value} in {name or 'the root namespace'}: {exc.strerror}") from None


def read_sysctl(name: str | None, key: str) -> str:
    path = "/proc/sys/" + key.replace(".", "/")
    with entered(name), open(path) as handle:
        return handle.read().strip()


def inode_of(name: str) -> int | None:
    """The namespace's identity (the nsfs inode that /run/netns/NAME is bound to)."""
    try:
        return os.stat(path_of(name)).st_ino
    except FileNotFoundError:
        return None


def processes_in(names: list[str]) -> list[int]:
    """Pids of every process whose network namespace is one of NAMES: how cleanup finds what runs in a
    cluster's namespaces without matching process names, even if a pid was never recorded."""
    wanted = {ino for ino in (inode_of(n) for n in names) if ino is not None}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in wanted:
                found.append(int(entry))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return found


def kill_processes_in(name: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process inside namespace NAME and wait until they are gone; returns their pids.

    Unpinning a namespace does not end it while a process still lives in it: the namespace, its veth
    and its address would linger unnamed and answer ARP for an address the node may hand out again.
    Found by namespace identity (processes_in), never by name."""
    killed = processes_in([name])
    for pid in killed:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_lives_in(pid, name) for pid in killed):
        time.sleep(0.01)
    return killed


def _lives_in(pid: int, name: str) -> bool:
    """Whether PID still runs (a zombie does not count: it holds no namespace) inside namespace NAME."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            if handle.read().rpartition(")")[2].split()[0] == "Z":
                return False
        return os.stat(f"/proc/{pid}/ns/net").st_ino == inode_of(name)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
