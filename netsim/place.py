"""What makes a pod a place beside its network namespace: its hostname and its view of the files.

    PodPlace(hostname, files=((target, source), ...), hidden=(dir, ...), exposed=(file, ...),
             volumes=((target, source, read_only), ...), memory=((dir, size), ...), scratch=dir)
    setup_of(place) -> what runs inside the pod's new namespaces (netsim/_podsetup.py, in-process)
    setup_command(place) -> the same as a command line, to run by hand (unshare(1) ... -- COMMAND)

The sandbox's UTS namespace carries HOSTNAME; its mount namespace binds each FILES source (a file the
caller wrote, the kubelet's per-pod /etc/hosts, /etc/hostname and /etc/resolv.conf) over its target,
and hides each HIDDEN directory under an empty read-only tmpfs, keeping only the EXPOSED files under it
(bound back at their own paths). Each VOLUMES source (a directory or file the caller prepared) is bound
at its target, read-only if asked; each MEMORY directory is first covered by a tmpfs (emptyDir medium
Memory). A target that does not exist is made inside an overlay of its nearest existing ancestor, whose
upper layer lives on a tmpfs at SCRATCH: the machine's own directories are never written.
Pure data: the caller decides what a pod sees.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from netsim import _podsetup
from netsim.errors import NetsimError
from netsim.namespaces import NETNS_DIR, PIN_DIR

SETUP_SCRIPT = Path(__file__).with_name("_podsetup.py")
HOSTNAME_MAX = 64  # the kernel's __NEW_UTS_LEN


@dataclass(frozen=True)
class PodPlace:
    hostname: str
    files: tuple[tuple[str, str], ...] = ()
    hidden: tuple[str, ...] = ()
    exposed: tuple[str, ...] = ()
    volumes: tuple[tuple[str, str, bool], ...] = ()
    memory: tuple[tuple[str, str], ...] = ()
    scratch: str = ""

    def __post_init__(self) -> None:
        if not self.hostname or len(self.hostname.encode()) > HOSTNAME_MAX:
            raise NetsimError(f"hostname {self.hostname!r}: give 1 to {HOSTNAME_MAX} bytes")
        volumes = [p for target, source, _ in self.volumes for p in (target, source)]
        if self.volumes and not self.scratch:
            raise NetsimError("a pod place with volumes needs a scratch directory for the mount points it makes")
        for path in [*(t for t, _ in self.files), *(s for _, s in self.files), *self.hidden, *self.exposed,
                     *volumes, *(d for d, _ in self.memory), *([self.scratch] if self.scratch else [])]:
            if not os.path.isabs(path):
                raise NetsimError(f"pod file {path!r}: paths of a pod's place must be absolute")


def setup_arguments(place: PodPlace) -> list[str]:
    """PLACE in the setup script's arguments (netsim/_podsetup.py's usage line)."""
    argv = [place.hostname]
    for target, source in place.files:
        argv += ["--bind", target, source]
    for directory, size in place.memory:
        argv += ["--memory", directory, size or "-"]
    for target, source, read_only in place.volumes:
        argv += ["--volume", target, source, "ro" if read_only else "rw"]
    if place.scratch:
        argv += ["--scratch", place.scratch]
    for directory in place.hidden:
        argv += ["--hide", directory]
    for path in place.exposed:
        argv += ["--expose", path]
    for directory in (NETNS_DIR, PIN_DIR):
        argv += ["--pins", directory]
    return argv


def setup_of(place: PodPlace) -> Callable[[], None]:
    """What namespaces.create_pod_place runs inside the pod's new namespaces to make PLACE: the setup
    script's main, called in the forked child (no program is started)."""
    return partial(_podsetup.main, setup_arguments(place))


def setup_command(place: PodPlace) -> list[str]:
    """The same set-up as a command line (this interpreter in isolated mode without site, on the setup
    script as a file), for running by hand inside namespaces made by unshare(1)."""
    return [sys.executable, "-I", "-S", str(SETUP_SCRIPT), *setup_arguments(place)]
