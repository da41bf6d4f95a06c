"""Conversions for the metrics pipeline (kubelet /metrics/resource -> metrics.k8s.io).

Not wired into any component yet: this is the pure, tested core that the kubelet endpoint and a
metrics-server role are meant to build on. It parses the Prometheus text format the kubelet's
/metrics/resource speaks and turns two cumulative CPU samples into metrics-server's usage
strings (cpu in nanocores, "123456n"; memory in kibibytes, "12345Ki").
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float = 0.0
    timestamp_ms: int | None = None


def _parse_labels(text: str, line: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    i = 0
    while i < len(text):
        eq = text.find("=", i)
        if eq < 0 or eq + 1 >= len(text) or text[eq + 1] != '"':
            raise ValueError(f"malformed labels in metrics line {line!r}: expected name=\"value\"")
        key = text[i:eq].strip().lstrip(",").strip()
        j, out = eq + 2, []
        while j < len(text) and text[j] != '"':
            if text[j] == "\\" and j + 1 < len(text):
                out.append({"n": "\n", "\\": "\\", '"': '"'}.get(text[j + 1], text[j + 1]))
                j += 2
                continue
            out.append(text[j])
            j += 1
        if j >= len(text):
            raise ValueError(f"unterminated label value in metrics line {line!r}")
        labels[key] = "".join(out)
        i = j + 1
        while i < len(text) and text[i] in ", ":
            i += 1
    return labels


def parse_prometheus_text(text: str) -> list[Sample]:
    """Parse Prometheus text exposition (format 0.0.4); comments and blank lines are skipped."""
    samples: list[Sample] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        labels: dict[str, str] = {}
        if "{" in line:
            name, rest = line.split("{", 1)
            close = rest.rfind("}")
            if close < 0:
                raise ValueError(f"missing '}}' in metrics line {line!r}")
            labels = _parse_labels(rest[:close], line)
            tail = rest[close + 1 :].split()
        else:
            name, *tail = line.split()
        if not tail or len(tail) > 2:
            raise ValueError(f"metrics line {line!r} needs 'name value [timestamp_ms]'")
        ts = int(tail[1]) if len(tail) == 2 else None
        samples.append(Sample(name.strip(), labels, float(tail[0]), ts))
    return samples


def cpu_nanocores(prev_seconds: float, prev_ms: int, cur_seconds: float, cur_ms: int) -> int:
    """Rate of a cumulative CPU-seconds counter between two samples, in nanocores."""
    if cur_ms <= prev_ms:
        raise ValueError("cpu samples need increasing timestamps to compute a rate")
    delta = max(0.0, cur_seconds - prev_seconds)  # a counter reset (restart) reads as 0, not negative
    return int(delta * 1e9 / ((cur_ms - prev_ms) / 1000.0))


def format_cpu(nanocores: int) -> str:
    return f"{max(0, nanocores)}n"


def format_memory(bytes_: float) -> str:
    return f"{max(0, int(bytes_)) // 1024}Ki"
