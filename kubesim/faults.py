"""Fault injection on a live cluster: the record in the state directory, and the one path every way of
asking goes through (`kubesim fault`, the topology's `faults:` at `up`, kubesim.testing.Cluster).

The record is <state>/faults.json, a list of faults rewritten atomically (temporary file, fsync,
rename) *before* the kernel is changed, so a crash never leaves a fault that nothing names. A change is
all or nothing: the new list is checked whole (members, values, one qdisc per node) before anything is
touched, and if the kernel refuses part of it the namespaces already changed and the record are put
back. What the faults are made of (netsim.faults) lives only inside the cluster's namespaces.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from kubesim.errors import StateError
from kubesim.state import ClusterState
from netsim import faults as netfaults
from netsim.errors import FaultError, FaultInputError, NetsimError
from netsim.faults import Fault, Runner
from netsim.topology import Topology

FAULTS_FILE = "faults.json"
NetemProbe = Callable[[], tuple[bool, str]]


def _path(state: ClusterState) -> Path:
    return state.dir / FAULTS_FILE


def recorded(state: ClusterState) -> list[Fault]:
    """The faults the record names; an unreadable record names none (a torn write never happens: it is
    replaced by rename), and an entry that is not a valid fault is ignored."""
    try:
        data = json.loads(_path(state).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    found = []
    for raw in data.get("faults", []) if isinstance(data, dict) else []:
        try:
            found.append(netfaults.fault_from_dict(raw))
        except FaultInputError:
            continue
    return found


def _save(state: ClusterState, faults: list[Fault]) -> None:
    path = _path(state)
    tmp = path.with_name(f".{FAULTS_FILE}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (json.dumps({"faults": [f.to_dict() for f in faults]}, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(state.dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _topology(state: ClusterState) -> Topology:
    if not state.exists:
        raise StateError(f"cluster {state.name!r} does not exist; bring it up with `kubesim up`")
    topology = state.topology()
    if topology is None:
        raise StateError(f"cluster {state.name!r} has no topology recorded; run `kubesim down` and `up` again")
    return topology


def members(topology: Topology) -> list[str]:
    return [n.name for n in topology.nodes] + [h.name for h in topology.external_hosts]


def change(state: ClusterState, topology: Topology, new: list[Fault], *, run: Runner = netfaults.run_in,
           netem: NetemProbe = netfaults.netem_available) -> list[Fault]:
    """Make NEW the cluster's faults (the caller holds the cluster's lock). Checked whole first; then
    recorded; then applied where it differs from what is recorded now; undone on any failure."""
    netfaults.check(new, members(topology))
    if any(f.kind == "delay" for f in new):
        available, why = netem()
        if not available:
            raise FaultError("this kernel lacks netem (sch_netem), which a delay fault needs: a netem qdisc "
                             f"could not be made in a scratch namespace ({why or 'tc refused'}). Load it with "
                             "`modprobe sch_netem` or use a kernel built with CONFIG_NET_SCH_NETEM; nothing was "
                             "changed")
    old = recorded(state)
    _save(state, new)
    try:
        netfaults.reconcile(netfaults.plan(topology, old), netfaults.plan(topology, new), run=run)
    except BaseException:
        _save(state, old)
        raise
    return new


def add(state: ClusterState, fault: Fault, *, run: Runner = netfaults.run_in,
        netem: NetemProbe = netfaults.netem_available) -> list[Fault]:
    """Inject FAULT (replacing one of the same kind on the same members); the faults now in force."""
    topology = _topology(state)
    with state.locked():
        return change(state, topology, netfaults.merge(recorded(state), fault), run=run, netem=netem)


def remove(state: ClusterState, fault: Fault, *, run: Runner = netfaults.run_in) -> list[Fault]:
    """Lift the fault of FAULT's slot (link-up lifts link-down); the faults lifted."""
    topology = _topology(state)
    with state.locked():
        current = recorded(state)
        lifted = [f for f in current if f.slot == fault.slot]
        if lifted:
            change(state, topology, [f for f in current if f.slot != fault.slot], run=run)
        return lifted


def clear(state: ClusterState, member: str | None = None, *, run: Runner = netfaults.run_in) -> list[Fault]:
    """Lift every fault involving MEMBER, or every fault there is (and sweep for any the record lost);
    the faults lifted."""
    topology = _topology(state)
    if member is not None and member not in members(topology):
        raise FaultInputError(f"{member!r} is not a node or external host of cluster {state.name!r} (it has: "
                              f"{', '.join(members(topology))})")
    with state.locked():
        current = recorded(state)
        if member is not None:
            lifted = [f for f in current if f.involves(member)]
            change(state, topology, [f for f in current if not f.involves(member)], run=run)
            return lifted
        _save(state, [])
        # Everything of ours, not only what the record names: the sweep removes kubesim's table, qdisc
        # and held-down ports wherever they are, so clear --all always ends with a clean cluster.
        netfaults.remove_all(netfaults.sweep_plan(topology), run=run)
        return current


def undo_for_down(state: ClusterState, *, run: Runner = netfaults.run_in) -> list[str]:
    """At `down` (lock held): lift what the record names, in the namespaces that still exist, before they
    are removed; a failure here never stops a `down`. What was lifted, for down's list."""
    faults = recorded(state)
    if not faults:
        return []
    try:
        topology = state.topology()
        if topology is not None:
            netfaults.remove_all(netfaults.plan(topology, faults), run=run)
    except NetsimError:
        pass  # the namespaces, and every fault object in them, are removed next anyway
    _path(state).unlink(missing_ok=True)
    return [f"fault {f.describe()}" for f in faults]
