"""API machinery shared by every component: label selectors and the name validators behind them.

A leaf package: it imports nothing from the rest of the project, so the apiserver, the controllers,
the scheduler, the proxy and the kubelet can all depend on it without depending on each other.
"""

from control.api.labels import (
    EVERYTHING,
    NOTHING,
    Selector,
    SelectorError,
    label_selector_as_selector,
    parse_selector,
    selector_from_set,
)

__all__ = [
    "EVERYTHING",
    "NOTHING",
    "Selector",
    "SelectorError",
    "label_selector_as_selector",
    "parse_selector",
    "selector_from_set",
]
