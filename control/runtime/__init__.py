"""The node runtime (the containerd role): one process per node owning pod sandboxes and containers,
served over a Unix socket with CRI's verbs. See service.py for the error tree."""

from control.runtime.client import RuntimeCallError, RuntimeClient
from control.runtime.service import Runtime, RuntimeServiceError

__all__ = ["Runtime", "RuntimeCallError", "RuntimeClient", "RuntimeServiceError"]
