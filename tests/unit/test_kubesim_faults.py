"""kubesim's fault record and its all-or-nothing changes, against a state directory in tmp_path and a
recording runner; the topology's `faults:` field; and the CLI's answers to bad input (exit 2, nothing
recorded), none of which needs privileges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kubesim import faults
from kubesim.cli import main
from kubesim.state import ClusterState
from netsim.errors import FaultError, FaultInputError, TopologyError
from netsim.faults import make_fault, nft_script
from netsim.topology import load_topology, parse_topology
from tests.unit.netsim.test_fault_rules import FABRIC, W1, W2, Recorder

TOPOLOGIES = Path(__file__).resolve().parents[2] / "topologies"


@pytest.fixture
def state(tmp_path: Path) -> ClusterState:
    made = ClusterState("kubesim", tmp_path)
    with made.locked(create=True):
        made.save_topology(load_topology(TOPOLOGIES / "two-node.yaml"))
    return made


def all_there(ns: str) -> bool:
    return True


@pytest.fixture(autouse=True)
def namespaces_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    # reconcile skips namespaces that are gone; these tests pretend the cluster's are all there.
    monkeypatch.setattr("netsim.namespaces.exists", all_there)


def test_a_fault_is_recorded_atomically_and_applied(state):
    run = Recorder()
    faults.add(state, make_fault("loss", ["worker-2"], percent=30), run=run)
    assert json.loads((state.dir / "faults.json").read_text()) == {
        "faults": [{"type": "loss", "node": "worker-2", "percent": 30}]}
    assert [p.name for p in state.dir.iterdir() if "fault" in p.name] == ["faults.json"]  # no temporary left
    assert run.namespaces() == [W2]
    faults.add(state, make_fault("partition", ["worker-1", "control-plane"]), run=run)
    assert [f.kind for f in faults.recorded(state)] == ["loss", "partition"]


def test_bad_input_changes_nothing(state):
    run = Recorder()
    faults.add(state, make_fault("rate", ["worker-2"], rate="1mbit"), run=run)
    before = (state.dir / "faults.json").read_text()
    run.calls.clear()
    with pytest.raises(FaultInputError, match="'worker-9' is not a node or external host"):
        faults.add(state, make_fault("loss", ["worker-9"], percent=3), run=run)
    with pytest.raises(FaultInputError, match="already has a rate fault"):
        faults.add(state, make_fault("delay", ["worker-2"], delay="10ms"), run=run, netem=lambda: (True, ""))
    assert run.calls == []
    assert (state.dir / "faults.json").read_text() == before


def test_a_kernel_refusal_restores_the_record_and_the_namespaces(state):
    faults.add(state, make_fault("loss", ["worker-1"], percent=5), run=Recorder())
    run = Recorder(fail_on=(W2, "nft"))
    with pytest.raises(FaultError):
        faults.change(state, state.topology(), [make_fault("loss", ["worker-1"], percent=50),
                                                make_fault("loss", ["worker-2"], percent=50)], run=run)
    assert faults.recorded(state) == [make_fault("loss", ["worker-1"], percent=5)]
    worker1 = [stdin for ns, argv, stdin in run.calls if ns == W1 and argv[0] == "nft"]
    assert "< 50 drop" in str(worker1[0]) and "< 5 drop" in str(worker1[-1])


def test_delay_is_refused_without_netem(state):
    run = Recorder()
    with pytest.raises(FaultError, match=r"lacks netem \(sch_netem\).*nothing was changed") as caught:
        faults.add(state, make_fault("delay", ["worker-1"], delay="100ms"), run=run,
                   netem=lambda: (False, "Error: Specified qdisc kind is unknown."))
    assert not isinstance(caught.value, FaultInputError)
    assert "qdisc kind is unknown" in str(caught.value)
    assert run.calls == [] and faults.recorded(state) == []


def test_delay_where_the_kernel_has_netem(state):
    run = Recorder()
    faults.add(state, make_fault("delay", ["worker-1"], delay="100ms", jitter="10ms"), run=run,
               netem=lambda: (True, ""))
    assert run.calls[-1][1][-5:] == ["1f4a:", "netem", "delay", "100ms", "10ms"]


def test_clear_a_node_then_everything(state):
    run = Recorder(show="qdisc tbf 1f4a: root refcnt 2")
    for fault in (make_fault("loss", ["worker-2"], percent=30), make_fault("rate", ["worker-1"], rate="1mbit"),
                  make_fault("partition", ["worker-1", "control-plane"])):
        faults.add(state, fault, run=run)
    lifted = faults.clear(state, "worker-1", run=run)
    assert sorted(f.kind for f in lifted) == ["partition", "rate"]
    assert faults.recorded(state) == [make_fault("loss", ["worker-2"], percent=30)]
    with pytest.raises(FaultInputError, match="'nope' is not a node"):
        faults.clear(state, "nope", run=run)
    run.calls.clear()
    assert faults.clear(state, run=run) == [make_fault("loss", ["worker-2"], percent=30)]
    assert faults.recorded(state) == []
    assert FABRIC in run.namespaces() and W1 in run.namespaces()  # swept, recorded or not


def test_down_lifts_what_the_record_names(state):
    run = Recorder()
    faults.add(state, make_fault("link-down", ["worker-1"]), run=run)
    run.calls.clear()
    assert faults.undo_for_down(state, run=run) == ["fault link down on worker-1"]
    assert run.calls == [(FABRIC, ["nft", "-f", "-"], nft_script("bridge", [])),
                         (FABRIC, ["ip", "link", "set", "dev", "p-worker-1", "up"], None)]
    assert not (state.dir / "faults.json").exists()
    assert faults.undo_for_down(state, run=run) == []


def test_a_torn_or_foreign_record_names_nothing(state):
    (state.dir / "faults.json").write_text("{not json")
    assert faults.recorded(state) == []
    (state.dir / "faults.json").write_text(json.dumps({"faults": [{"type": "loss", "node": "w", "percent": 999},
                                                                  {"type": "link-down", "node": "worker-1"}]}))
    assert faults.recorded(state) == [make_fault("link-down", ["worker-1"])]


# -- the topology's faults: ----------------------------------------------------------------------------


def _topology_with(fault_entries):
    data = yaml.safe_load((TOPOLOGIES / "two-node.yaml").read_text())
    data["faults"] = fault_entries
    return parse_topology(data, source="t.yaml")


def test_topology_faults_resolve_and_round_trip():
    topo = _topology_with([{"type": "partition", "nodes": ["worker-1", "control-plane"]},
                           {"type": "loss", "node": "worker-2", "percent": "30%"},
                           {"type": "rate", "node": "worker-2", "rate": "10Mbit"},
                           {"type": "loss", "node": "worker-2", "percent": 10}])
    assert topo.faults == (make_fault("partition", ["worker-1", "control-plane"]),
                           make_fault("rate", ["worker-2"], rate="10mbit"),
                           make_fault("loss", ["worker-2"], percent=10))  # a later loss replaces the earlier
    assert parse_topology(topo.to_dict()).faults == topo.faults


@pytest.mark.parametrize(("entry", "problem"), [
    ({"type": "loss", "node": "worker-9", "percent": 3}, "t.yaml: faults[0].node: 'worker-9' is not a node"),
    ({"type": "loss", "node": "worker-2", "percent": 101}, "t.yaml: faults[0].percent: loss 101: give a whole "
                                                           "percentage from 0 to 100"),
    ({"type": "rate", "node": "worker-2", "rate": "fast"}, "t.yaml: faults[0].rate: rate 'fast' is malformed"),
    ({"type": "partition", "nodes": ["worker-1", "worker-1"]}, "t.yaml: faults[0].nodes: partition worker-1 "
                                                                "worker-1: a node cannot be partitioned from itself"),
    ({"type": "cut", "node": "worker-1"}, "t.yaml: faults[0].type: 'cut' is not one of"),
    ({"type": "rate", "node": "worker-2", "rate": "1mbit", "burst": 9}, "t.yaml: faults[0].burst: unknown field"),
])
def test_topology_fault_mistakes_name_the_field(entry, problem):
    with pytest.raises(TopologyError) as caught:
        _topology_with([entry])
    assert str(caught.value).startswith(problem), str(caught.value)


def test_topology_faults_must_be_a_list():
    with pytest.raises(TopologyError, match="faults: must be a list"):
        _topology_with({"type": "loss"})


# -- the CLI ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "words"), [
    (["loss", "130", "worker-2"], "whole percentage from 0 to 100"),
    (["loss", "-5%", "worker-2"], "whole percentage from 0 to 100"),
    (["rate", "lots", "worker-2"], "malformed"),
    (["partition", "worker-1", "worker-1"], "cannot be partitioned from itself"),
    (["delay", "soon", "worker-1"], "malformed"),
])
def test_cli_bad_values_exit_2_before_anything(argv, words, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESIM_STATE_DIR", str(tmp_path))
    done = CliRunner().invoke(main, ["fault", *argv[:1], "--", *argv[1:]])
    assert done.exit_code == 2, done.output
    assert words in done.output
    assert list(tmp_path.iterdir()) == []


def test_cli_list_of_a_cluster_without_faults(state, monkeypatch):
    monkeypatch.setenv("KUBESIM_STATE_DIR", str(state.root))
    assert CliRunner().invoke(main, ["fault", "list"]).output == "no faults\n"
    faults.add(state, make_fault("rate", ["worker-2"], rate="10mbit"), run=Recorder())
    listed = CliRunner().invoke(main, ["fault", "list", "--json"])
    assert json.loads(listed.output) == [{"type": "rate", "node": "worker-2", "rate": "10mbit"}]


def test_up_refuses_a_topology_with_a_bad_fault_before_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBESIM_STATE_DIR", str(tmp_path / "state"))
    data = yaml.safe_load((TOPOLOGIES / "two-node.yaml").read_text())
    data["faults"] = [{"type": "loss", "node": "worker-2", "percent": 300}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    done = CliRunner().invoke(main, ["up", str(path)])
    assert done.exit_code == 2
    assert f"{path}: faults[0].percent: loss 300: give a whole percentage from 0 to 100" in done.output
    assert not (tmp_path / "state").exists()
