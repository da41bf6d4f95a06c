"""netsim.namespaces.command_in: the one nsenter line builder, for node components and pods alike."""

from __future__ import annotations

import pytest

from netsim import _podsetup, namespaces
from netsim.errors import NetsimError
from netsim.place import PodPlace, setup_command

NS = "ksim-demo.pod.0f3a"


def test_by_default_only_the_network_namespace() -> None:
    assert namespaces.command_in(NS, ["ip", "addr"]) == ["nsenter", f"--net=/run/netns/{NS}", "--", "ip", "addr"]


def test_a_pod_is_entered_by_all_three_namespaces() -> None:
    assert namespaces.command_in(NS, ["hostname"], uts=True, mnt=True) == [
        "nsenter", f"--net=/run/netns/{NS}", f"--uts=/run/kubesim-ns/{NS}.uts", f"--mount=/run/kubesim-ns/{NS}.mnt",
        "--", "hostname"]


def test_identity_sets_group_before_user_and_defaults_the_other_to_zero() -> None:
    line = namespaces.command_in(NS, ["id"], uts=True, mnt=True, uid=1000, gid=3000)
    assert line[4:6] == ["--setgid=3000", "--setuid=1000"]
    assert namespaces.command_in(NS, ["id"], uid=1000)[2:4] == ["--setgid=0", "--setuid=1000"]
    assert namespaces.command_in(NS, ["id"], gid=5)[2:4] == ["--setgid=5", "--setuid=0"]
    assert namespaces.command_in(NS, ["id"], uid=0, gid=0)[2:4] == ["--setgid=0", "--setuid=0"]


def test_a_working_directory_is_entered_inside_the_pod_with_the_argv_untouched() -> None:
    line = namespaces.command_in(NS, ["ls", "-l", "a b"], mnt=True, workdir="/srv/my app")
    rest = line[line.index("--") + 1:]
    assert rest[:3] == ["sh", "-c", 'cd -- "$1" || exit 128; shift; exec "$@"']
    assert rest[3:] == ["sh", "/srv/my app", "ls", "-l", "a b"]
    with pytest.raises(ValueError, match="enter it"):
        namespaces.command_in(NS, ["ls"], workdir="/srv")


def test_pins_have_kinds() -> None:
    assert namespaces.pin_of(NS, "uts") == f"/run/kubesim-ns/{NS}.uts"
    with pytest.raises(ValueError, match="use one of uts, mnt"):
        namespaces.pin_of(NS, "pid")


def test_a_place_is_checked_and_its_setup_is_this_interpreter_on_the_script() -> None:
    argv = setup_command(PodPlace("web-0", files=(("/etc/hosts", "/x/etc-hosts"),), hidden=("/state",),
                                  exposed=("/state/sa/own.kubeconfig",)))
    assert argv[1:3] == ["-I", "-S"] and argv[3].endswith("netsim/_podsetup.py")
    assert argv[4:] == ["web-0", "--bind", "/etc/hosts", "/x/etc-hosts", "--hide", "/state",
                        "--expose", "/state/sa/own.kubeconfig", "--pins", "/run/netns", "--pins", "/run/kubesim-ns"]
    with pytest.raises(NetsimError, match="absolute"):
        PodPlace("web-0", hidden=("relative",))
    with pytest.raises(NetsimError, match="1 to 64 bytes"):
        PodPlace("h" * 65)


def test_the_setup_script_reads_back_what_setup_command_wrote() -> None:
    place = PodPlace("web-0", files=(("/etc/hosts", "/x/hosts"), ("/etc/resolv.conf", "/x/resolv")),
                     hidden=("/state", "/other"), exposed=("/state/a",))
    assert _podsetup.parse(setup_command(place)[4:]) == (
        "web-0", [("/etc/hosts", "/x/hosts"), ("/etc/resolv.conf", "/x/resolv")],
        {"--hide": ["/state", "/other"], "--expose": ["/state/a"], "--pins": ["/run/netns", "/run/kubesim-ns"],
         "--memory": [], "--volume": [], "--scratch": []})
    with_volumes = PodPlace("web-0", volumes=(("/etc/cfg", "/state/v/cfg", True), ("/data", "/state/v/d", False)),
                            memory=(("/state/v/d", "size=1m"), ("/state/v/e", "")), scratch="/state/mnt")
    _, _, lists = _podsetup.parse(setup_command(with_volumes)[4:])
    assert lists["--volume"] == ["/etc/cfg\0/state/v/cfg\0ro", "/data\0/state/v/d\0rw"]
    assert lists["--memory"] == ["/state/v/d\0size=1m", "/state/v/e\0-"]
    assert lists["--scratch"] == ["/state/mnt"]
    with pytest.raises(NetsimError, match="scratch directory"):
        PodPlace("web-0", volumes=(("/etc/cfg", "/state/v/cfg", True),))
    with pytest.raises(SystemExit, match="unexpected argument '--bind'"):
        _podsetup.parse(["web-0", "--bind", "/only-one"])
