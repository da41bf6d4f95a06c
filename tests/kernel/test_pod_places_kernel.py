"""A pod as a place on the real kernel: its UTS and mount namespaces beside its network namespace,
pinned like it and removed with it (netsim.namespaces.create_pod_place, netsim.place.PodPlace), and the
nsenter line that enters all three (namespaces.command_in)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from netsim import namespaces
from netsim.errors import NamespaceError
from netsim.place import PodPlace, setup_arguments, setup_of
from netsim.placemaker import PlaceMaker


@dataclass
class Pod:
    netns: str
    state: Path  # a stand-in for kubesim's state directory, hidden in the pod
    resolv: Path
    hosts: Path

    def run(self, script: str, *, uid: int | None = None, gid: int | None = None,
            workdir: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = namespaces.command_in(self.netns, ["sh", "-c", script], uts=True, mnt=True, uid=uid, gid=gid,
                                     workdir=workdir)
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def _ours() -> list[str]:
    """Mounts of ours still on the machine: pins under PIN_DIR and PIN_DIR's own mount."""
    done = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=True)
    return [line for line in done.stdout.splitlines() if line.startswith(namespaces.PIN_DIR)]


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[Pod]:
    netns = f"ksim-test-{uuid.uuid4().hex[:8]}.pod"
    state = tmp_path / "state"
    (state / "pki").mkdir(parents=True)
    (state / "pki" / "token").write_text("secret\n")
    (state / "sa").mkdir()
    (state / "sa" / "own.kubeconfig").write_text("mine\n")
    (state / "sa" / "own.kubeconfig").chmod(0o644)
    files = tmp_path / "files"
    files.mkdir()
    resolv, hosts = files / "resolv.conf", files / "hosts"
    resolv.write_text("search default.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n")
    hosts.write_text("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.244.1.7\tweb-0\n")
    for path in (resolv, hosts):
        path.chmod(0o644)
    namespaces.create(netns)
    try:
        namespaces.create_pod_place(netns, setup_of(PodPlace(
            "web-0", files=(("/etc/resolv.conf", str(resolv)), ("/etc/hosts", str(hosts))),
            hidden=(str(state),), exposed=(str(state / "sa" / "own.kubeconfig"),))))
        yield Pod(netns, state, resolv, hosts)
    finally:
        namespaces.delete(netns)
    assert not namespaces.exists(netns)
    assert not namespaces.pod_place_exists(netns)


def test_the_pod_has_its_hostname_and_files_and_the_machine_keeps_its_own(pod: Pod) -> None:
    done = pod.run("hostname; cat /etc/resolv.conf; cat /etc/hosts")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "web-0\n" + pod.resolv.read_text() + pod.hosts.read_text()
    assert os.uname().nodename != "web-0"
    assert Path("/etc/resolv.conf").read_text() != pod.resolv.read_text()
    # pinned under PIN_DIR, which is a mount of its own while it holds pins
    assert {namespaces.pin_of(pod.netns, "uts"), namespaces.pin_of(pod.netns, "mnt"),
            namespaces.PIN_DIR} <= set(_ours())


def test_a_second_place_for_the_same_pod_is_refused_and_the_first_survives(pod: Pod) -> None:
    with pytest.raises(NamespaceError, match="already exist"):
        namespaces.create_pod_place(pod.netns, setup_of(PodPlace("again")))
    assert namespaces.pod_place_exists(pod.netns)
    assert pod.run("hostname").stdout == "web-0\n"


def test_the_state_directory_is_hidden_but_the_pods_own_credentials_stay(pod: Pod) -> None:
    done = pod.run(f"cat {pod.state}/pki/token; echo rc=$?; ls -A {pod.state}; cat {pod.state}/sa/own.kubeconfig; "
                   f"touch {pod.state}/new; echo touch=$?")
    assert "secret" not in done.stdout
    assert "rc=1" in done.stdout and "No such file" in done.stderr
    assert "sa\n" in done.stdout and "pki" not in done.stdout
    assert "mine\n" in done.stdout
    assert "touch=1" in done.stdout, "the hiding tmpfs is read-only"


def test_a_user_and_a_working_directory_as_the_pod_sees_them(pod: Pod) -> None:
    done = pod.run("id -u; id -g; pwd", uid=1000, gid=3000, workdir="/tmp")
    assert done.stdout.split() == ["1000", "3000", "/tmp"], done.stderr
    # Without a working directory a process starts in / of the pod, whatever the caller's cwd.
    assert pod.run("pwd").stdout == "/\n"
    # A working directory inside the hidden state directory does not exist in the pod: nsenter's --wd
    # would have opened it as the machine sees it.
    inside = pod.run("cat token", workdir=str(pod.state / "pki"))
    assert inside.returncode == 128 and "secret" not in inside.stdout, inside
    assert pod.run("cat pki/token", workdir=str(pod.state)).stdout == ""  # the empty tmpfs


def test_the_pod_holds_no_other_namespace_alive_and_sees_its_own_interfaces(pod: Pod) -> None:
    other = f"ksim-test-{uuid.uuid4().hex[:8]}.other"
    namespaces.create(other)  # pinned after the pod's mount namespace was made: never copied into it
    try:
        mounts = pod.run("findmnt -rn -t nsfs -o TARGET; echo end")
        assert mounts.stdout == "end\n", "copies of nsfs pins would keep those namespaces alive"
    finally:
        namespaces.delete(other)
    # /sys was mounted from inside the pod's network namespace: only its loopback
    assert pod.run("ls /sys/class/net").stdout.split() == ["lo"]


def test_no_pin_is_copied_into_a_later_pod(pod: Pod, tmp_path: Path) -> None:
    # The first pod's pins (and every /run/netns pin) exist when the second is made: detached in it.
    second = f"ksim-test-{uuid.uuid4().hex[:8]}.pod2"
    namespaces.create(second)
    try:
        namespaces.create_pod_place(second, setup_of(PodPlace("web-1")))
        argv = namespaces.command_in(second, ["findmnt", "-rn", "-t", "nsfs", "-o", "TARGET"], uts=True, mnt=True)
        assert subprocess.run(argv, capture_output=True, text=True, check=False).stdout == ""
        assert subprocess.run(namespaces.command_in(second, ["hostname"], uts=True), capture_output=True,
                              text=True, check=True).stdout == "web-1\n"
    finally:
        namespaces.delete(second)
    assert namespaces.PIN_DIR in _ours(), "the first pod still holds pins there"


def _mark_in(netns: str, disk: Path) -> str:
    argv = namespaces.command_in(netns, ["cat", str(disk / "mark")], uts=True, mnt=True)
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _disk_comes_and_goes(disk: Path, first: str) -> None:
    """FIRST was placed before DISK was mounted; pods made after the mount see it, pods made after the
    unmount do not, and each keeps the view it was made with."""
    later, last = (f"ksim-test-{uuid.uuid4().hex[:8]}.{which}" for which in ("later", "last"))
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "kubesim-test-disk", str(disk)], check=True)
        (disk / "mark").write_text("on the disk\n")
        namespaces.create(later)
        namespaces.create_pod_place(later, setup_of(PodPlace("later")))
        assert _mark_in(later, disk) == "on the disk\n"
        assert _mark_in(first, disk) == ""
        subprocess.run(["umount", str(disk)], check=True)
        namespaces.create(last)
        namespaces.create_pod_place(last, setup_of(PodPlace("last")))
        assert _mark_in(last, disk) == ""
        assert _mark_in(later, disk) == "on the disk\n"
    finally:
        subprocess.run(["umount", str(disk)], check=False, capture_output=True)
        for name in (later, last):
            namespaces.delete(name)


def test_a_pod_holds_no_pin_of_the_machines_and_sees_its_mounts_as_of_its_creation(
        pod: Pod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pod mount namespaces are copies of a template without the machine's namespace pins: many pins on
    # the machine (here 40 more network namespaces) add nothing to a new pod's mount table...
    def mount_count(netns: str) -> int:
        argv = namespaces.command_in(netns, ["cat", "/proc/self/mountinfo"], uts=True, mnt=True)
        return len(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.splitlines())

    crowd = [f"ksim-test-{uuid.uuid4().hex[:8]}.crowd" for _ in range(40)]
    counted = f"ksim-test-{uuid.uuid4().hex[:8]}.counted"
    try:
        for name in crowd:
            namespaces.create(name)
        namespaces.create(counted)
        namespaces.create_pod_place(counted, setup_of(PodPlace("counted")))
        assert mount_count(counted) <= mount_count(pod.netns)
    finally:
        for name in [*crowd, counted]:
            namespaces.delete(name)
    # ...and a disk mounted or unmounted on the machine is seen so by the pods made after: here with a
    # template too young to be remade where mounts do not propagate (this machine's root may be private).
    monkeypatch.setattr(namespaces, "TEMPLATE_MAX_AGE", 0.0)
    disk = tmp_path / "disk"
    disk.mkdir()
    _disk_comes_and_goes(disk, pod.netns)


def test_a_template_follows_the_mounts_of_a_machine_whose_mounts_propagate(
        pod: Pod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # On a systemd machine every mount is shared: a template made there follows the machine's mounts
    # without being made again. A shared mount point of our own stands in for such a machine.
    machine = tmp_path / "machine"
    (machine / "disk").mkdir(parents=True)
    subprocess.run(["mount", "--bind", str(machine), str(machine)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(machine)], check=True)
        monkeypatch.setattr(namespaces, "_template", None)
        monkeypatch.setattr(namespaces, "TEMPLATE_MAX_AGE", 3600.0)
        first = f"ksim-test-{uuid.uuid4().hex[:8]}.first"
        try:
            namespaces.create(first)
            namespaces.create_pod_place(first, setup_of(PodPlace("first")))  # the template is made here
            _disk_comes_and_goes(machine / "disk", first)
        finally:
            namespaces.delete(first)
    finally:
        subprocess.run(["umount", "--recursive", str(machine)], check=False)


def test_a_failed_setup_leaves_nothing(tmp_path: Path) -> None:
    netns = f"ksim-test-{uuid.uuid4().hex[:8]}.bad"
    before = _ours()
    namespaces.create(netns)
    try:
        with pytest.raises(NamespaceError, match="no-such-dir"):
            namespaces.create_pod_place(netns, setup_of(PodPlace("bad", hidden=(str(tmp_path / "no-such-dir"),))))
        assert not os.path.lexists(namespaces.pin_of(netns, "uts"))
        assert not os.path.lexists(namespaces.pin_of(netns, "mnt"))
        assert _ours() == before
    finally:
        namespaces.delete(netns)


def test_the_last_pod_gone_leaves_no_mount_of_ours(tmp_path: Path) -> None:
    netns = f"ksim-test-{uuid.uuid4().hex[:8]}.last"
    namespaces.create(netns)
    try:
        namespaces.create_pod_place(netns, setup_of(PodPlace("last")))
        assert namespaces.pod_place_exists(netns)
        assert namespaces.PIN_DIR in _ours()
    finally:
        assert namespaces.delete(netns)
    if not any(name.endswith((".uts", ".mnt")) for name in os.listdir(namespaces.PIN_DIR)):
        assert _ours() == [], "PIN_DIR's own mount outlived its last pin"


def _stuck() -> None:
    time.sleep(3600)


def _refuses() -> None:
    raise ValueError("hostname refused")


def test_a_setup_that_fails_or_hangs_is_told_and_its_child_ended(tmp_path: Path) -> None:
    # The set-up runs in a forked child of this process: its error comes back in its words, and one that
    # never finishes is ended at the timeout, leaving no pin and no child of ours.
    netns = f"ksim-test-{uuid.uuid4().hex[:8]}.stuck"
    before = _ours()
    namespaces.create(netns)
    try:
        with pytest.raises(NamespaceError, match="hostname refused"):
            namespaces.create_pod_place(netns, _refuses)
        with pytest.raises(NamespaceError, match="not done within"):
            namespaces.create_pod_place(netns, _stuck, timeout=0.5)
        assert not namespaces.pod_place_exists(netns)
        assert _ours() == before
        assert namespaces.processes_in([netns]) == [], "the set-up child outlived its call"
    finally:
        namespaces.delete(netns)


def test_places_made_by_the_helper_process_and_its_errors_and_its_restart(tmp_path: Path) -> None:
    # LinuxKernel.ns_create_place asks a small helper process (netsim/placemaker.py) to fork the set-up
    # child: the same place as in-process, the same errors, and a helper that died is started again.
    maker = PlaceMaker()
    names = [f"ksim-test-{uuid.uuid4().hex[:8]}.{which}" for which in ("one", "bad", "two")]
    try:
        for name in names:
            namespaces.create(name)
        maker.make(names[0], setup_arguments(PodPlace("one")))
        first = maker.helper_pid
        assert first is not None and first != os.getpid()
        assert subprocess.run(namespaces.command_in(names[0], ["hostname"], uts=True), capture_output=True,
                              text=True, check=True).stdout == "one\n"
        with pytest.raises(NamespaceError, match="no-such-dir"):
            maker.make(names[1], setup_arguments(PodPlace("bad", hidden=(str(tmp_path / "no-such-dir"),))))
        assert not namespaces.pod_place_exists(names[1])
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{first}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":  # dead, not reaped
            assert time.monotonic() < deadline, "the killed helper did not end"
            time.sleep(0.01)
        maker.make(names[2], setup_arguments(PodPlace("two")))
        assert maker.helper_pid not in (None, first)
        assert subprocess.run(namespaces.command_in(names[2], ["hostname"], uts=True), capture_output=True,
                              text=True, check=True).stdout == "two\n"
    finally:
        maker.close()
        for name in names:
            namespaces.delete(name)
    assert maker.helper_pid is None
