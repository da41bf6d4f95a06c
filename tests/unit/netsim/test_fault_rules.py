"""Faults as data: parsing and validation of every value, the plan (a pure function of the faults),
the nft/tc/ip commands rendered from it, and reconcile's all-or-nothing application through a
recording runner (the kernel tier applies the same commands for real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netsim import faults
from netsim.errors import FaultError, FaultInputError
from netsim.faults import Fault, NamespacePlan, make_fault
from netsim.topology import load_topology

TOPOLOGIES = Path(__file__).resolve().parents[3] / "topologies"
MEMBERS = ["control-plane", "worker-1", "worker-2", "client"]
W1, W2, FABRIC = "ksim-kubesim.node.worker-1", "ksim-kubesim.node.worker-2", "ksim-kubesim.fabric"


@pytest.fixture
def topology():
    return load_topology(TOPOLOGIES / "two-node.yaml")


class Recorder:
    """A runner that records (namespace, argv, stdin), answers `tc qdisc show` with SHOW, and fails the
    command whose argv contains FAIL_ON."""

    def __init__(self, show: str = "", fail_on: tuple[str, str] | None = None):
        self.calls: list[tuple[str, list[str], str | None]] = []
        self.show = show
        self.fail_on = fail_on

    def __call__(self, ns: str, argv: list[str], stdin: str | None) -> str:
        self.calls.append((ns, argv, stdin))
        if self.fail_on and ns == self.fail_on[0] and self.fail_on[1] in argv:
            raise FaultError(f"{argv[0]} failed in {ns}")
        return self.show if argv[:3] == ["tc", "qdisc", "show"] else ""

    def namespaces(self) -> list[str]:
        return sorted({ns for ns, _, _ in self.calls})


# -- values -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [(0, 0), (30, 30), ("30", 30), ("30%", 30), (100, 100)])
def test_percentages(given, expected):
    assert faults.parse_percent(given) == expected


@pytest.mark.parametrize("given", [-1, 101, "101%", 30.5, "30.5", "abc", "", True, None])
def test_bad_percentages_name_the_range(given):
    with pytest.raises(FaultInputError, match="whole percentage from 0 to 100") as caught:
        faults.parse_percent(given)
    assert caught.value.field == "percent"


@pytest.mark.parametrize(("given", "expected"), [
    ("10mbit", "10mbit"), ("10Mbit", "10mbit"), ("10000kbit", "10mbit"), ("1mbps", "8mbit"),
    ("1.5mbit", "1500kbit"), ("64kbit", "64kbit"), ("1gbit", "1gbit"), ("8000bit", "8kbit")])
def test_rates_are_written_canonically(given, expected):
    assert faults.parse_rate(given) == expected


@pytest.mark.parametrize(("given", "words"), [
    ("fast", "malformed"), ("10", "malformed"), ("10 furlongs", "malformed"), ("-5mbit", "malformed"),
    (10, "malformed"), ("1bit", "outside"), ("0mbit", "outside"), ("1tbit", "outside")])
def test_bad_rates(given, words):
    with pytest.raises(FaultInputError, match=words) as caught:
        faults.parse_rate(given)
    assert caught.value.field == "rate"
    assert "10mbit" in str(caught.value)  # the message shows how to write one


def test_delays_and_jitter():
    assert make_fault("delay", ["worker-1"], delay="100ms").delay == "100ms"
    assert make_fault("delay", ["worker-1"], delay="1.5s", jitter="500ms") == Fault(
        "delay", ("worker-1",), delay="1500ms", jitter="500ms")
    with pytest.raises(FaultInputError, match="malformed"):
        make_fault("delay", ["worker-1"], delay="soon")
    with pytest.raises(FaultInputError, match="more than 0 and at most 60s"):
        make_fault("delay", ["worker-1"], delay="0ms")
    with pytest.raises(FaultInputError, match="larger than delay") as caught:
        make_fault("delay", ["worker-1"], delay="10ms", jitter="20ms")
    assert caught.value.field == "jitter"


def test_partition_of_a_node_with_itself_is_refused():
    with pytest.raises(FaultInputError, match="cannot be partitioned from itself"):
        make_fault("partition", ["worker-1", "worker-1"])
    with pytest.raises(FaultInputError, match="two members"):
        make_fault("partition", ["worker-1"])
    with pytest.raises(FaultInputError, match="one node"):
        make_fault("loss", ["worker-1", "worker-2"], percent=3)
    # Either order names the same partition.
    assert make_fault("partition", ["worker-1", "control-plane"]) == make_fault("partition", ["control-plane",
                                                                                            "worker-1"])


@pytest.mark.parametrize("fault", [
    make_fault("link-down", ["worker-1"]), make_fault("partition", ["worker-1", "control-plane"]),
    make_fault("loss", ["worker-2"], percent=30), make_fault("rate", ["worker-2"], rate="10mbit"),
    make_fault("delay", ["worker-1"], delay="100ms", jitter="10ms")])
def test_every_kind_round_trips_through_its_mapping(fault):
    assert faults.fault_from_dict(fault.to_dict()) == fault


@pytest.mark.parametrize(("raw", "field", "words"), [
    ({"type": "bogus"}, "type", "not one of link-down"),
    ({"type": "loss", "node": "worker-2"}, "percent", "required"),
    ({"type": "loss", "node": "worker-2", "percent": 300}, "percent", "0 to 100"),
    ({"type": "loss", "nodes": ["worker-2"], "percent": 3}, "nodes", "unknown field"),
    ({"type": "rate", "node": "worker-2", "rate": "quick"}, "rate", "malformed"),
    ({"type": "partition", "nodes": ["a"]}, "nodes", "two members"),
    ({"type": "partition", "nodes": ["a", "a"]}, "nodes", "itself"),
    ({"type": "link-down"}, "node", "names one node"),
])
def test_mapping_errors_name_the_field(raw, field, words):
    with pytest.raises(FaultInputError, match=words) as caught:
        faults.fault_from_dict(raw)
    assert caught.value.field == field


def test_check_names_unknown_members_and_qdisc_conflicts():
    with pytest.raises(FaultInputError, match="'worker-9' is not a node or external host") as caught:
        faults.check([make_fault("loss", ["worker-9"], percent=1)], MEMBERS)
    assert "worker-1" in str(caught.value)  # it lists the members there are
    with pytest.raises(FaultInputError, match="already has a rate fault"):
        faults.check([make_fault("rate", ["worker-1"], rate="1mbit"),
                      make_fault("delay", ["worker-1"], delay="1ms")], MEMBERS)
    faults.check([make_fault("rate", ["worker-1"], rate="1mbit"), make_fault("delay", ["worker-2"], delay="1ms"),
                  make_fault("partition", ["client", "control-plane"])], MEMBERS)


def test_a_fault_of_the_same_slot_replaces_the_old_one():
    first = [make_fault("loss", ["worker-2"], percent=30), make_fault("partition", ["worker-1", "control-plane"])]
    merged = faults.merge(first, make_fault("loss", ["worker-2"], percent=10))
    assert merged == [first[1], make_fault("loss", ["worker-2"], percent=10)]
    assert len(faults.merge(merged, make_fault("loss", ["worker-1"], percent=10))) == 3


# -- plan and render ------------------------------------------------------------------------------------


def test_plan_puts_each_fault_in_its_namespace(topology):
    plans = faults.plan(topology, [
        make_fault("loss", ["worker-2"], percent=30), make_fault("rate", ["worker-1"], rate="10mbit"),
        make_fault("partition", ["worker-1", "control-plane"]), make_fault("link-down", ["client"])])
    assert set(plans) == {W1, W2, FABRIC}  # nothing in the root namespace, nothing elsewhere
    assert plans[W2] == NamespacePlan(rules=('oifname "eth0" numgen random mod 100 < 30 drop',))
    assert plans[W1] == NamespacePlan(qdisc=("tbf", "rate", "10000000bit", "burst", "25000", "latency", "50ms"))
    assert plans[FABRIC] == NamespacePlan(family="bridge", rules=(
        'iifname "p-control-plane" oifname "p-worker-1" drop', 'iifname "p-worker-1" oifname "p-control-plane" drop'),
        links_down=("p-client",))
    assert faults.plan(topology, []) == {}
    assert faults.plan(topology, [make_fault("loss", ["worker-2"], percent=0)]) == {}  # 0% drops nothing


def test_nft_script_replaces_the_table_in_one_transaction():
    assert faults.nft_script("inet", ['oifname "eth0" numgen random mod 100 < 30 drop']) == (
        "table inet kubesim-fault\n"
        "delete table inet kubesim-fault\n"
        "table inet kubesim-fault {\n"
        "\tchain egress {\n"
        "\t\ttype filter hook postrouting priority 0; policy accept;\n"
        '\t\toifname "eth0" numgen random mod 100 < 30 drop\n'
        "\t}\n"
        "}\n")
    bridge = faults.nft_script("bridge", ['iifname "p-a" oifname "p-b" drop'])
    assert "table bridge kubesim-fault {\n\tchain forward {\n\t\ttype filter hook forward priority 0;" in bridge
    # No rules: declared (so the delete cannot fail when it is absent), then deleted.
    assert faults.nft_script("inet", []) == "table inet kubesim-fault\ndelete table inet kubesim-fault\n"


def test_tc_and_ip_commands():
    assert faults.qdisc_replace_argv(faults.tbf_args("1mbit")) == [
        "tc", "qdisc", "replace", "dev", "eth0", "root", "handle", "1f4a:", "tbf", "rate", "1000000bit",
        "burst", "16384", "latency", "50ms"]
    assert faults.netem_args("100ms", "10ms") == ("netem", "delay", "100ms", "10ms")
    assert faults.qdisc_delete_argv() == ["tc", "qdisc", "del", "dev", "eth0", "root", "handle", "1f4a:"]
    assert faults.link_argv("p-worker-1", up=False) == ["ip", "link", "set", "dev", "p-worker-1", "down"]
    assert faults.is_ours("qdisc tbf 1f4a: root refcnt 3 rate 10Mbit burst 25000b lat 50ms")
    assert not faults.is_ours("qdisc tbf 8001: root refcnt 3 rate 10Mbit burst 25000b lat 50ms")
    assert not faults.is_ours("qdisc noqueue 0: root refcnt 2")


# -- reconcile ------------------------------------------------------------------------------------------


def test_reconcile_touches_only_what_changed(topology):
    old = faults.plan(topology, [make_fault("loss", ["worker-2"], percent=30)])
    new = faults.plan(topology, [make_fault("loss", ["worker-2"], percent=30),
                                 make_fault("link-down", ["worker-1"])])
    run = Recorder()
    assert faults.reconcile(old, new, run=run, exists=lambda ns: True) == [FABRIC]
    # The fabric's table holds no rules before or after: only the port is touched.
    assert [argv for _, argv, _ in run.calls] == [["ip", "link", "set", "dev", "p-worker-1", "down"]]
    run = Recorder()
    faults.reconcile(new, old, run=run, exists=lambda ns: True)
    assert run.calls[-1][1] == ["ip", "link", "set", "dev", "p-worker-1", "up"]


def test_a_qdisc_is_removed_only_if_it_is_ours(topology):
    old = faults.plan(topology, [make_fault("rate", ["worker-1"], rate="1mbit")])
    theirs = Recorder(show="qdisc tbf 8001: root refcnt 2 rate 1Mbit")
    faults.reconcile(old, {}, run=theirs, exists=lambda ns: True)
    assert [argv[:3] for _, argv, _ in theirs.calls] == [["tc", "qdisc", "show"]]
    ours = Recorder(show="qdisc tbf 1f4a: root refcnt 2 rate 1Mbit")
    faults.reconcile(old, {}, run=ours, exists=lambda ns: True)
    assert ours.calls[-1][1] == faults.qdisc_delete_argv()


def test_a_failure_puts_back_what_was_already_changed(topology):
    new = faults.plan(topology, [make_fault("loss", ["worker-1"], percent=10),
                                 make_fault("loss", ["worker-2"], percent=20)])
    run = Recorder(fail_on=(W2, "nft"))
    with pytest.raises(FaultError):
        faults.reconcile({}, new, run=run, exists=lambda ns: True)
    scripts = [(ns, stdin) for ns, argv, stdin in run.calls if argv[0] == "nft"]
    assert scripts[0][0] == W1 and "< 10 drop" in str(scripts[0][1])
    assert scripts[-1] == (W1, faults.nft_script("inet", []))  # worker-1 back to no table


def test_a_namespace_that_is_gone_is_skipped(topology):
    old = faults.plan(topology, [make_fault("loss", ["worker-1"], percent=10)])
    run = Recorder()
    assert faults.reconcile(old, {}, run=run, exists=lambda ns: False) == []
    assert run.calls == []


def test_the_sweep_removes_every_kind_of_ours_everywhere(topology):
    run = Recorder(show="qdisc netem 1f4a: root refcnt 2")
    faults.remove_all(faults.sweep_plan(topology), run=run, exists=lambda ns: True)
    assert run.namespaces() == sorted([FABRIC, W1, W2, "ksim-kubesim.node.control-plane", "ksim-kubesim.ext.client"])
    assert (FABRIC, faults.nft_script("bridge", [])) in [(ns, stdin) for ns, _, stdin in run.calls]
    assert sum(argv == faults.qdisc_delete_argv() for _, argv, _ in run.calls) == 4  # each member's eth0
    assert sum(argv[-1] == "up" for _, argv, _ in run.calls) == 4  # every fabric port
    assert not any(argv[0] == "tc" for ns, argv, _ in run.calls if ns == FABRIC)


def test_commands_never_run_outside_the_clusters_namespaces():
    with pytest.raises(FaultError, match="outside kubesim's namespaces"):
        faults.run_in("default", ["nft", "list", "ruleset"])


def test_removing_all_goes_on_past_a_failure_and_never_puts_anything_back(topology):
    run = Recorder(fail_on=(W1, "nft"))
    with pytest.raises(FaultError, match=f"nft failed in {W1}$"):
        faults.remove_all(faults.sweep_plan(topology), run=run, exists=lambda ns: True)
    assert W2 in run.namespaces() and FABRIC in run.namespaces()  # the ones after it were still cleaned
    assert not any(argv[-1] == "down" for _, argv, _ in run.calls)  # no port taken down on the way out


def test_a_fault_for_a_namespace_that_is_gone_is_refused_before_anything(topology):
    new = faults.plan(topology, [make_fault("loss", ["worker-1"], percent=10),
                                 make_fault("loss", ["worker-2"], percent=10)])
    run = Recorder()
    with pytest.raises(FaultError, match=f"namespace {W2} does not exist.*nothing was changed"):
        faults.reconcile({}, new, run=run, exists=lambda ns: ns != W2)
    assert run.calls == []
