"""Defect 11: hostile or mistaken topology files. Invalid UTF-8 and deep nesting gave a traceback,
duplicate keys were accepted, node mistakes hid behind network ones, /30 pod CIDRs passed, and an
alias bomb cost seconds and hundreds of MB. Each is now exit 2 with every mistake listed (file, field
path, fix), within bounded time and memory, before anything is made (so `up` shows it without root)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from netsim.errors import TopologyError
from netsim.topology import MAX_ALIASES, MAX_DEPTH, MAX_FILE_BYTES, MAX_YAML_NODES, load_topology

REPO = Path(__file__).resolve().parents[2]
GOOD = (REPO / "topologies" / "two-node.yaml").read_text()
ADDRESS_SPACE_LIMIT = 512 * 1024 * 1024  # the CLI must refuse every file below within this


def _laughs(levels: int, width: int) -> str:
    """The "billion laughs": each level a list of WIDTH aliases of the level below."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nname: *a{levels - 1}\n"


def _wide_aliases() -> str:
    """Few aliases, each of a big list: under the alias budget, over the expanded-size budget."""
    big = ", ".join(["x"] * 5000)
    return f"a: &a [{big}]\nb: [{', '.join(['*a'] * 25)}]\n"


HOSTILE: dict[str, tuple[bytes, str]] = {
    "invalid UTF-8": (b"name: kubesim\nnodes: \xff\xfe\n", "line 2, column 8: byte 0xff is not UTF-8; save the file "
                                                          "as UTF-8 text"),
    "5,000 nested [": (b"[" * 5000, f"nested more than {MAX_DEPTH} levels deep"),
    "5,000 nested {": (b"{a: " * 5000, f"nested more than {MAX_DEPTH} levels deep"),
    "200 nested block mappings": ("".join(f"{' ' * i}a:\n" for i in range(200)).encode(),
                                    f"nested more than {MAX_DEPTH} levels deep"),
    "alias bomb": (_laughs(9, 9).encode(), f"more than {MAX_ALIASES} aliases"),
    "wide alias expansion": (_wide_aliases().encode(), f"expand it to more than {MAX_YAML_NODES} values"),
    "a file too large": (b"# padding\n" * (MAX_FILE_BYTES // 10 + 1), "is larger than 1024 KiB"),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_hostile_files_are_one_clear_problem(case: str, tmp_path: Path) -> None:
    content, words = HOSTILE[case]
    file = tmp_path / "hostile.yaml"
    file.write_bytes(content)
    with pytest.raises(TopologyError) as caught:
        load_topology(file)
    assert len(caught.value.problems) == 1, str(caught.value)
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{file}: ")
    assert len(str(caught.value)) < 400  # the message quotes nothing of the file's bulk


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))


def _up(file: Path, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBESIM_STATE_DIR": str(state)}
    return subprocess.run([sys.executable, "-m", "kubesim", "up", str(file)], capture_output=True, text=True, env=env,
                          cwd=REPO, check=False, timeout=120, preexec_fn=_limit_address_space)


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_up_refuses_hostile_files_with_exit_2_in_bounded_memory_and_makes_nothing(case: str, tmp_path: Path) -> None:
    content, words = HOSTILE[case]
    file = tmp_path / "hostile.yaml"
    file.write_bytes(content)
    done = _up(file, tmp_path / "state")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    assert words in done.stderr
    # up journals everything before it makes it, so no state directory means nothing was made (the
    # machine's namespace list is no proof: other clusters may come and go meanwhile).
    assert not (tmp_path / "state").exists()


def _good() -> dict[str, object]:
    data = yaml.safe_load(GOOD)
    assert isinstance(data, dict)
    return data


def test_duplicate_keys_are_refused_naming_the_key_its_path_and_lines(tmp_path: Path) -> None:
    file = tmp_path / "dup.yaml"
    file.write_text("name: one\n"
                    "nodes:\n"
                    "  - name: control-plane\n"
                    "    role: control-plane\n"
                    "  - name: worker-1\n"
                    "    role: worker\n"
                    "    role: worker\n"
                    "name: two\n")
    with pytest.raises(TopologyError) as caught:
        load_topology(file)
    rendered = [p.render(str(file)) for p in caught.value.problems]
    assert f"{file}: nodes[1].role: line 7: duplicate key 'role' (first at line 6); a key may appear once, " \
           "remove one" in rendered
    assert f"{file}: name: line 8: duplicate key 'name' (first at line 1); a key may appear once, remove one" \
           in rendered
    assert len(rendered) == 2


def test_anchors_within_the_budget_and_merge_keys_still_load(tmp_path: Path) -> None:
    file = tmp_path / "anchors.yaml"
    file.write_text("nodes:\n"
                    "  - &base {name: control-plane, role: control-plane, labels: &labels {zone: a}}\n"
                    "  - {<<: *base, name: worker-1, role: worker, labels: *labels}\n")
    topology = load_topology(file)
    assert [(n.name, n.role, n.labels) for n in topology.nodes] == [
        ("control-plane", "control-plane", {"zone": "a"}), ("worker-1", "worker", {"zone": "a"})]


def test_every_mistake_is_listed_not_only_the_first(tmp_path: Path) -> None:
    data = _good()
    data["network"] = {**data.get("network", {}), "nodeCIDR": "172.18.0.0/33"}  # type: ignore[dict-item]
    data["nodes"] = [
        {"name": "control-plane", "role": "control-plane", "capacity": {"cpu": "lots"}},
        {"name": "Worker_1"},
        {"name": "worker-2", "role": "wrker", "podCIDR": "10.244.9.0/30"},
    ]
    data["externalHosts"] = [{"name": "client", "adress": "172.18.0.5"}]
    file = tmp_path / "five.yaml"
    file.write_text(yaml.safe_dump(data))
    with pytest.raises(TopologyError) as caught:
        load_topology(file)
    paths = [p.path for p in caught.value.problems]
    assert paths == ["network.nodeCIDR", "nodes[0].capacity.cpu", "nodes[1].name", "nodes[2].podCIDR",
                     "nodes[2].role", "externalHosts[0].adress"], str(caught.value)
    done = _up(file, tmp_path / "state")
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        ("error: " if i == 0 else "") + p.render(str(file)) for i, p in enumerate(caught.value.problems)]


@pytest.mark.parametrize("change, path, words", [
    ({"nodes": [{"name": "control-plane", "role": "control-plane", "podCIDR": "10.244.0.0/30"}]},
     "nodes[0].podCIDR", "10.244.0.0/30 is too small for a node's pods; use a /29 or larger"),
    ({"network": {"podCIDRSize": 30}}, "network.podCIDRSize", "30 must be a prefix length between 8 and 29, e.g. 24"),
    ({"network": {"nodeCIDR": "172.18.0.0/30"}}, "network.nodeCIDR",
     "172.18.0.0/30 is too small; use a /29 or larger"),
])
def test_cidrs_smaller_than_a_29_are_refused(change: dict[str, object], path: str, words: str,
                                             tmp_path: Path) -> None:
    file = tmp_path / "small.yaml"
    base: dict[str, object] = {"nodes": [{"name": "control-plane", "role": "control-plane"}]}
    file.write_text(yaml.safe_dump({**base, **change}))
    with pytest.raises(TopologyError) as caught:
        load_topology(file)
    assert [(p.path, p.message) for p in caught.value.problems] == [(path, words)]


def test_a_29_pod_cidr_is_accepted(tmp_path: Path) -> None:
    file = tmp_path / "ok.yaml"
    file.write_text(yaml.safe_dump({"network": {"podCIDRSize": 29, "nodeCIDR": "172.18.0.0/29"},
                                    "nodes": [{"name": "control-plane", "role": "control-plane"},
                                              {"name": "worker-1", "podCIDR": "10.244.1.0/29"}]}))
    topology = load_topology(file)
    assert [n.pod_cidr for n in topology.nodes] == ["10.244.0.0/29", "10.244.1.0/29"]
