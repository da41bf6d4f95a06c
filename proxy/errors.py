"""The proxy package's exceptions.

    ProxyError
    ├── ObjectError        an API object (Service, EndpointSlice, Node) cannot be used; names it and why
    ├── NftError           nftables refused or could not run a transaction     (also a firewall.errors.NftError)
    └── IptablesError      iptables refused or could not run a transaction     (also a firewall.errors.IptablesError)

The nft / iptables seams and their fakes are firewall's and raise firewall's errors (firewall.errors);
the backends' public methods raise them again as the proxy's (`raised_as_proxy_errors`), which are
both, so a caller may catch ProxyError, or firewall's classes, or these. The original error, a fake's
FakeNftError / FakeIptablesError included, stays the __cause__. Those two are re-exported here for the
tests that drive a fake directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from firewall import errors as firewall_errors
from firewall.errors import FakeIptablesError, FakeNftError

__all__ = ["FakeIptablesError", "FakeNftError", "IptablesError", "NftError", "ObjectError", "ProxyError",
           "raised_as_proxy_errors"]

P = ParamSpec("P")
R = TypeVar("R")


class ProxyError(Exception):
    """Base of every error the proxy raises on purpose."""


class ObjectError(ProxyError):
    """An API object is malformed; the message names the object and the field."""


class NftError(ProxyError, firewall_errors.NftError):
    """`nft` refused a transaction; carries its stderr and the transaction text."""


class IptablesError(ProxyError, firewall_errors.IptablesError):
    """iptables refused a transaction; carries its stderr and the transaction text."""


def raised_as_proxy_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Let firewall's errors out of METHOD as the proxy's (see the module docstring)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except ProxyError:
            raise
        except firewall_errors.NftError as err:
            raise NftError(str(err), transaction=err.transaction, stderr=err.stderr) from err
        except firewall_errors.IptablesError as err:
            raise IptablesError(str(err), transaction=err.transaction, stderr=err.stderr) from err

    return wrapper
