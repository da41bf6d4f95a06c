"""The graph as a Mermaid flowchart (GitHub, GitLab and most Markdown viewers draw it inline)."""

from __future__ import annotations

from kubesim.graph.model import KINDS, Graph, Vertex
from kubesim.graph.palette import COLOURS

# Mermaid's node shapes: (opening, closing) around the quoted label.
_SHAPES = {
    "host": ("[/", "/]"), "fabric": ("[[", "]]"), "external": ("[\\", "\\]"), "node": ("[", "]"),
    "bridge": ("[(", ")]"), "vxlan": (">", "]"), "pod": ("(", ")"), "service": ("{{", "}}"),
    "address": ("((", "))"),
}
_LINKS = {"veth": "---", "forward": "---", "vxlan": "-.-", "host-network": "-.-", "endpoint": "-.->"}


def _escape(text: str) -> str:
    """Text safe inside a Mermaid "quoted label": its entity codes for what would end or break it."""
    return (text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
            .replace("|", "#124;"))


def _label(vertex: Vertex) -> str:
    return "<br/>".join(_escape(line) for line in (vertex.label, *vertex.details))


def render(graph: Graph) -> str:
    # Mermaid ids must be plain words; the model's ids hold / and :, so number them instead.
    ids = {v.id: f"v{i}" for i, v in enumerate(graph.vertices)}
    lines = ["---", f"title: {_escape(graph.title)}", "---", "flowchart TB"]

    def vertex_line(vertex: Vertex, indent: str) -> str:
        opening, closing = _SHAPES[vertex.kind]
        return f'{indent}{ids[vertex.id]}{opening}"{_label(vertex)}"{closing}'

    lines += [vertex_line(v, "  ") for v in graph.in_group(None)]
    for i, group in enumerate(graph.groups):
        title = " · ".join(_escape(t) for t in (group.label, *group.details))
        lines.append(f'  subgraph g{i}["{title}"]')
        lines += [vertex_line(v, "    ") for v in graph.in_group(group.id)]
        lines.append("  end")
    for edge in graph.edges:
        link = _LINKS[edge.kind]
        label = f'|"{_escape(edge.label)}"|' if edge.label else ""
        lines.append(f"  {ids[edge.a]} {link}{label} {ids[edge.b]}")
    for kind in KINDS:
        members = [ids[v.id] for v in graph.vertices if v.kind == kind]
        if members:
            fill, stroke = COLOURS[kind]
            lines.append(f"  classDef {kind} fill:{fill},stroke:{stroke}")
            lines.append(f"  class {','.join(members)} {kind}")
    lines += [f"  %% {' '.join(note.split())}" for note in graph.notes]
    return "\n".join(lines) + "\n"
