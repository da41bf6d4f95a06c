"""What a cluster looked like when a test's wait timed out: the pods it waited on (phase, conditions, node,
events) and the tail of the logs of the kubelets running them, so a timeout explains itself.

Everything here is best effort: a report that cannot read something says so and carries on.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

# Runs kubectl with these arguments against the cluster and returns what it printed.
Kubectl = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]

LOG_LINES = 30


def kubectl_for(kubeconfig: str, binary: str = "kubectl") -> Kubectl:
    """A Kubectl running BINARY against KUBECONFIG's cluster, never raising on a failed command."""
    def run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([binary, "--kubeconfig", kubeconfig, *args], capture_output=True, text=True,
                              check=False, timeout=30)
    return run


def _pod_lines(pod: dict[str, Any]) -> list[str]:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status") or {}
    lines = [f"pod {meta.get('namespace', '')}/{meta.get('name')} uid={meta.get('uid')} "
             f"node={spec.get('nodeName')} phase={status.get('phase')} podIP={status.get('podIP')}"]
    for c in status.get("conditions") or []:
        lines.append(f"  condition {c.get('type')}={c.get('status')} reason={c.get('reason', '')} "
                     f"{c.get('message', '')}".rstrip())
    for cs in status.get("containerStatuses") or []:
        lines.append(f"  container {cs.get('name')} ready={cs.get('ready')} restarts={cs.get('restartCount')} "
                     f"state={json.dumps(cs.get('state'))}")
    return lines


def _events_for(events: list[dict[str, Any]], name: str) -> list[str]:
    mine = [e for e in events if (e.get("involvedObject") or e.get("regarding") or {}).get("name") == name]
    return [f"  event {e.get('type')} {e.get('reason')}: {e.get('message') or e.get('note')}" for e in mine[-10:]]


def tail(path: Path, lines: int = LOG_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(cannot read {path.name}: {error.strerror})"


def tail_logs(logs: Path, pattern: str) -> str:
    """The tail of each component log under LOGS (the cluster's log directory) whose name matches PATTERN."""
    found = sorted(logs.glob(pattern))
    if not found:
        return f"(no {pattern} under the cluster's logs)"
    return "\n".join(f"--- last {LOG_LINES} lines of {log.name}\n{tail(log)}" for log in found)


def describe_pods(kubectl: Kubectl, pods: Iterable[str], *, namespace: str = "default",
                  logs: Path | None = None, also: Iterable[str] = ()) -> str:
    """The pods named PODS in NAMESPACE, their events, and the tail of kubelet-<node>.log under LOGS (the
    cluster's log directory) for each node they are bound to (all kubelets if none is bound yet); then the
    tails of the logs matching each pattern in ALSO (e.g. "kube-proxy-*.log")."""
    wanted = list(pods)
    out = [f"--- cluster report for pods {wanted} in {namespace}"]
    listed = kubectl(["get", "pods", "-n", namespace, "-o", "json"])
    if listed.returncode != 0:
        out.append(f"(kubectl get pods failed: {listed.stderr.strip()})")
        found: dict[str, dict[str, Any]] = {}
    else:
        found = {p["metadata"]["name"]: p for p in json.loads(listed.stdout)["items"]}
    got = kubectl(["get", "events", "-n", namespace, "-o", "json"])
    events = json.loads(got.stdout)["items"] if got.returncode == 0 else []
    nodes = set()
    for name in wanted:
        pod = found.get(name)
        if pod is None:
            out.append(f"pod {namespace}/{name}: not found")
            continue
        out += _pod_lines(pod) + _events_for(events, name)
        if pod.get("spec", {}).get("nodeName"):
            nodes.add(pod["spec"]["nodeName"])
    if logs is not None:
        kubelet_logs = [logs / f"kubelet-{n}.log" for n in sorted(nodes)] or sorted(logs.glob("kubelet-*.log"))
        for log in kubelet_logs:
            out.append(f"--- last {LOG_LINES} lines of {log.name}")
            out.append(tail(log))
        out += [tail_logs(logs, pattern) for pattern in also]
    return "\n".join(out)
