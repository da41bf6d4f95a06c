"""Defect 1: `kubesim down --name` removed arbitrary directories. A cluster name is a DNS-1123 label
wherever it enters, the state root must be a directory of its own, and only a direct child of the state
root carrying kubesim's marker is ever removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kubesim.errors import StateError, StateInputError
from kubesim.state import MARKER, ClusterState, known_clusters

REPO = Path(__file__).resolve().parents[2]


def _kubesim(state_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBESIM_STATE_DIR": state_dir}
    return subprocess.run([sys.executable, "-m", "kubesim", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, check=False)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A directory that `down` must never remove, with a file in it."""
    directory = tmp_path / "victim"
    directory.mkdir()
    (directory / "precious").write_text("keep me")
    return directory


def _name_forms(victim: Path) -> list[str]:
    # Absolute, relative to the state root (tmp_path/state), deep relative, and the worst of all.
    return [str(victim), "../victim", "../../../../../../../../" + str(victim).lstrip("/"), "/", "..", "."]


@pytest.mark.parametrize("form", range(6))
@pytest.mark.parametrize("command", ["down", "status", "kubeconfig", "logs", "graph"])
def test_a_path_as_cluster_name_exits_2_naming_the_rule_and_touches_nothing(command: str, form: int, victim: Path,
                                                                            tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    name = _name_forms(victim)[form]
    extra = ["apiserver"] if command == "logs" else []
    done = _kubesim(str(state), command, "--name", name, *extra)
    assert done.returncode == 2, done.stderr
    assert "Invalid value for '--name'" in done.stderr and "DNS-1123 label" in done.stderr
    assert "Traceback" not in done.stderr
    assert (victim / "precious").read_text() == "keep me"
    assert list(state.iterdir()) == []


def test_down_all_ignores_directories_kubesim_did_not_make(victim: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "looks-like-a-cluster").mkdir()
    (state / "evil").symlink_to(victim)
    done = _kubesim(str(state), "down", "--all")
    # Without root `down` stops at the root check; either way nothing outside kubesim's own is touched.
    assert done.returncode in (0, 1), done.stderr
    assert (victim / "precious").exists()
    assert (state / "looks-like-a-cluster").is_dir()


@pytest.mark.parametrize("root, words", [
    ("/", "is a system directory"),
    ("relative/state", "is not an absolute path"),
    ("", "is not an absolute path"),
    ("/etc", "is a system directory"),
    ("/tmp/../", "is a system directory"),
    ("/usr/", "is a system directory"),
])
def test_a_wrong_state_root_exits_2_with_the_fix(root: str, words: str) -> None:
    for args in (["down", "--name", "kubesim"], ["status"], ["up", "--name", "x"]):
        done = _kubesim(root, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert f"KUBESIM_STATE_DIR {root!r} {words}" in done.stderr
        assert "set KUBESIM_STATE_DIR to" in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", ["../victim", "/tmp/x", "a/b", "UPPER", "", "x" * 33, "ok\n"])
def test_cluster_state_refuses_invalid_names(name: str, tmp_path: Path) -> None:
    with pytest.raises(StateInputError, match="cluster name"):
        ClusterState(name, tmp_path)


def test_cluster_state_refuses_a_relative_or_system_root() -> None:
    with pytest.raises(StateInputError, match="not an absolute path"):
        ClusterState("kubesim", Path("state"))
    with pytest.raises(StateInputError, match="system directory"):
        ClusterState("kubesim", Path("/"))


def test_created_state_directories_carry_the_marker_and_are_listed(tmp_path: Path) -> None:
    state = ClusterState("demo", tmp_path)
    with state.locked(create=True):
        pass
    assert (tmp_path / "demo" / MARKER).is_file()
    assert state.exists
    assert known_clusters(tmp_path) == ["demo"]
    state.remove()
    assert not (tmp_path / "demo").exists()
    assert known_clusters(tmp_path) == []


def test_only_marked_valid_direct_children_are_clusters(victim: Path, tmp_path: Path) -> None:
    root = tmp_path / "state"
    root.mkdir()
    (root / "unmarked").mkdir()
    (root / "Not_A_Label").mkdir()
    (root / "Not_A_Label" / MARKER).write_text("")
    (victim / MARKER).write_text("")  # even a marker does not make a symlinked directory ours
    (root / "linked").symlink_to(victim)
    with ClusterState("real", root).locked(create=True):
        pass
    assert known_clusters(root) == ["real"]
    for name in ("unmarked", "linked"):
        state = ClusterState(name, root)
        assert not state.exists
        with pytest.raises(StateError, match="refusing to remove"):
            state.remove()
    assert (root / "unmarked").is_dir()
    assert (victim / "precious").read_text() == "keep me"


def test_create_refuses_a_directory_kubesim_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "theirs").write_text("")
    with pytest.raises(StateError, match="was not made by kubesim"), ClusterState("taken", tmp_path).locked(
            create=True):
        pass
    assert not (tmp_path / "taken" / MARKER).exists()


def test_journal_lines_naming_what_is_not_the_clusters_are_never_acted_on(tmp_path: Path) -> None:
    state = ClusterState("demo", tmp_path)
    with state.locked(create=True):
        state.record("netns", "ksim-demo.node.worker-1")
        state.record("link", "ksim-1a2b3c4d")
        state.record("netns", "ksim-other.node.worker-1")  # another cluster's
        state.record("netns", "production")
        state.record("link", "eth0")
    assert state.recorded_objects() == [("netns", "ksim-demo.node.worker-1"), ("link", "ksim-1a2b3c4d")]
