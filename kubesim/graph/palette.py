"""The colours every renderer gives a kind of vertex, so a pod looks the same in Mermaid, DOT and HTML."""

from __future__ import annotations

# kind -> (fill, stroke)
COLOURS = {
    "host": ("#eeeeee", "#555555"), "fabric": ("#fff3c4", "#b08800"), "external": ("#f3e5f5", "#7b1fa2"),
    "node": ("#e3f2fd", "#1565c0"), "bridge": ("#e0f7fa", "#00838f"), "vxlan": ("#fce4ec", "#ad1457"),
    "pod": ("#e8f5e9", "#2e7d32"), "service": ("#fff8e1", "#ef6c00"), "address": ("#fafafa", "#777777"),
}
# kind -> what a legend calls it
KIND_NAMES = {
    "host": "root namespace (host link)", "fabric": "fabric bridge", "external": "external host",
    "node": "node (its network namespace)", "bridge": "pod bridge", "vxlan": "VXLAN device", "pod": "pod",
    "service": "Service", "address": "endpoint address",
}
