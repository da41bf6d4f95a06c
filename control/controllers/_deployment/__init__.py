"""Deployment: a ReplicaSet per pod template, rolled from old to new (pkg/controller/deployment).

The new ReplicaSet is `<deployment>-<pod-template-hash>`; the hash (of the template and
status.collisionCount) is also a label on the ReplicaSet's selector and template, so the ReplicaSets of
one Deployment never select each other's pods. Rolling updates honour maxSurge / maxUnavailable with
upstream's rounding (surge up, unavailable down, both zero -> unavailable 1); Recreate scales the old
ones to zero and waits for their pods to be gone. Status and the Progressing / Available conditions are
what `kubectl rollout status` reads.

The modules follow upstream's files: controller.py (deployment_controller.go), sync.py, rolling.py,
recreate.py, progress.py, and util.py (deployment/util). This module is the package's public surface.
"""

from __future__ import annotations

from control.controllers._deployment.controller import DeploymentController
from control.controllers._deployment.util import compute_hash, equal_ignore_hash, fenceposts, new_rs_new_replicas

__all__ = ["DeploymentController", "compute_hash", "equal_ignore_hash", "fenceposts", "new_rs_new_replicas"]
