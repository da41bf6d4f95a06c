"""The iptables backend's exceptions (kept here, not in proxy/errors.py, which the nftables work owns).

    ProxyError
    └── IptablesError          iptables-restore / iptables-save refused or could not run
        └── FakeIptablesError  the in-memory fake refused a transaction (syntax outside the subset,
                               a jump to a missing chain, a target in a hook that does not allow it, ...)
"""

from __future__ import annotations

from proxy.errors import ProxyError


class IptablesError(ProxyError):
    """iptables refused a transaction; carries its stderr and the transaction text."""

    def __init__(self, message: str, *, transaction: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.transaction = transaction
        self.stderr = stderr


class FakeIptablesError(IptablesError):
    """The fake refused a transaction, as iptables-restore or the kernel would (or would have to)."""
