"""Every truth-table case, as a whole 9 x 9 matrix, against the pure decision."""

from __future__ import annotations

import pytest

from netpol.decide import ClusterView, decide
from netpol.model import parse_namespace, parse_pod
from tests.netpol_cases import (
    ALL_PODS,
    CASES,
    MATRIX_CASES,
    Case,
    Reachability,
    cluster_objects,
    compare,
    default_addresses,
    view_parts,
)


def view_for(case: Case) -> tuple[ClusterView, dict]:
    ips, nodes = default_addresses()
    namespaces, pods = cluster_objects(ips, nodes)
    view = ClusterView(
        **view_parts(case.policies(ips)),
        pods=[p for p in (parse_pod(o) for o in pods) if p is not None],
        namespaces=[parse_namespace(o) for o in namespaces],
        nodes={"node-1": [], "node-2": []},
    )
    return view, ips


def observed(case: Case) -> Reachability:
    view, ips = view_for(case)
    return Reachability({
        (s, d): decide(view, ips[s], ips[d], case.protocol, case.port).allowed for s in ALL_PODS for d in ALL_PODS
    })


def test_there_are_enough_cases_to_cover_the_rules() -> None:
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", MATRIX_CASES, ids=[c.name for c in MATRIX_CASES])
def test_matrix(case: Case) -> None:
    problem = compare(case.matrix(), observed(case))
    assert not problem, problem


def test_a_wrong_expectation_is_caught_and_drawn() -> None:
    # The comparison itself must be able to fail: deny-all with an "everything allowed" expectation.
    deny = next(c for c in CASES if c.name == "deny all ingress in x")
    wrong = Case("wrong", deny.policies, lambda s, d: True)
    problem = compare(wrong.matrix(), observed(deny))
    assert problem.startswith("24 pairs differ")  # 9 sources x 3 pods of x, less 3 selves
    assert "X*" in problem
