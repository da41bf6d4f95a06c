"""Ephemeral containers (`kubectl debug POD`): containers added to a running pod through the API's
pods/NAME/ephemeralcontainers, started by the kubelet in the pod's namespaces, never restarted.

The pod worker keeps them apart from its regular containers (EphemeralContainers): they have no part in
the pod's phase or readiness, and the pod's status lists them in ephemeralContainerStatuses. Each one
starts once, when the pod's spec gains it and the pod runs (its sandbox up): as a regular container
starts (the pod's network, UTS and mount namespaces, its env; in the node runtime, which holds the
stdin of one with `stdin: true` for attach), then runs until it exits and stays terminated. A kubelet that restarts
adopts one still running in the node runtime, and reports one its predecessor ran as it was
(ran_before): none is run twice.

targetContainerName names the container whose process namespace it would share. kubesim's pods have
no process namespace of their own (every process of theirs sees the machine's processes), so the target
adds nothing to what the container sees; it must exist and have started, as upstream's kubelet finds
the target's container before it creates the ephemeral one. Its volumeMounts are had only where the
pod's containers mount a volume (one mount namespace per pod, made with the sandbox): elsewhere it waits
with the reason (mount_problem).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from control.kubelet.workloads import now_rfc3339

if TYPE_CHECKING:
    from control.kubelet.agent import ContainerState, PodWorker

#: why an ephemeral container whose target or mounts cannot be had does not start (upstream's kubelet
#: fails its creation: the container stays waiting with this reason)
CANNOT_CREATE = "CreateContainerConfigError"


@dataclass
class EphemeralContainers:
    """One pod's ephemeral containers: name -> state, and which of them were started (once each)."""

    states: dict[str, ContainerState] = field(default_factory=dict)
    launched: set[str] = field(default_factory=set)
    # name -> the terminated state of one an earlier kubelet ran (reported as it was, never run again)
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)

    def specs_added(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        """The pod's ephemeral containers this worker has not seen yet (none is ever removed or changed)."""
        listed = (pod.get("spec") or {}).get("ephemeralContainers") or []
        return [c for c in listed if isinstance(c, dict) and c.get("name") and c["name"] not in self.states]


def sync(worker: PodWorker) -> None:
    """Record the ephemeral containers the pod's spec gained and start those not yet started, if the pod
    runs; called on every update of the pod and once the pod's own containers were started."""
    from control.kubelet.agent import ContainerState

    known = worker.ephemeral
    for spec in known.specs_added(worker.pod):
        name = spec["name"]
        known.states[name] = state = ContainerState(spec, ephemeral=True)
        before = ran_before(worker, name)
        if before is not None:
            known.launched.add(name)
            known.finished[name] = before
            state.waiting = None
        worker.changed.set()
    if worker.sandbox is None or worker.phase != "Running" or worker.stopping.is_set():
        return
    for name, state in known.states.items():
        if name not in known.launched:
            known.launched.add(name)
            worker.kubelet.spawn(start(worker, state))


def ran_before(worker: PodWorker, name: str) -> dict[str, Any] | None:
    """The terminated state to report for ephemeral container NAME if an earlier kubelet started it (the
    pod's status says so) and the node runtime has no running instance of it to adopt; else None."""
    listed = (worker.pod.get("status") or {}).get("ephemeralContainerStatuses") or []
    state = next((dict(s.get("state") or {}) for s in listed if isinstance(s, dict) and s.get("name") == name), {})
    if "terminated" in state:
        return dict(state["terminated"])
    if "running" in state and (worker.uid, name) not in worker.kubelet.adoptable:
        # gone with what ran it (the kubelet without a runtime, or a runtime that crashed): upstream's words
        # for a container that cannot be found
        return {"exitCode": 137, "reason": "ContainerStatusUnknown",
                "message": "The container could not be located when the pod was terminated",
                "startedAt": state["running"].get("startedAt"), "finishedAt": now_rfc3339()}
    return None


def target_problem(worker: PodWorker, spec: dict[str, Any]) -> str | None:
    """Why SPEC's target cannot be had, or None (no target, or one that started)."""
    target = spec.get("targetContainerName")
    if not target:
        return None
    state = worker.containers.get(str(target))
    if state is None or state.container is None:
        return (f"target container {target!r} of ephemeral container {spec.get('name')!r} has not started in pod "
                f"{worker.key}: wait until it runs, or debug without --target")
    return None


def mount_problem(worker: PodWorker, spec: dict[str, Any]) -> str | None:
    """Why SPEC's volumeMounts cannot be had, or None. A pod's containers share one mount namespace, made
    with the sandbox from the regular containers' mounts: an ephemeral container gets a volume only where
    one of them mounts it."""
    mounted = sorted(m.target for m in worker.volumes.mounts)
    for mount in spec.get("volumeMounts") or []:
        path = posixpath.normpath(str(mount.get("mountPath") or ""))
        if path not in mounted:
            return (f"volumeMount {mount.get('name')!r} of ephemeral container {spec.get('name')!r} at {path}: "
                    "kubesim mounts a pod's volumes when it makes the pod's sandbox, and no container of the pod "
                    f"mounts one there; mount it where one does ({', '.join(mounted) or 'none does'})")
    return None


async def start(worker: PodWorker, state: ContainerState) -> None:
    problem = target_problem(worker, state.spec) or mount_problem(worker, state.spec)
    if problem is not None:
        state.waiting = (CANNOT_CREATE, problem)
        await worker.event("Failed", f"Error: {problem}", warning=True)
        worker.changed.set()
        return
    await worker.start_container(state)


def statuses(worker: PodWorker) -> list[dict[str, Any]]:
    """ephemeralContainerStatuses: as containerStatuses, never ready, never restarted."""
    found = []
    for name, state in worker.ephemeral.states.items():
        entry = {**worker.container_status(state), "ready": False, "restartCount": 0}
        if name in worker.ephemeral.finished:
            entry["state"] = {"terminated": worker.ephemeral.finished[name]}
        found.append(entry)
    return found
