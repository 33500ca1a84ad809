"""Row locks for money. Every balance change happens on a wallet row locked here,
inside the transaction that writes its ledger entries.

`lock_wallets` takes the locks in id order, so two postings touching the same
wallets never deadlock. It also remembers which wallets the current transaction
holds, and `Wallet.save` calls `assert_locked`, so a balance written without the
lock fails loudly instead of racing silently.

The memory is tied to the transaction itself (`ispcore.core.locks`): a lock is never
believed to be held after the transaction that took it has ended."""
from __future__ import annotations

from collections.abc import Iterable

from ispcore.core.locks import holds, lock_rows


class UnlockedWriteError(RuntimeError):
    """A wallet was written without holding its row lock in the current transaction."""


REGISTRY = "_wallet_locks"


def lock_wallets(ids: Iterable[int], *, using: str = "default") -> dict:
    """SELECT ... FOR UPDATE the wallets, in id order; returns {id: Wallet}. Must run in atomic()."""
    from .models import Wallet

    return lock_rows(Wallet.objects.all(), ids, registry=REGISTRY, error=UnlockedWriteError, using=using)


def assert_locked(wallet, *, using: str | None = None) -> None:
    """Raise UnlockedWriteError unless this transaction holds `wallet`'s row lock."""
    if not holds(REGISTRY, wallet.pk, using=using or wallet._state.db or "default"):
        raise UnlockedWriteError(f"wallet {wallet.pk} written without lock_wallets() in this transaction")
