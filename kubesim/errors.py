"""The kubesim tool's exceptions: one tree, so the CLI can catch "kubesim said no" in one place.

    KubesimError                 the tool cannot do what was asked; the message says why and what to do
    ├── PreflightError           the machine or the name says no before anything is made (cluster.py)
    ├── StateError               the state directory says no: a cluster exists, is busy, or is unknown
    │   └── StateInputError      a cluster name or state root refused before anything is touched (exit 2)
    ├── ComponentError           a component would not start, stop or answer (components.py)
    ├── PolicyQueryError         `kubesim policy` cannot answer: an unknown pod, a malformed address
    ├── GraphError               `kubesim graph` was given facts it cannot draw (a missing field, a wrong type)
    ├── ObserveError             `kubesim observe` cannot listen on a node (a tool missing, a table refused)
    ├── PortForwardInputError    `kubesim port-forward` given a port or target that can never work (exit 2)
    └── PortForwardTargetError   its target is not there, not running, has no such port, or refused one

The libraries underneath keep their own roots and pass through unchanged: netsim's NetsimError (and
TopologyError, exit 2), the proxy's ProxyError, the apiserver's APIError.
"""

from __future__ import annotations


class KubesimError(Exception):
    """The tool cannot do what was asked; the message says why and what to do."""


class PreflightError(KubesimError):
    """The machine or the name says no before anything is made."""


class StateError(KubesimError):
    """The state directory says no: a cluster exists already, is busy, or is unknown."""


class StateInputError(StateError):
    """A cluster name or state root that kubesim refuses before touching anything."""


class ComponentError(KubesimError):
    """A component would not start, stop or answer."""


class PolicyQueryError(KubesimError):
    """The question cannot be answered (an unknown pod, a malformed address); the message says which."""


class GraphError(KubesimError):
    """The cluster facts cannot be drawn: the message names the field and what it should be."""


class ObserveError(KubesimError):
    """`kubesim observe` cannot listen on a node: a tool is missing, or its trace table was refused."""


class PortForwardInputError(KubesimError):
    """A port-forward's port or target that can never work; the message says how to write one."""


class PortForwardTargetError(KubesimError):
    """A port-forward's target is not there, not running, or has no such port (or the pod refused it)."""
