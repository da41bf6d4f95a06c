"""The proxy package's exceptions.

    ProxyError
    ├── ObjectError        an API object (Service, EndpointSlice, Node) cannot be used; names it and why
    └── NftError           nftables refused or could not run a transaction
        └── FakeNftError   the in-memory fake refused a transaction (unknown syntax, dangling reference, ...)
"""

from __future__ import annotations


class ProxyError(Exception):
    """Base of every error the proxy raises on purpose."""


class ObjectError(ProxyError):
    """An API object is malformed; the message names the object and the field."""


class NftError(ProxyError):
    """`nft` refused a transaction; carries its stderr and the transaction text."""

    def __init__(self, message: str, *, transaction: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.transaction = transaction
        self.stderr = stderr


class FakeNftError(NftError):
    """The fake refused a transaction, as the kernel or `nft` would (or would have to)."""
