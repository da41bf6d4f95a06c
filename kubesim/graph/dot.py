"""The graph in Graphviz's DOT language (`kubesim graph --format dot | dot -Tsvg > cluster.svg`)."""

from __future__ import annotations

from kubesim.graph.model import Graph, Vertex
from kubesim.graph.palette import COLOURS

_SHAPES = {
    "host": "house", "fabric": "box3d", "external": "parallelogram", "node": "box", "bridge": "cylinder",
    "vxlan": "cds", "pod": "box", "service": "hexagon", "address": "ellipse",
}
_EDGE_STYLES = {
    "veth": "solid", "forward": "bold", "vxlan": "dashed", "host-network": "dotted", "endpoint": "dashed",
}


def quote(text: str) -> str:
    """TEXT as a DOT quoted string: backslashes and quotes escaped, newlines as DOT's \\n."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(vertex: Vertex) -> str:
    return quote("\n".join((vertex.label, *vertex.details)))


def render(graph: Graph) -> str:
    ids = {v.id: f"v{i}" for i, v in enumerate(graph.vertices)}
    lines = [f"graph {quote(graph.title)} {{",
             f"  label={quote(graph.title)}; labelloc=t; rankdir=TB; compound=true;",
             '  node [fontname="Helvetica", fontsize=11, style="filled,rounded"];',
             '  edge [fontname="Helvetica", fontsize=9];']

    def vertex_line(vertex: Vertex, indent: str) -> str:
        style = "filled" if vertex.kind in ("fabric", "bridge", "host", "external", "vxlan") else "filled,rounded"
        return (f"{indent}{ids[vertex.id]} [label={_label(vertex)}, shape={_SHAPES[vertex.kind]}, "
                f'style="{style}", fillcolor="{COLOURS[vertex.kind][0]}", color="{COLOURS[vertex.kind][1]}"];')

    lines += [vertex_line(v, "  ") for v in graph.in_group(None)]
    for i, group in enumerate(graph.groups):
        # Graphviz draws a subgraph as a box only when its name starts with "cluster".
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f"    label={quote(' · '.join((group.label, *group.details)))}; style=rounded;")
        lines += [vertex_line(v, "    ") for v in graph.in_group(group.id)]
        lines.append("  }")
    for edge in graph.edges:
        attrs = [f"style={_EDGE_STYLES[edge.kind]}"]
        if edge.label:
            attrs.append(f"label={quote(edge.label)}")
        if edge.kind == "endpoint":
            attrs.append("dir=forward")
        if edge.kind in ("endpoint", "vxlan"):
            # Cross links: ranking by them would pull pods and nodes out of the fabric -> node -> pod tree.
            attrs.append("constraint=false")
        lines.append(f"  {ids[edge.a]} -- {ids[edge.b]} [{', '.join(attrs)}];")
    lines += [f"  // {' '.join(note.split())}" for note in graph.notes]
    lines.append("}")
    return "\n".join(lines) + "\n"
