"""Run once inside a new pod's namespaces (namespaces.create_pod_place): make the pod a place.

    python -I -S _podsetup.py HOSTNAME [--bind TARGET SOURCE]... [--hide DIR]... [--expose FILE]...
                              [--pins DIR]... [--memory DIR SIZE]... [--volume TARGET SOURCE ro|rw]...
                              [--scratch DIR]

namespaces.create_pod_place calls main() in a child it forked into the pod's network namespace and
fresh UTS and mount namespaces, every mount already private (nothing it does reaches the machine); the
child exits when done and the namespaces stay pinned. It can also be run as a file inside namespaces
made by unshare(1) (place.setup_command), so it imports only os, sys and ctypes.

Steps, in this order:
1. The copies of nsfs mounts (every /run/netns pin, other pods' pins) are detached: a copy would keep
   that namespace alive, with its veth and address, for as long as this pod lives. A --pins directory
   that is a mount point goes whole, in one call.
2. /sys is mounted afresh from inside the pod's network namespace, so /sys/class/net shows the pod's
   interfaces (what `ip netns exec` does too).
3. The hostname is set.
4. Each MEMORY directory gets a tmpfs of its own (emptyDir medium Memory; SIZE "-" for no limit).
5. Every source (files and volumes) is opened, so that what follows cannot change what it names. A
   volume target that does not exist is made, never on the machine's filesystem: its nearest existing
   ancestor gets an overlay (the machine's directory below, an upper layer on a tmpfs at SCRATCH), once,
   and the mount point is made there. The ancestor may not be / (an overlay there would not be seen by
   processes entering the namespace: their root is the namespace's root mount).
6. Each FILE's source is bound over its target (/etc/hosts, /etc/hostname, /etc/resolv.conf), then each
   VOLUME's source at its target, remounted read-only for "ro".
7. Each HIDDEN directory gets an empty read-only tmpfs over it (the state directory: tokens, keys),
   except for the EXPOSED files under it, bound back at their own paths (the pod's own credentials).
   They are opened before the directory is hidden, and bound from the open file.
"""

from __future__ import annotations

import ctypes
import os
import sys

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MNT_DETACH = 2
O_PATH = 0o10000000

_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                   data.encode() if data else None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mounting {source} on {target}: {os.strerror(code)}")


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    for code in ("040", "011", "012", "134"):
        field = field.replace("\\" + code, chr(int(code, 8)))
    return field


def _mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount here."""
    with open("/proc/self/mountinfo") as handle:
        return [(_unescape(line.split()[4]), line.split(" - ", 1)[1].split()[0]) for line in handle]


def detach_nsfs_mounts(pin_dirs: list[str]) -> None:
    # A directory of pins that is a mount of its own goes in one call, all its pins with it: every detach
    # waits out an RCU grace period, and a busy machine has hundreds of pins.
    for directory in pin_dirs:
        if any(point == directory for point, _ in _mounts()):
            _libc.umount2(directory.encode(), MNT_DETACH)
    points = [point for point, kind in _mounts() if kind == "nsfs"]
    for point in sorted(points, key=len, reverse=True):
        if _libc.umount2(point.encode(), MNT_DETACH) != 0 and ctypes.get_errno() not in (22, 2):  # EINVAL, ENOENT
            code = ctypes.get_errno()
            raise OSError(code, f"detaching {point}: {os.strerror(code)}")


def remount_sys() -> None:
    if _libc.umount2(b"/sys", MNT_DETACH) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"detaching /sys: {os.strerror(code)}")
    _mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def hide(directory: str, exposed: list[str]) -> None:
    inside = [path for path in exposed if path.startswith(directory.rstrip("/") + "/")]
    held = {path: os.open(path, O_PATH | os.O_CLOEXEC) for path in inside}
    try:
        _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k")
        for path, fd in held.items():
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
        _mount("none", directory, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    finally:
        for fd in held.values():
            os.close(fd)


def _opened(path: str) -> int:
    try:
        return os.open(path, O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, f"opening {path}: {os.strerror(exc.errno or 0)}") from None


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


class MountPoints:
    """Makes mount points that do not exist, in overlays of their nearest existing ancestors."""

    def __init__(self, scratch: str):
        self.scratch = scratch
        self.overlays: list[str] = []

    def _writable(self, ancestor: str) -> None:
        if any(_is_under(ancestor, done) for done in self.overlays):
            return
        if ancestor == "/":
            raise OSError(2, "a new top-level directory cannot be made in a pod (its containers share the "
                             "machine's root filesystem): mount under an existing directory such as /mnt or /etc")
        if not self.scratch:
            raise OSError(22, "no scratch directory given for the overlays of new mount points")
        if not self.overlays:
            _mount("tmpfs", self.scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=16m")
        layer = os.path.join(self.scratch, str(len(self.overlays)))
        os.makedirs(layer + "/upper")
        os.makedirs(layer + "/work")
        _mount("overlay", ancestor, "overlay", 0, f"lowerdir={ancestor},upperdir={layer}/upper,workdir={layer}/work")
        self.overlays.append(ancestor)

    def make(self, target: str, directory: bool) -> None:
        if os.path.lexists(target) and os.path.exists(target):
            return
        real = os.path.realpath(target)
        ancestor = os.path.dirname(real)
        while not os.path.isdir(ancestor):
            ancestor = os.path.dirname(ancestor)
        self._writable(ancestor)
        if directory:
            os.makedirs(real, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(real), mode=0o755, exist_ok=True)
            os.close(os.open(real, os.O_WRONLY | os.O_CREAT, 0o644))


def mount_volumes(files: list[tuple[str, str]], volumes: list[tuple[str, str, str]], scratch: str) -> None:
    held_files = [(target, _opened(source)) for target, source in files]
    held = [(target, _opened(source), mode) for target, source, mode in volumes]
    try:
        points = MountPoints(scratch)
        for target, fd, _ in held:
            try:
                points.make(target, os.path.isdir(f"/proc/self/fd/{fd}"))
            except OSError as exc:
                raise OSError(exc.errno, f"mount point {target}: {exc.strerror}") from None
        for target, fd in held_files:
            _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
        for target, fd, mode in held:
            _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND)
            if mode == "ro":
                _mount("none", target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    finally:
        for _, fd in held_files:
            os.close(fd)
        for _, fd, _ in held:
            os.close(fd)


def parse(argv: list[str]) -> tuple[str, list[tuple[str, str]], dict[str, list[str]]]:
    """HOSTNAME, then --bind TARGET SOURCE, --hide DIR, --expose FILE, --pins DIR, --memory DIR SIZE and
    --volume TARGET SOURCE MODE (kept NUL-joined), each repeatable, and --scratch DIR."""
    hostname, rest = argv[0], argv[1:]
    files: list[tuple[str, str]] = []
    lists: dict[str, list[str]] = {"--hide": [], "--expose": [], "--pins": [], "--memory": [], "--volume": [],
                                   "--scratch": []}
    while rest:
        flag = rest.pop(0)
        if flag == "--bind" and len(rest) >= 2:
            files.append((rest.pop(0), rest.pop(0)))
        elif flag == "--memory" and len(rest) >= 2:
            lists[flag].append(rest.pop(0) + "\0" + rest.pop(0))
        elif flag == "--volume" and len(rest) >= 3:
            lists[flag].append("\0".join((rest.pop(0), rest.pop(0), rest.pop(0))))
        elif flag in lists and rest:
            lists[flag].append(rest.pop(0))
        else:
            raise SystemExit(f"pod setup: unexpected argument {flag!r}")
    return hostname, files, lists


def main(argv: list[str]) -> None:
    hostname, files, lists = parse(argv)
    detach_nsfs_mounts(lists["--pins"])
    remount_sys()
    with open("/proc/sys/kernel/hostname", "w") as handle:  # the UTS namespace's own (sethostname(2))
        handle.write(hostname)
    for entry in lists["--memory"]:
        directory, size = entry.split("\0")
        _mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0777" + ("" if size == "-" else "," + size))
    volumes = [(target, source, mode) for target, source, mode in (v.split("\0") for v in lists["--volume"])]
    mount_volumes(files, volumes, (lists["--scratch"] or [""])[-1])
    for directory in lists["--hide"]:
        hide(directory, lists["--expose"])


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except OSError as exc:
        print(f"pod setup: {exc.strerror}", file=sys.stderr)
        sys.exit(1)
