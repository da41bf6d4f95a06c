"""The firewall package's exceptions: what the nft / iptables seams and their fakes raise.

    FirewallError
    ├── NftError               `nft` refused or could not run a transaction
    │   └── FakeNftError       the in-memory fake refused a transaction (syntax outside its subset,
    │                          a dangling reference, a statement in a hook that does not allow it, ...)
    └── IptablesError          iptables-restore / iptables-save refused or could not run
        └── FakeIptablesError  the in-memory fake refused a transaction (syntax outside the subset,
                               a jump to a missing chain, a target in a hook that does not allow it, ...)

Each carries the transaction it refused and the tool's stderr, so the caller can log both. The proxy
and the network-policy agent catch these around their syncs (a failure forces the next sync full).
"""

from __future__ import annotations


class FirewallError(Exception):
    """Base of every error the firewall seams raise on purpose."""

    def __init__(self, message: str, *, transaction: str = "", stderr: str = "") -> None:
        super().__init__(message)
        self.transaction = transaction
        self.stderr = stderr


class NftError(FirewallError):
    """`nft` refused a transaction; carries its stderr and the transaction text."""


class FakeNftError(NftError):
    """The fake refused a transaction, as the kernel or `nft` would (or would have to)."""


class IptablesError(FirewallError):
    """iptables refused a transaction; carries its stderr and the transaction text."""


class FakeIptablesError(IptablesError):
    """The fake refused a transaction, as iptables-restore or the kernel would (or would have to)."""
