"""Row locks for money. Every balance change happens on a wallet row locked here,
inside the transaction that writes its ledger entries.

`lock_wallets` takes the locks in id order, so two postings touching the same
wallets never deadlock. It also remembers which wallets the current transaction
holds, and `Wallet.save` calls `assert_locked`, so a balance written without the
lock fails loudly instead of racing silently.

The memory is tied to the transaction itself: it is registered as an on_commit
callback, which Django drops on rollback (and on rollback of the savepoint that
registered it) and runs, clearing the set, on commit. So a lock is never believed
to be held after the transaction that took it has ended."""
from __future__ import annotations

from collections.abc import Iterable

from django.db import connections, transaction


class UnlockedWriteError(RuntimeError):
    """A wallet was written without holding its row lock in the current transaction."""


class _HeldLocks:
    def __init__(self) -> None:
        self.ids: set[int] = set()

    def __call__(self) -> None:  # runs at commit: the locks are released
        self.ids.clear()


def _held(using: str) -> _HeldLocks | None:
    conn = connections[using]
    held = getattr(conn, "_wallet_locks", None)
    if held is None or not conn.in_atomic_block:
        return None
    if not any(entry[1] is held for entry in conn.run_on_commit):
        return None
    return held


def lock_wallets(ids: Iterable[int], *, using: str = "default") -> dict:
    """SELECT ... FOR UPDATE the wallets, in id order; returns {id: Wallet}. Must run in atomic()."""
    from .models import Wallet

    conn = connections[using]
    if not conn.in_atomic_block:
        raise UnlockedWriteError("lock_wallets() must be called inside transaction.atomic()")
    wanted = sorted(set(ids))
    wallets = {w.id: w for w in Wallet.objects.using(using).select_for_update().filter(id__in=wanted).order_by("id")}
    missing = set(wanted) - set(wallets)
    if missing:
        raise LookupError(f"wallets not found: {sorted(missing)}")
    held = _held(using)
    if held is None:
        held = _HeldLocks()
        conn._wallet_locks = held
        transaction.on_commit(held, using=using)
    held.ids.update(wanted)
    return wallets


def assert_locked(wallet, *, using: str | None = None) -> None:
    """Raise UnlockedWriteError unless this transaction holds `wallet`'s row lock."""
    using = using or wallet._state.db or "default"
    held = _held(using)
    if held is None or wallet.pk not in held.ids:
        raise UnlockedWriteError(f"wallet {wallet.pk} written without lock_wallets() in this transaction")
