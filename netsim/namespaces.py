"""Named network namespaces, made and entered in-process.

``ip netns add`` costs a process and ~3.5 ms; the same work done here through unshare(2), a bind
mount and setns(2) costs ~1 ms. Namespaces are per *thread* in Linux, so ``entered(name)`` switches
only the calling thread and always switches back. Sockets keep the namespace they were created in,
which is how a netlink socket "lives" inside a node or pod namespace while we use it from here.

The names are files under /run/netns, exactly where iproute2 keeps them, so ``ip netns`` and
``ip netns exec`` see ours and we see theirs.

A pod is more than its network namespace: its UTS namespace (its hostname) and its mount namespace
(its /etc/hosts, /etc/hostname, /etc/resolv.conf, the state directory hidden) are pinned beside it
under PIN_DIR with the same name (NAME.uts, NAME.mnt), made by ``create_pod_place`` and removed by
``delete`` with the network namespace. ``command_in(name, argv, uts=True, mnt=True)`` enters all three.

A mount namespace can only be pinned on a mount that does not propagate (the kernel refuses to copy a
mount-namespace file into a peer, EINVAL), and on a systemd machine / is shared: PIN_DIR is therefore a
private bind mount of itself while it holds any pin, unmounted again when the last one goes.

A pod's mount namespace is not copied from the machine's: that copy would hold every namespace pin of
the machine (three per pod), so each new pod would cost more than the last (17.8 ms a place at 1,000
pods against 5.3 ms at 100) and every pod would keep thousands of mounts. Each process that makes
places keeps a *template* mount namespace instead, without any namespace pin, and pods' namespaces are
copies of it. The template follows the machine's mounts (a slave: a disk mounted or unmounted later is
seen so) where the machine's mounts propagate, as on any systemd machine. Where they do not (a private
root, as in some containers) nothing can follow them: once the template is TEMPLATE_MAX_AGE old, the
machine's mounts (pins aside) are compared with what it was made from, and it is made again if they
changed. A pod then sees the machine's mounts as of at most that long before it.
So that no pin made later reaches a template, NETNS_DIR is a shared mount of its own, as ``ip netns
add`` makes it on its first use.
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import fcntl
import functools
import gc
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import NoReturn

from netsim import _podsetup
from netsim.errors import NamespaceError

NETNS_DIR = "/run/netns"
PIN_DIR = "/run/kubesim-ns"
POD_NAMESPACES = ("uts", "mnt")  # pinned beside a pod's network namespace, in this order
_CLONE_NEWNET = 0x40000000
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_MS_REC = 16384
_PR_SET_PDEATHSIG = 1
_PIPE_BUF = 4096
_KEPT_FD = 4  # where a forked set-up child finds the one descriptor of its parent it keeps
_MS_BIND = 4096
_MS_PRIVATE = 1 << 18
_MS_SLAVE = 1 << 19
_MS_SHARED = 1 << 20
_MNT_DETACH = 2
# A pod's working directory is entered by a shell already inside the pod's mount namespace. nsenter's
# own --wd opens the directory before it switches namespaces, i.e. as the machine sees it: a pod could
# be given a cwd inside the state directory its mount namespace hides.
_CHDIR = 'cd -- "$1" || exit 128; shift; exec "$@"'

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


def pin_of(name: str, kind: str) -> str:
    """Where the KIND ("uts" or "mnt") namespace of pod namespace NAME is pinned."""
    if kind not in POD_NAMESPACES:
        raise ValueError(f"namespace kind {kind!r}: use one of {', '.join(POD_NAMESPACES)}")
    return os.path.join(PIN_DIR, f"{name}.{kind}")


def command_in(name: str, argv: list[str], *, uts: bool = False, mnt: bool = False, uid: int | None = None,
               gid: int | None = None, workdir: str | None = None) -> list[str]:
    """ARGV run inside network namespace NAME, as a command line.

    By default nsenter switches only the network namespace, so the process shares the mount namespace
    (and sees every /run/netns pin): what node components want; `ip netns exec` would also give it a
    mount namespace and /sys of its own. For a pod, UTS and MNT also enter the pod's UTS and mount
    namespaces (pinned by create_pod_place): its hostname, its /etc files, the state directory hidden.
    UID/GID switch identity (a GID alone keeps uid 0; a UID alone takes gid 0, as a container runtime
    does for an image without that user), dropping supplementary groups; WORKDIR is the directory to
    start in, as the pod sees it (it needs MNT), else the process starts in / of its mount namespace."""
    if workdir is not None and not mnt:
        raise ValueError(f"workdir {workdir!r} is a path in the pod's mount namespace: enter it (mnt=True)")
    line = ["nsenter", f"--net={path_of(name)}"]
    if uts:
        line.append(f"--uts={pin_of(name, 'uts')}")
    if mnt:
        line.append(f"--mount={pin_of(name, 'mnt')}")
    if uid is not None or gid is not None:
        # nsenter applies setgid (and drops supplementary groups) before setuid.
        line += [f"--setgid={gid or 0}", f"--setuid={uid or 0}"]
    if workdir is not None:
        argv = ["sh", "-c", _CHDIR, "sh", workdir, *argv]
    return [*line, "--", *argv]


def exists(name: str) -> bool:
    return os.path.exists(path_of(name))


def list_names() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def create(name: str) -> None:
    """Make a new network namespace and pin it at /run/netns/NAME (like ``ip netns add``)."""
    _netns_dir_shared()
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
    """Unpin a namespace, and the pod UTS and mount namespaces pinned beside it; the kernel frees them
    (and the interfaces) once nothing uses them. Returns whether the network namespace existed."""
    delete_pod_place(name)  # first: a crash between the two leaves a netns, which sweeps find by name
    target = path_of(name)
    if not os.path.exists(target):
        return False
    _unpin(target)
    return True


def create_pod_place(name: str, setup: Callable[[], None], *, timeout: float = 30.0) -> None:
    """Give pod network namespace NAME a UTS and a mount namespace of its own, pinned at
    pin_of(NAME, "uts"/"mnt"). SETUP runs once inside all three, in a forked child of this process,
    with every mount of the new mount namespace private: it sets the hostname and makes the mounts
    (netsim.place.setup_of); what it raises is the error. On failure nothing of the two is left behind.
    Safe from any thread: the child is forked by the calling thread and is its only thread."""
    if not exists(name):
        raise NamespaceError(f"network namespace {name!r} does not exist")
    template = _place_template(timeout)
    pins = [pin_of(name, kind) for kind in POD_NAMESPACES]
    with _pin_dir_locked():
        _pin_dir_private()
        if any(os.path.lexists(pin) for pin in pins):
            raise NamespaceError(f"the pod namespaces of {name!r} already exist")
        try:
            for pin in pins:
                os.close(os.open(pin, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
        except BaseException:
            for pin in pins:
                with suppress(FileNotFoundError):
                    os.unlink(pin)
            raise

    def pin_namespaces(pid: int) -> None:
        for kind, target in zip(POD_NAMESPACES, pins, strict=True):
            _check(_libc.mount(f"/proc/{pid}/ns/{kind}".encode(), target.encode(), b"none", _MS_BIND, None),
                   f"pinning the {kind} namespace of {name}")

    try:
        _in_forked_child(f"setting up the pod namespaces of {name}",
                         functools.partial(_enter_new_place, name, setup), pin_namespaces, timeout,
                         keep=template)
    except BaseException:
        delete_pod_place(name)
        raise


def _enter_new_place(name: str, setup: Callable[[], None]) -> None:
    """In the forked child: into NAME's network namespace and fresh UTS and mount namespaces (a copy of
    the template's, kept as _KEPT_FD; every mount private), then SETUP."""
    netns = os.open(path_of(name), os.O_RDONLY)  # before the template: it has no /run/netns pins
    _check(_libc.setns(_KEPT_FD, _CLONE_NEWNS), "entering the pod places' template mount namespace")
    _check(_libc.setns(netns, _CLONE_NEWNET), f"entering network namespace {name!r}")
    os.close(netns)
    _check(_libc.unshare(_CLONE_NEWUTS | _CLONE_NEWNS), "unsharing the UTS and mount namespaces")
    # what unshare(1) --propagation private does: nothing mounted here reaches the machine
    _check(_libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "making every mount private")
    setup()


TEMPLATE_MAX_AGE = 5.0  # seconds; where the machine's mounts do not propagate (see above)
_template_lock = threading.Lock()


@dataclass(frozen=True)
class _Template:
    pid: int  # the process that made it (a forked copy of that process makes its own)
    checked: float  # time.monotonic() when it was made or last found current
    mounts: bytes | None  # the machine's mounts it was made from; None: it follows them
    fd: int  # a descriptor of its mount namespace


_template: _Template | None = None


def _place_template(timeout: float) -> int:
    """A descriptor of this process's template mount namespace for pod places (see the module's doc)."""
    global _template
    with _template_lock:
        old = _template
        if old is not None and old.pid == os.getpid():
            if old.mounts is None or time.monotonic() - old.checked < TEMPLATE_MAX_AGE:
                return old.fd
            if _machine_mounts(_mountinfo()) == old.mounts:  # nothing mounted or unmounted since: still current
                _template = dataclasses.replace(old, checked=time.monotonic())
                return old.fd
            os.close(old.fd)  # the namespace goes once no pod made from it is left
        _template = None
        opened: list[int] = []

        def hold(pid: int) -> None:
            # an open descriptor keeps a namespace alive with no process in it
            opened.append(os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC))

        lines = _mountinfo()
        mounts = None if _root_is_shared(lines) else _machine_mounts(lines)
        _in_forked_child("making the pod places' template mount namespace", _enter_new_template, hold, timeout)
        _template = _Template(os.getpid(), time.monotonic(), mounts, opened[0])
        return opened[0]


def _mountinfo() -> list[bytes]:
    """This process's mount table, a line a mount (thousands of lines on a busy node: read it rarely)."""
    with open("/proc/self/mountinfo", "rb") as handle:
        return handle.read().split(b"\n")


def _machine_mounts(lines: list[bytes]) -> bytes:
    """The mount table LINES without the namespace pins (theirs change with every pod): what a template
    that cannot follow the machine is compared with. Lines name each mount by its id, so a disk
    unmounted and mounted again differs too."""
    pins = (f" {NETNS_DIR}/".encode(), f" {PIN_DIR}/".encode(), f" {PIN_DIR} ".encode())
    return b"\n".join(line for line in lines if b" - nsfs " not in line and not any(p in line for p in pins))


def _root_is_shared(lines: list[bytes]) -> bool:
    """Whether the root mount in the mount table LINES propagates (mountinfo's shared:N tag)."""
    for line in lines:
        fields = line.split(b" - ", 1)[0].split()
        if len(fields) > 4 and fields[4] == b"/":
            return any(tag.startswith(b"shared:") for tag in fields[6:])
    return False


def _enter_new_template() -> None:
    """In the forked child: a new mount namespace that follows the machine's mounts (a slave: nothing
    done here goes back) without any namespace pin, NETNS_DIR and PIN_DIR included."""
    _check(_libc.unshare(_CLONE_NEWNS), "unsharing a mount namespace")
    _check(_libc.mount(b"none", b"/", None, _MS_REC | _MS_SLAVE, None), "making every mount a slave")
    _podsetup.detach_nsfs_mounts([NETNS_DIR, PIN_DIR])


_netns_dir_checked = False


def _netns_dir_shared() -> None:
    """NETNS_DIR as ``ip netns add`` leaves it, before the first pin: a shared mount of its own (bound
    onto itself if it is not a mount point). Pins made there then land on that mount, which templates
    detach, instead of on its parent's, which they follow. A directory that already holds pins on its
    parent's mount is left as it is (a bind over them would hide them): templates then receive later
    pins too, and a pod's set-up detaches them, only slower. Once per process, under a lock every
    process of the machine takes (NETNS_DIR's own)."""
    global _netns_dir_checked
    if _netns_dir_checked:
        return
    os.makedirs(NETNS_DIR, exist_ok=True)
    target = NETNS_DIR.encode()
    fd = os.open(NETNS_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _mount_id(NETNS_DIR) == _mount_id(os.path.dirname(NETNS_DIR)) and not os.listdir(NETNS_DIR):
            _check(_libc.mount(target, target, b"none", _MS_BIND | _MS_REC, None),
                   f"bind-mounting {NETNS_DIR} onto itself")
        if _mount_id(NETNS_DIR) != _mount_id(os.path.dirname(NETNS_DIR)):
            _check(_libc.mount(b"none", target, None, _MS_SHARED | _MS_REC, None), f"making {NETNS_DIR} a shared mount")
    finally:
        os.close(fd)
    _netns_dir_checked = True


def _in_forked_child(what: str, enter: Callable[[], None], then: Callable[[int], None], timeout: float,
                     keep: int | None = None) -> None:
    """Fork a child (no new program: each exec of nsenter, unshare and an interpreter cost ~35 ms of CPU
    a pod) that runs ENTER; once it says it is done, THEN(pid) runs here while the child still holds its
    namespaces (the kernel refuses to pin a mount namespace from inside itself, so this process pins the
    child's /proc/PID/ns/...), and the child is ended. The child's word comes back on a pipe; KEEP is a
    descriptor the child keeps, as descriptor _KEPT_FD."""
    result_r, result_w = os.pipe()
    parent = os.getpid()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            _child(result_w, enter, parent, keep)
        os.close(result_w)
        result_w = -1
        try:
            ready, _, _ = select.select([result_r], [], [], timeout)
            if not ready:
                raise NamespaceError(f"{what}: not done within {timeout:g} s")
            said = os.read(result_r, _PIPE_BUF).decode(errors="replace")
            if said != "ok":
                raise NamespaceError(f"{what}: {said or 'the set-up process ended without a word'}")
            then(pid)
        finally:
            # Unreaped, the pid is still this child's: the kill cannot reach anyone else.
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    finally:
        os.close(result_r)
        if result_w >= 0:
            os.close(result_w)


def die_with_parent(parent: int) -> bool:
    """Have the kernel SIGKILL this process when the thread that started it ends (PR_SET_PDEATHSIG);
    False if that could not be set or PARENT (its pid, read before) is already gone."""
    return _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0 and os.getppid() == parent


def _child(result_w: int, enter: Callable[[], None], parent: int, keep: int | None) -> NoReturn:
    """The forked child: only this thread was copied, so it uses none of the parent's locks or
    threads, never returns into the parent's code (os._exit: no atexit, no flush of copied buffers)."""
    try:
        gc.disable()  # no finalizer of the parent's objects runs here
        kept = fcntl.fcntl(keep, fcntl.F_DUPFD, 5) if keep is not None else -1  # out of the way of 3 and 4
        os.dup2(result_w, 3)
        if kept >= 0:
            os.dup2(kept, _KEPT_FD)
        # Copies of the parent's descriptors go: the other pods' pipes (a write end held here would
        # delay their end of file), its sockets and its listeners.
        os.closerange(_KEPT_FD + 1 if kept >= 0 else 4, os.sysconf("SC_OPEN_MAX"))
        # Ended with the thread that forked it, or it would hold the pod's namespaces unpinned forever.
        if not die_with_parent(parent):
            os._exit(1)
        try:
            enter()
            said = "ok"
        except OSError as exc:
            said = f"pod setup: {exc.strerror or exc}"
        except BaseException as exc:  # every failure is told to the parent, in its words
            said = str(exc) or f"pod setup: {type(exc).__name__}"
        os.write(3, said.encode()[:_PIPE_BUF])  # one write up to PIPE_BUF: the parent reads it whole
        while True:  # held until the parent has pinned the namespaces and ends this process
            signal.pause()
    finally:
        os._exit(1)


def pod_place_exists(name: str) -> bool:
    return all(os.path.exists(pin_of(name, kind)) for kind in POD_NAMESPACES)


def delete_pod_place(name: str) -> bool:
    """Unpin the UTS and mount namespaces of pod namespace NAME (idempotent); whether any was pinned."""
    pins = [pin_of(name, kind) for kind in POD_NAMESPACES]
    if not any(os.path.lexists(pin) for pin in pins):
        return False
    with _pin_dir_locked():
        for pin in pins:
            _unpin(pin)
        if _pin_dir_mounted() and not os.listdir(PIN_DIR):
            _check(_libc.umount2(PIN_DIR.encode(), _MNT_DETACH), f"unmounting {PIN_DIR}")
    return True


@contextmanager
def _pin_dir_locked() -> Iterator[None]:
    """PIN_DIR held against the other processes of the machine that pin or unpin there (every node's
    kubelet): its private mount is made by the first pin and removed with the last."""
    os.makedirs(PIN_DIR, mode=0o755, exist_ok=True)
    fd = os.open(PIN_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the directory and its bind mount are one inode: one lock
        yield
    finally:
        os.close(fd)


def _pin_dir_mounted() -> bool:
    # os.path.ismount cannot tell: a directory bound onto itself has its parent's device. Its mount id
    # tells, at a cost that does not grow with the machine's mount table (three mounts a pod).
    return _mount_id(PIN_DIR) != _mount_id(os.path.dirname(PIN_DIR))


def _mount_id(path: str) -> int:
    fd = os.open(path, os.O_PATH | os.O_DIRECTORY)
    try:
        with open(f"/proc/self/fdinfo/{fd}") as handle:
            for line in handle:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    finally:
        os.close(fd)
    raise NamespaceError(f"no mount id for {path} in /proc/self/fdinfo")


def _pin_dir_private() -> None:
    if _pin_dir_mounted():
        return
    target = PIN_DIR.encode()
    _check(_libc.mount(target, target, b"none", _MS_BIND, None), f"bind-mounting {PIN_DIR} onto itself")
    try:
        _check(_libc.mount(b"none", target, None, _MS_PRIVATE, None), f"making {PIN_DIR} a private mount")
    except NamespaceError:
        _libc.umount2(target, _MNT_DETACH)
        raise


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
