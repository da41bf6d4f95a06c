"""`kubectl get events -o wide`'s columns: upstream's printEvent gives Subobject, Source, First Seen, Count and
Name as priority-1 (wide) cells beside the five kubectl shows by default."""

from __future__ import annotations

from typing import Any

from control.apiserver.tables import to_table


def _event(**fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web.17", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{c}"},
            "type": "Warning", "reason": "BackOff", "message": " restarting \n", **fields}


def test_event_columns_and_wide_cells_in_upstreams_order() -> None:
    table = to_table("events", [_event(source={"component": "kubelet", "host": "worker-1"}, count=4)])
    columns = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    assert columns == [("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Subobject", 1),
                       ("Source", 1), ("Message", 0), ("First Seen", 1), ("Count", 1), ("Name", 1)]
    assert table["columnDefinitions"][-1]["format"] == "name"  # kubectl prefixes it with event/ when mixed
    cells = table["rows"][0]["cells"]
    assert cells[1:] == ["Warning", "BackOff", "pod/web", "spec.containers{c}", "kubelet, worker-1", "restarting",
                         cells[7], 4, "web.17"]
    assert cells[0] == cells[7] != "<unknown>"  # no lastTimestamp or firstTimestamp: the creation time


def test_event_source_count_and_series_fallbacks() -> None:
    new_api = _event(reportingComponent="scheduler", eventTime="2026-01-01T00:00:00.123456Z",
                     series={"count": 9, "lastObservedTime": "2026-01-01T00:00:05.000000Z"})
    cells = to_table("events", [new_api])["rows"][0]["cells"]
    assert (cells[5], cells[8]) == ("scheduler", 9)
    singleton = to_table("events", [_event(involvedObject={"kind": "Node"})])["rows"][0]["cells"]
    assert (singleton[3], singleton[5], singleton[8]) == ("node", "", 1)
