"""`kubesim graph`: a running cluster drawn as nodes, pods, Services and the links between them.

    facts.gather(cluster)  -> facts (a plain dict: the recorded topology plus the API's objects)
    model.build(facts)     -> Graph (pure)
    render(graph, format)  -> text: Mermaid, Graphviz DOT, or a self-contained HTML page (Graph.to_dict() for JSON)

Gathering is the only part that touches a cluster; the rest is pure and unit-tested on dicts.
"""

from __future__ import annotations

from kubesim.graph import dot, html, mermaid
from kubesim.graph.model import Graph, build

__all__ = ["FORMATS", "Graph", "build", "render"]

FORMATS = ("mermaid", "dot", "html")


def render(graph: Graph, fmt: str) -> str:
    """GRAPH as FMT (one of FORMATS)."""
    if fmt == "mermaid":
        return mermaid.render(graph)
    if fmt == "dot":
        return dot.render(graph)
    if fmt == "html":
        return html.render(graph)
    raise ValueError(f"unknown graph format {fmt!r}; choose one of {', '.join(FORMATS)}")
