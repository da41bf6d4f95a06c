"""The HTML page of `kubesim graph` as a real browser renders it: headless Chromium's DOM after layout
names every node and pod inside the drawing, and its screenshot is a PNG with something drawn on it.
Needs Debian's chromium (scripts/setup.sh installs it): skips on a laptop without it, fails in CI."""

from __future__ import annotations

import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from kubesim.graph import build, render
from tests import chromium
from tests.unit.graph.graph_sample import NODES, PODS, facts

pytestmark = pytest.mark.browser


class _SvgText(HTMLParser):
    """The text of every <text> inside the page's <svg id="cluster-graph">, as the browser serialized it."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0  # inside the drawing while > 0
        self.texts: list[str] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "svg" and dict(attrs).get("id") == "cluster-graph":
            self.depth = 1
        elif self.depth and tag == "svg":
            self.depth += 1
        if self.depth and tag == "text":
            self._text = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "text" and self._text is not None:
            self.texts.append("".join(self._text))
            self._text = None
        if self.depth and tag == "svg":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data + "\n")


def png_pixels(data: bytes) -> tuple[int, int, set[bytes]]:
    """(width, height, the distinct colours) of an 8-bit RGB or RGBA PNG, decoded here (filters 0-4)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6), f"unexpected PNG format (depth {depth}, colour type {colour_type})"
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks)), width * bpp
    previous, colours = bytearray(stride), set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                pa, pb, pc = abs(guess - left), abs(guess - up), abs(guess - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 7))  # a sample is plenty
        previous = line
    return width, height, colours


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("graph") / "cluster.html"
    path.write_text(render(build(facts()), "html"))
    return path


def test_chromium_renders_every_node_and_pod_name_in_the_drawing(page: Path) -> None:
    dom = chromium.dump_dom(page)
    svg = _SvgText()
    svg.feed(dom)
    first_lines = {text.splitlines()[0] for text in svg.texts if text}
    missing = [name for name in (*NODES, *PODS) if name not in first_lines]
    assert not missing, f"not drawn in the SVG Chromium rendered: {missing}"
    assert "kubesim cluster demo (vxlan)" in dom  # the page's heading, outside the drawing


def test_chromium_screenshot_is_a_png_with_the_drawing_on_it(page: Path, tmp_path: Path) -> None:
    png = tmp_path / "cluster.png"
    chromium.screenshot(page, png, width=1200, height=900)
    data = png.read_bytes()
    width, height, colours = png_pixels(data)
    assert (width, height) == (1200, 900)
    # A blank or failed page is one or two colours; the drawing has the palette's fills, strokes and text.
    fills = {bytes.fromhex(c[1:]) for c in ("#e3f2fd", "#e8f5e9", "#fff3c4")}  # node, pod, fabric
    assert fills <= colours, f"the node, pod and fabric fills are not on the screenshot ({len(colours)} colours)"
