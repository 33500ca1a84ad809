"""Row locks that the current transaction remembers holding.

`lock_rows` takes `SELECT ... FOR UPDATE` on rows in id order (two writers locking several
rows never deadlock) and records, for the current transaction, which ids it holds;
`holds` answers whether a row is locked here, so services can refuse to write a row they
did not lock. The memory is registered as an on_commit callback: Django drops it on
rollback (also of the savepoint that registered it) and runs it, clearing the set, on
commit. So a lock is never believed held after its transaction ended. Used for wallets
(billing) and address pools (ipam)."""
from __future__ import annotations

from collections.abc import Iterable

from django.db import connections, transaction


class _HeldLocks:
    def __init__(self) -> None:
        self.ids: set[int] = set()

    def __call__(self) -> None:  # runs at commit: the locks are released
        self.ids.clear()


def _held(registry: str, using: str) -> _HeldLocks | None:
    conn = connections[using]
    held = getattr(conn, registry, None)
    if held is None or not conn.in_atomic_block:
        return None
    if not any(entry[1] is held for entry in conn.run_on_commit):
        return None
    return held


def lock_rows(queryset, ids: Iterable[int], *, registry: str, error: type[Exception], using: str = "default") -> dict:
    """Lock the rows of `queryset` with these ids, in id order; returns {id: row}.

    Raises `error` outside a transaction and LookupError for missing ids."""
    conn = connections[using]
    if not conn.in_atomic_block:
        raise error(f"{registry}: rows must be locked inside transaction.atomic()")
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = {r.id: r for r in queryset.using(using).select_for_update(of=("self",)).filter(id__in=wanted).order_by("id")}
    missing = set(wanted) - set(rows)
    if missing:
        raise LookupError(f"{queryset.model._meta.label} not found: {sorted(missing)}")
    held = _held(registry, using)
    if held is None:
        held = _HeldLocks()
        setattr(conn, registry, held)
        transaction.on_commit(held, using=using)
    held.ids.update(wanted)
    return rows


def holds(registry: str, pk: int, *, using: str = "default") -> bool:
    """Does the current transaction hold the lock `lock_rows(registry=...)` took on `pk`?"""
    held = _held(registry, using)
    return held is not None and pk in held.ids
