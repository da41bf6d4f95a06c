"""Where each vertex of a graph goes on a page: a fixed, readable arrangement, no search.

    root namespace   external hosts ...                       (row 1)
    ══════════════ fabric br0 ══════════════════════════════  (row 2: a bar as wide as the page)
    ┌ node A ──┐ ┌ node B ──┐ ┌ not scheduled ┐                (row 3: a column per node)
    │ A (eth0) │ │ B (eth0) │ │ pod           │
    │ vxlan0   │ │ vxlan0   │ └───────────────┘
    │ cbr0     │ │ cbr0     │
    │ ├ pod    │ │ ├ pod    │
    └──────────┘ └──────────┘
    ┌ Services ───────────────────────────────┐                (row 4: a grid as wide as the page)
    │ svc  svc  svc  address                  │
    └─────────────────────────────────────────┘

Text is set in a monospace font, so a box's width follows from its longest line without measuring.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubesim.graph.model import Graph, Vertex

CHAR_WIDTH = 7.3  # px of one character of 12px monospace (0.6 em, with a little room)
EDGE_CHAR_WIDTH = 6.2  # the same for a link's 10px label
LINE_HEIGHT = 15
PAD = 8  # inside a box
GAP = 18  # between boxes
MARGIN = 20
HEADER = 26  # a group's title strip
INDENT = 26  # pods sit right of their bridge's trunk
MIN_WIDTH = 150


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def right(self) -> float:
        return self.x + self.w


@dataclass(frozen=True)
class Layout:
    width: float
    height: float
    vertices: dict[str, Box]
    groups: dict[str, Box]


def text_width(lines: list[str] | tuple[str, ...]) -> float:
    return max((len(line) for line in lines), default=0) * CHAR_WIDTH + 2 * PAD


def extra_lines(graph: Graph) -> dict[str, tuple[str, ...]]:
    """Lines a box shows beyond the vertex's own: a pod's veth pair, which has no room on its short edge."""
    extra: dict[str, tuple[str, ...]] = {}
    for edge in graph.edges:
        if edge.kind == "veth" and edge.b.startswith("pod:") and edge.label:
            extra[edge.b] = (edge.label,)
    return extra


def layout(graph: Graph) -> Layout:
    extra = extra_lines(graph)

    def _size(vertex: Vertex) -> tuple[float, float]:
        lines = (vertex.label, *vertex.details, *extra.get(vertex.id, ()))
        return max(MIN_WIDTH, text_width(lines)), len(lines) * LINE_HEIGHT + 2 * PAD

    boxes: dict[str, Box] = {}
    group_boxes: dict[str, Box] = {}

    # Row 3 first: the node columns decide the page's width.
    top_row = [v for v in graph.in_group(None) if v.kind in ("host", "external")]
    top_height = max((_size(v)[1] for v in top_row), default=0)
    fabric_y: float = MARGIN + (top_height + GAP if top_row else 0)
    fabric_h = 2 * LINE_HEIGHT + 2 * PAD
    columns_y = fabric_y + fabric_h + 2 * GAP
    # A link to the fabric is labelled right of its middle: the page and the top row leave room for that.
    link_labels = {e.b if e.a == "fabric" else e.a: e.label for e in graph.edges if "fabric" in (e.a, e.b)}
    labels_right: float = 0
    x: float = MARGIN
    columns_bottom = columns_y
    for group in (g for g in graph.groups if g.kind in ("node", "unscheduled")):
        members = graph.in_group(group.id)
        title = " · ".join((group.label, *group.details))
        width = max([MIN_WIDTH + INDENT, text_width([title])]
                    + [_size(v)[0] + (INDENT if v.kind == "pod" else 0) for v in members]) + 2 * PAD
        y = columns_y + HEADER
        # The node itself, then its tunnel end and bridge, then the pods on the bridge.
        order = {"node": 0, "vxlan": 1, "bridge": 2, "pod": 3}
        for vertex in sorted(members, key=lambda v: order.get(v.kind, 4)):
            w, h = _size(vertex)
            indent = INDENT if vertex.kind == "pod" and group.kind == "node" else 0
            boxes[vertex.id] = Box(x + PAD + indent, y, width - 2 * PAD - indent, h)
            if vertex.id in link_labels:
                label_end = boxes[vertex.id].cx + 4 + len(link_labels[vertex.id]) * EDGE_CHAR_WIDTH
                labels_right = max(labels_right, label_end)
            y += h + GAP / 2
        group_boxes[group.id] = Box(x, columns_y, width, y - columns_y + PAD)
        columns_bottom = max(columns_bottom, y + PAD)
        x += width + GAP

    # Row 1, left to right.
    tx: float = MARGIN
    for vertex in top_row:
        w, h = _size(vertex)
        boxes[vertex.id] = Box(tx, MARGIN, w, h)
        tx += max(w, w / 2 + len(link_labels.get(vertex.id, "")) * EDGE_CHAR_WIDTH + 8) + GAP

    # Row 4: the Services in a grid of equal cells, as many to a row as the page holds.
    services_y = columns_bottom + GAP
    page_width = max(x - GAP, tx - GAP, labels_right, MARGIN + 400) + MARGIN
    bottom = columns_bottom
    for group in (g for g in graph.groups if g.kind == "services"):
        members = graph.in_group(group.id)
        cell_w = max((_size(v)[0] for v in members), default=MIN_WIDTH)
        cell_h = max((_size(v)[1] for v in members), default=LINE_HEIGHT)
        inner = page_width - 2 * MARGIN - 2 * PAD
        per_row = max(1, int((inner + GAP) // (cell_w + GAP)))
        for i, vertex in enumerate(members):
            row, col = divmod(i, per_row)
            boxes[vertex.id] = Box(MARGIN + PAD + col * (cell_w + GAP),
                                   services_y + HEADER + row * (cell_h + GAP), cell_w, cell_h)
        rows = (len(members) + per_row - 1) // per_row
        page_width = max(page_width, MARGIN + 2 * PAD + min(len(members), per_row) * (cell_w + GAP) - GAP + MARGIN)
        height = HEADER + rows * (cell_h + GAP) - GAP + 2 * PAD
        group_boxes[group.id] = Box(MARGIN, services_y, page_width - 2 * MARGIN, height)
        bottom = services_y + height

    boxes["fabric"] = Box(MARGIN, fabric_y, page_width - 2 * MARGIN, fabric_h)
    for vertex in graph.in_group(None):  # anything else ungrouped: under everything, in a row
        if vertex.id not in boxes:
            w, h = _size(vertex)
            boxes[vertex.id] = Box(MARGIN, bottom + GAP, w, h)
            bottom += GAP + h
    return Layout(page_width, bottom + MARGIN, boxes, group_boxes)
