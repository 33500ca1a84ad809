"""Row locks for address allocation.

Every assignment, and every reservation or sub-prefix that could take space from
a pool, is created while the transaction holds that pool's row lock (`SELECT ...
FOR UPDATE`). So two allocations from one pool run one after the other and the
second sees the first's address; the exclusion and unique constraints still have
the last word. (Releasing needs no pool lock: freeing space cannot conflict.)
Allocation locks the customer row first, then pools: one order, no deadlock.

`lock_pools` takes the locks in id order (no deadlock between two writers that
lock several pools) and remembers, for the current transaction, which pools it
holds; `assert_pool_locked` lets the services fail loudly if they ever write
without the lock. The memory is an on_commit callback, which Django drops on
rollback and runs (clearing it) on commit, exactly like billing's wallet locks.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.db import connections, transaction


class UnlockedAllocationError(RuntimeError):
    """An assignment was written without holding its pool's row lock."""


class _HeldLocks:
    def __init__(self) -> None:
        self.ids: set[int] = set()

    def __call__(self) -> None:  # runs at commit: the locks are released
        self.ids.clear()


def _held(using: str) -> _HeldLocks | None:
    conn = connections[using]
    held = getattr(conn, "_ipam_pool_locks", None)
    if held is None or not conn.in_atomic_block:
        return None
    if not any(entry[1] is held for entry in conn.run_on_commit):
        return None
    return held


def lock_pools(ids: Iterable[int], *, using: str = "default") -> dict:
    """SELECT ... FOR UPDATE the prefixes, in id order; returns {id: Prefix}. Must run in atomic()."""
    from .models import Prefix

    conn = connections[using]
    if not conn.in_atomic_block:
        raise UnlockedAllocationError("lock_pools() must be called inside transaction.atomic()")
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    pools = {
        p.id: p
        for p in Prefix.objects.using(using).select_for_update(of=("self",)).select_related("nas")
        .filter(id__in=wanted).order_by("id")
    }
    missing = set(wanted) - set(pools)
    if missing:
        raise LookupError(f"prefixes not found: {sorted(missing)}")
    held = _held(using)
    if held is None:
        held = _HeldLocks()
        conn._ipam_pool_locks = held
        transaction.on_commit(held, using=using)
    held.ids.update(wanted)
    return pools


def lock_customer(customer, *, using: str = "default"):
    """Lock the customer's row (before any pool: the one lock order) and return it fresh."""
    from ispcore.subscribers.models import Customer

    return Customer.objects.using(using).select_for_update(of=("self",)).select_related("tenant").get(pk=customer.pk)


def assert_pool_locked(pool_id: int, *, using: str = "default") -> None:
    """Raise UnlockedAllocationError unless this transaction holds the pool's row lock."""
    held = _held(using)
    if held is None or pool_id not in held.ids:
        raise UnlockedAllocationError(f"prefix {pool_id} written to without lock_pools() in this transaction")
