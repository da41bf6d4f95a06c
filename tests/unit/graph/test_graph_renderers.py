"""The graph's renderers: Mermaid and DOT text, and the HTML page (its SVG parsed back, its layout checked)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubesim.graph import build, dot, layout, mermaid, render
from kubesim.graph.layout import Box
from tests.unit.graph.graph_sample import NODES, PODS, facts

# A vertex line: id, one of the renderer's shape openings, a quoted label, the matching closing.
VERTEX = (r'(v\d+)(\[\[|\[/|\[\\|\[\(|\(\(|\{\{|[\[(>])"([^"]*)"'
          r'(\]\]|/\]|\\\]|\)\]|\)\)|\}\}|[\])])')


def test_mermaid_is_a_flowchart_of_every_vertex_group_and_edge() -> None:
    graph = build(facts())
    text = render(graph, "mermaid")
    lines = text.splitlines()
    assert lines[:4] == ["---", "title: kubesim cluster demo (vxlan)", "---", "flowchart TB"]
    declared = {}
    for line in lines[4:]:
        stripped = line.strip()
        if found := re.fullmatch(VERTEX, stripped):
            declared[found.group(1)] = found.group(3)
        elif re.fullmatch(r'subgraph g\d+\["[^"]*"\]|end|classDef \w[\w-]* fill:#\w+,stroke:#\w+|class [v\d,]+ \w+'
                          r"|%% .*", stripped):
            continue
        else:  # an edge between declared vertices
            edge = re.fullmatch(r'(v\d+) (---|-\.-|-\.->)(\|"[^"]*"\|)? (v\d+)', stripped)
            assert edge, f"not a Mermaid line this renderer writes: {line!r}"
            assert edge.group(1) in declared and edge.group(4) in declared, line
    assert len(declared) == len(graph.vertices)
    labels = [label.split("<br/>")[0] for label in declared.values()]
    assert set(NODES) | set(PODS) <= set(labels)
    assert text.count("subgraph ") == len(graph.groups) == text.count("\n  end")
    assert text.count(" -.-> ") + text.count(' -.->|"') == len([e for e in graph.edges if e.kind == "endpoint"])


def test_mermaid_escapes_what_would_end_a_label() -> None:
    odd = facts(pods=[{"namespace": 'we"ird', "name": "a<b>|c&d", "node": "worker-1", "ip": "10.244.1.9"}])
    text = mermaid.render(build(odd))
    assert '("a#lt;b#gt;#124;c#amp;d<br/>we#quot;ird<br/>10.244.1.9")' in text


def test_dot_is_a_graph_with_a_cluster_per_group() -> None:
    graph = build(facts())
    text = render(graph, "dot")
    assert text.startswith('graph "kubesim cluster demo (vxlan)" {') and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    assert text.count("subgraph cluster_") == len(graph.groups)
    assert len(re.findall(r"^\s+v\d+ \[label=", text, re.M)) == len(graph.vertices)
    assert len(re.findall(r"^\s+v\d+ -- v\d+ \[", text, re.M)) == len(graph.edges)
    for name in (*NODES, *PODS):
        assert re.search(rf'\[label="{re.escape(name)}\\n', text), name
    assert dot.quote('a "b"\\c\nd') == '"a \\"b\\"\\\\c\\nd"'


class _Page(HTMLParser):
    """What a page holds: per SVG vertex group, its class, data-id, data-name and the text of its <text>; every
    tag and attribute (to find anything that would load from elsewhere)."""

    def __init__(self) -> None:
        super().__init__()
        self.vertices: list[dict[str, str]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._in_text = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found))
        if tag == "g" and "vertex" in (found.get("class") or "").split():
            self.vertices.append({"class": found["class"] or "", "id": found.get("data-id") or "",
                                  "name": found.get("data-name") or "", "text": ""})
        if tag == "text" and self.vertices:
            self._in_text = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "text":
            self._in_text = False

    def handle_data(self, data: str) -> None:
        if self._in_text:
            self.vertices[-1]["text"] += data + "\n"


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_the_html_page_draws_every_vertex_with_its_name() -> None:
    graph = build(facts())
    page = parse(render(graph, "html"))
    assert len(page.vertices) == len(graph.vertices)
    for vertex in graph.vertices:
        drawn = next(v for v in page.vertices if v["id"] == vertex.id)
        assert drawn["class"] == f"vertex {vertex.kind}" and drawn["name"] == vertex.label
        assert drawn["text"].splitlines()[:1 + len(vertex.details)] == [vertex.label, *vertex.details]
    echo = next(v for v in page.vertices if v["name"] == "echo-7d9f-abcde")
    assert "veth" in echo["text"] and "↔ eth0" in echo["text"]  # its veth pair, shown in its box


def test_the_html_page_loads_nothing_from_elsewhere() -> None:
    text = render(build(facts()), "html")
    page = parse(text)
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed"}
    for tag, attrs in page.tags:
        for key, value in attrs.items():
            assert key not in ("src", "href") or not value or value.startswith("#"), (tag, key, value)
    assert re.findall(r"https?://[^\s\"']+", text) == ["http://www.w3.org/2000/svg"]  # a namespace name, not a fetch
    assert "@import" not in text and "url(" not in text.replace("url(#arrow)", "")


def _overlap(a: Box, b: Box) -> bool:
    return a.x < b.right and b.x < a.right and a.y < b.bottom and b.y < a.bottom


def _inside(inner: Box, outer: Box) -> bool:
    return outer.x <= inner.x and inner.right <= outer.right and outer.y <= inner.y and inner.bottom <= outer.bottom


@pytest.mark.parametrize("mode", ["vxlan", "host-gw"])
def test_the_layout_keeps_boxes_apart_inside_their_groups_and_on_the_page(mode: str) -> None:
    graph = build(facts(mode=mode))
    placed = layout.layout(graph)
    assert set(placed.vertices) == {v.id for v in graph.vertices}
    for (a_id, a), (b_id, b) in combinations(placed.vertices.items(), 2):
        assert not _overlap(a, b), (a_id, a, b_id, b)
    for (a_id, a), (b_id, b) in combinations(placed.groups.items(), 2):
        assert not _overlap(a, b), (a_id, b_id)
    page = Box(0, 0, placed.width, placed.height)
    for vertex in graph.vertices:
        box = placed.vertices[vertex.id]
        assert _inside(box, page), vertex.id
        if vertex.group:
            assert _inside(box, placed.groups[vertex.group]), vertex.id
        # Wide enough for its longest line (monospace: the width follows from the character count).
        assert box.w >= layout.text_width((vertex.label, *vertex.details)) - 2 * layout.PAD, vertex.id


def test_a_long_pod_name_widens_its_column_instead_of_being_cut() -> None:
    long_name = "a-deployment-with-a-really-quite-long-name-7d9f8c6b5-abcde"
    graph = build(facts(pods=[{"namespace": "default", "name": long_name, "node": "worker-2", "ip": "10.244.2.5"}]))
    placed = layout.layout(graph)
    box = placed.vertices[f"pod:default/{long_name}"]
    assert box.w >= len(long_name) * layout.CHAR_WIDTH
    assert placed.groups["group:node/worker-2"].w > placed.groups["group:node/worker-1"].w
    assert long_name in render(graph, "html")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="choose one of mermaid, dot, html"):
        render(build(facts()), "png")


@st.composite
def clusters(draw: st.DrawFn) -> dict[str, object]:
    """Facts of any small shape: 1-5 nodes, 0-6 pods on each (some hostNetwork), a few unscheduled,
    Services pointing at pods, nodes and addresses, with names of any DNS-label length."""
    label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=40)
    node_names = draw(st.lists(label, min_size=1, max_size=5, unique=True))
    pods = []
    for n, node in enumerate(node_names):
        for j, name in enumerate(draw(st.lists(label, max_size=6, unique=True))):
            pods.append({"namespace": f"ns{n}", "name": name, "node": node, "ip": f"10.244.{n}.{j + 2}",
                         "uid": f"{n}-{j}", "hostNetwork": draw(st.booleans())})
    pods += [{"namespace": "pending", "name": name} for name in draw(st.lists(label, max_size=2, unique=True))]
    targets = [p["ip"] for p in pods if "ip" in p] + ["172.18.0.2", "192.0.2.1", "192.0.2.2"]
    services = [{"namespace": "default", "name": name, "clusterIP": "10.96.0.9",
                 "endpoints": [{"ip": ip} for ip in draw(st.lists(st.sampled_from(targets), max_size=4))]}
                for name in draw(st.lists(label, max_size=8, unique=True))]
    return {"cluster": "any", "mode": draw(st.sampled_from(["vxlan", "host-gw"])),
            "network": {"hostLink": "ksim-000000", "hostAddress": "172.18.0.1"},
            "nodes": [{"name": name, "address": f"172.18.0.{i + 2}"} for i, name in enumerate(node_names)],
            "externalHosts": [{"name": name} for name in draw(st.lists(label, max_size=2, unique=True))],
            "pods": pods, "services": services}


@settings(max_examples=60)
@given(clusters())
def test_any_cluster_lays_out_without_overlaps_and_draws_every_name(cluster: dict[str, object]) -> None:
    graph = build(cluster)
    placed = layout.layout(graph)
    page = Box(0, 0, placed.width, placed.height)
    for (a_id, a), (b_id, b) in combinations(placed.vertices.items(), 2):
        assert not _overlap(a, b), (a_id, b_id)
    for (a_id, a), (b_id, b) in combinations(placed.groups.items(), 2):
        assert not _overlap(a, b), (a_id, b_id)
    for vertex in graph.vertices:
        box = placed.vertices[vertex.id]
        assert _inside(box, page) and (vertex.group is None or _inside(box, placed.groups[vertex.group])), vertex.id
    drawn = {v["id"] for v in parse(render(graph, "html")).vertices}
    assert drawn == {v.id for v in graph.vertices}
