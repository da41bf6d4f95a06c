"""The proxy package's exceptions.

    ProxyError
    └── ObjectError        an API object (Service, EndpointSlice, Node) cannot be used; names it and why

What the nft / iptables seams raise is firewall's (firewall.errors: FirewallError, NftError,
FakeNftError, IptablesError, FakeIptablesError), re-exported here unwrapped so that callers of the
proxy's backends catch them by the same names as before.
"""

from __future__ import annotations

from firewall.errors import FakeIptablesError, FakeNftError, FirewallError, IptablesError, NftError

__all__ = ["FakeIptablesError", "FakeNftError", "FirewallError", "IptablesError", "NftError", "ObjectError",
           "ProxyError"]


class ProxyError(Exception):
    """Base of every error the proxy itself raises on purpose."""


class ObjectError(ProxyError):
    """An API object is malformed; the message names the object and the field."""
