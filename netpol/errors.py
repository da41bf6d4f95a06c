"""The network-policy agent's exceptions.

    NetpolError
    └── ObjectError   an API object (NetworkPolicy, Pod, Namespace, Node) cannot be used; names it and why
"""

from __future__ import annotations


class NetpolError(Exception):
    """Base of every error the network-policy agent raises on purpose."""


class ObjectError(NetpolError):
    """An API object is malformed; the message names the object and the field."""
