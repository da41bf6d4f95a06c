"""The container classes moved to the node runtime (control.runtime.containers, the containerd role);
this name stays so that the kubelet's modules and tests importing it keep working while the kubelet
becomes the runtime's client."""

from control.runtime.containers import *  # noqa: F403
from control.runtime.containers import (  # noqa: F401 - private names tests reach for
    _HTTP,
    _UDP,
    _coredns,
    _flag,
    _listen,
    _repository,
)
