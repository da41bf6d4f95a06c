"""`kubesim up --user NAME[:GROUPS]`: a user with a token and kubeconfig of its own and no power until RBAC binds
it; bad names are refused naming the fix."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from kubesim.cli import parse_users
from kubesim.components import _identities
from netsim.topology import load_topology

REPO = Path(__file__).resolve().parents[3]


def test_users_parse_with_their_groups() -> None:
    assert parse_users(None, None, ("alice:devs,ops", "bob")) == (("alice", ("devs", "ops")), ("bob", ()))


@pytest.mark.parametrize(("value", "says"), [
    ("Alice", "lower-case"), ("-alice", "lower-case"), ("a/b", "lower-case"), ("", "lower-case"),
    ("carol:system:masters", "system: groups belong"),
])
def test_bad_users_are_refused_naming_the_fix(value: str, says: str) -> None:
    with pytest.raises(click.BadParameter, match=says):
        parse_users(None, None, (value,))


def test_a_user_given_twice_is_refused() -> None:
    with pytest.raises(click.BadParameter, match="given twice"):
        parse_users(None, None, ("alice", "alice:devs"))


def test_users_get_identities_of_their_own() -> None:
    topology = load_topology(REPO / "topologies" / "two-node.yaml")
    rows = _identities(topology, (("alice", ("devs",)),))
    assert ("user-alice", "alice", ("devs",)) in rows
    assert rows[:len(_identities(topology))] == _identities(topology)  # the components' are unchanged
