"""The graph as one self-contained HTML page: an inline SVG drawn here (kubesim.graph.layout places the
boxes), a legend and tables of the same facts. No script, no stylesheet or font from anywhere else: the
page opens the same offline, from a CI artifact or a mail attachment."""

from __future__ import annotations

from html import escape

from kubesim.graph.layout import LINE_HEIGHT, PAD, Box, Layout, extra_lines, layout
from kubesim.graph.model import KINDS, Edge, Graph, Vertex
from kubesim.graph.palette import COLOURS, KIND_NAMES

# One colour per Service for its endpoint arrows, so crossing arrows stay apart.
ENDPOINT_COLOURS = ("#ef6c00", "#6a1b9a", "#00897b", "#c62828", "#283593", "#558b2f", "#ad1457", "#4e342e")

CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
svg text { font-family: "DejaVu Sans Mono", monospace; font-size: 12px; }
svg .detail { fill: #555; }
svg .group-title { font-weight: bold; paint-order: stroke; stroke: #fbfbfb; stroke-width: 4px; }
svg .edge-label { font-size: 10px; fill: #666; }
svg g.vertex:hover rect { stroke-width: 3; }
svg path.endpoint:hover { stroke-width: 3; opacity: 1; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-family: monospace; }
th { background: #f4f4f4; font-family: sans-serif; }
.legend span.swatch { display: inline-block; width: 14px; height: 14px; border: 2px solid; vertical-align: middle;
                      margin: 0 4px 0 12px; border-radius: 3px; }
""".strip()


def render(graph: Graph) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(graph.title)}</title>",
        f"<style>\n{CSS}\n</style></head><body>",
        f"<h1>{escape(graph.title)}</h1>",
        *[f'<p class="note">{escape(note)}</p>' for note in graph.notes],
        svg(graph),
        _legend(graph),
        _tables(graph),
        "</body></html>",
    ]) + "\n"


def svg(graph: Graph) -> str:
    placed = layout(graph)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" id="cluster-graph" width="{placed.width:.0f}" '
             f'height="{placed.height:.0f}" viewBox="0 0 {placed.width:.0f} {placed.height:.0f}" role="img" '
             f'aria-label="{escape(graph.title)}">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>']
    for group in graph.groups:
        box = placed.groups[group.id]
        parts.append(f'<rect class="group {group.kind}" data-id="{escape(group.id)}" x="{box.x:.1f}" y="{box.y:.1f}" '
                     f'width="{box.w:.1f}" height="{box.h:.1f}" rx="8" fill="#fbfbfb" stroke="#999" '
                     'stroke-dasharray="4 3"/>')
    endpoint_colour: dict[str, str] = {}
    for vertex in graph.vertices:
        if vertex.kind == "service":
            endpoint_colour[vertex.id] = ENDPOINT_COLOURS[len(endpoint_colour) % len(ENDPOINT_COLOURS)]
    # A tunnel between nodes N columns apart runs at its own height, so the tunnels crossing a gap between
    # two columns are told apart.
    tunnel_ends = [v.id for v in graph.vertices if v.kind == "vxlan"]
    hops = {(e.a, e.b): abs(tunnel_ends.index(e.a) - tunnel_ends.index(e.b)) for e in graph.edges if e.kind == "vxlan"}
    parts += [_edge(edge, placed, endpoint_colour, hops.get((edge.a, edge.b), 1)) for edge in graph.edges]
    for group in graph.groups:  # over the links that pass them, on a halo so they stay readable
        box = placed.groups[group.id]
        title = " · ".join((group.label, *group.details))
        parts.append(f'<text class="group-title" x="{box.x + PAD:.1f}" y="{box.y + 17:.1f}">{escape(title)}</text>')
    extra = extra_lines(graph)
    parts += [_vertex(vertex, placed.vertices[vertex.id], extra.get(vertex.id, ())) for vertex in graph.vertices]
    parts.append("</svg>")
    return "\n".join(parts)


def _vertex(vertex: Vertex, box: Box, extra: tuple[str, ...]) -> str:
    fill, stroke = COLOURS[vertex.kind]
    lines = [f'<tspan x="{box.x + PAD:.1f}" y="{box.y + PAD + 12:.1f}" font-weight="bold">{escape(vertex.label)}'
             "</tspan>"]
    for i, line in enumerate((*vertex.details, *extra), start=1):
        lines.append(f'<tspan class="detail" x="{box.x + PAD:.1f}" y="{box.y + PAD + 12 + i * LINE_HEIGHT:.1f}">'
                     f"{escape(line)}</tspan>")
    tooltip = "\n".join((KIND_NAMES[vertex.kind], vertex.label, *vertex.details, *extra))
    return (f'<g class="vertex {vertex.kind}" data-id="{escape(vertex.id)}" data-name="{escape(vertex.label)}">'
            f"<title>{escape(tooltip)}</title>"
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" rx="5" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/><text>{"".join(lines)}</text></g>')


def _edge(edge: Edge, placed: Layout, endpoint_colour: dict[str, str], hops: int) -> str:
    a, b = placed.vertices[edge.a], placed.vertices[edge.b]
    colour, dash, marker, label_at = "#777", "", "", None
    if edge.kind == "veth" and "fabric" in (edge.a, edge.b):
        member, fabric = (b, a) if edge.a == "fabric" else (a, b)
        if member.y > fabric.y:  # a node under the fabric bar
            d = f"M{member.cx:.1f},{member.y:.1f} V{fabric.bottom:.1f}"
            label_at = (member.cx + 4, fabric.bottom + 14)
        else:  # the root namespace or an external host above it
            d = f"M{member.cx:.1f},{member.bottom:.1f} V{fabric.y:.1f}"
            label_at = (member.cx + 4, (member.bottom + fabric.y) / 2 + 4)
    elif edge.kind == "veth":  # a pod on its node's bridge: a trunk down the bridge's left side
        trunk = a.x + 12
        d = f"M{trunk:.1f},{a.bottom:.1f} V{b.y + b.h / 2:.1f} H{b.x:.1f}"
        colour = COLOURS["bridge"][1]
    elif edge.kind in ("forward", "host-network"):
        if b.y - a.bottom < 12:  # the very next box: straight down
            d = f"M{a.cx:.1f},{a.bottom:.1f} V{b.y:.1f}"
        else:  # past the boxes in between, along the column's right edge
            side = max(a.right, b.right) + 5
            d = (f"M{a.right:.1f},{a.y + a.h / 2:.1f} H{side:.1f} V{b.y + b.h / 2:.1f} H{b.right:.1f}")
        dash = ' stroke-dasharray="2 3"' if edge.kind == "host-network" else ""
    elif edge.kind == "vxlan":  # straight across, under the tunnel ends of the columns in between
        left, right = (a, b) if a.x <= b.x else (b, a)
        y = left.y + 8 + ((hops - 1) % 6) * 5
        d = f"M{left.right:.1f},{y:.1f} H{right.x:.1f}"
        colour, dash = COLOURS["vxlan"][1], ' stroke-dasharray="6 4"'
    else:  # a Service's endpoint
        colour, dash, marker = endpoint_colour.get(edge.a, "#ef6c00"), ' stroke-dasharray="5 3"', \
            ' marker-end="url(#arrow)"'
        if b.y >= a.y:  # beside or under the Service (an address in the Services grid)
            d = (f"M{a.cx:.1f},{a.bottom:.1f} C{a.cx:.1f},{a.bottom + 30:.1f} {b.cx:.1f},{b.bottom + 30:.1f} "
                 f"{b.cx:.1f},{b.bottom:.1f}")
        else:
            bend = max(40.0, (a.y - b.bottom) / 2)
            d = (f"M{a.cx:.1f},{a.y:.1f} C{a.cx:.1f},{a.y - bend:.1f} {b.right - 10:.1f},{b.bottom + bend:.1f} "
                 f"{b.right - 10:.1f},{b.bottom:.1f}")
    title = f"<title>{escape(edge.label or edge.kind)}</title>"
    path = (f'<path class="edge {edge.kind}" d="{d}" fill="none" stroke="{colour}" stroke-width="1.5"{dash}'
            f'{marker} opacity="{0.75 if edge.kind == "endpoint" else 1}">{title}</path>')
    if label_at and edge.label:
        path += (f'<text class="edge-label" x="{label_at[0]:.1f}" y="{label_at[1]:.1f}">'
                 f"{escape(edge.label)}</text>")
    return path


def _legend(graph: Graph) -> str:
    present = {v.kind for v in graph.vertices}
    items = [f'<span class="swatch" style="background:{COLOURS[k][0]};border-color:{COLOURS[k][1]}"></span>'
             f"{escape(KIND_NAMES[k])}" for k in KINDS if k in present]
    return f'<p class="legend">{"".join(items)}</p>'


def _tables(graph: Graph) -> str:
    def table(title: str, head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
        if not rows:
            return ""
        cells = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        heading = "".join(f"<th>{escape(h)}</th>" for h in head)
        return f"<h2>{escape(title)}</h2><table><tr>{heading}</tr>{cells}</table>"

    groups = {g.id: g.label for g in graph.groups}
    endpoints: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.kind == "endpoint":
            endpoints.setdefault(edge.a, []).append(edge.label)
    return "\n".join([
        table("Nodes", ("node", "details"), [(v.label, ", ".join(v.details)) for v in graph.vertices
                                             if v.kind == "node"]),
        table("Pods", ("pod", "on", "details"), [(v.label, groups.get(v.group or "", ""), ", ".join(v.details))
                                                 for v in graph.vertices if v.kind == "pod"]),
        table("Services", ("Service", "details", "endpoints"),
              [(v.label, ", ".join(v.details), ", ".join(endpoints.get(v.id, [])) or "none")
               for v in graph.vertices if v.kind == "service"]),
    ])
