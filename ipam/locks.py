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
rollback and runs (clearing it) on commit: `ispcore.core.locks`, shared with billing's wallets.
"""
from __future__ import annotations

from collections.abc import Iterable

from ispcore.core.locks import holds, lock_rows


class UnlockedAllocationError(RuntimeError):
    """An assignment was written without holding its pool's row lock."""


REGISTRY = "_ipam_pool_locks"


def lock_pools(ids: Iterable[int], *, using: str = "default") -> dict:
    """SELECT ... FOR UPDATE the prefixes, in id order; returns {id: Prefix}. Must run in atomic()."""
    from .models import Prefix

    return lock_rows(Prefix.objects.select_related("nas"), ids, registry=REGISTRY, error=UnlockedAllocationError,
                     using=using)


def lock_customer(customer, *, using: str = "default"):
    """Lock the customer's row (before any pool: the one lock order) and return it fresh."""
    from ispcore.subscribers.models import Customer

    return Customer.objects.using(using).select_for_update(of=("self",)).select_related("tenant").get(pk=customer.pk)


def assert_pool_locked(pool_id: int, *, using: str = "default") -> None:
    """Raise UnlockedAllocationError unless this transaction holds the pool's row lock."""
    if not holds(REGISTRY, pool_id, using=using):
        raise UnlockedAllocationError(f"prefix {pool_id} written to without lock_pools() in this transaction")
