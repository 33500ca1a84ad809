"""Allocation under real concurrency on PostgreSQL: 20 threads, 20 connections."""
import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from ipam import locks, services
from ipam.models import Assignment, Prefix

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks"),
]

N = 20


def run_parallel(fn, args_list):
    """Run fn(*args) in one thread per args, all released at once; returns (results, errors)."""
    barrier = threading.Barrier(len(args_list))
    results, errors = [None] * len(args_list), [None] * len(args_list)

    def worker(i, args):
        try:
            barrier.wait(timeout=30)
            results[i] = fn(*args)
        except Exception as exc:  # collected and asserted on by the test
            errors[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results, errors


def test_twenty_static_allocations_get_twenty_addresses(tenant, make_customer):
    pool = services.create_prefix(actor=None, tenant=tenant, network="10.0.0.0/27", role=Prefix.Role.CUSTOMER_STATIC,
                                  gateway="10.0.0.1")
    customers = [make_customer() for _ in range(N)]
    results, errors = run_parallel(lambda c: services.assign_static_ip(c, pool, actor=None), [(c,) for c in customers])
    assert errors == [None] * N
    got = sorted(int(a.network.ip) for a in results)
    assert len(set(got)) == N
    assert [str(a.network) for a in Assignment.objects.order_by("network")] == [
        f"10.0.0.{i}/32" for i in range(2, 2 + N)]


def test_more_requests_than_addresses(tenant, make_customer):
    services.create_prefix(actor=None, tenant=tenant, network="10.0.0.0/28", role=Prefix.Role.CUSTOMER_STATIC)
    customers = [make_customer() for _ in range(N)]
    results, errors = run_parallel(lambda c: services.assign_static_ip(c, actor=None), [(c,) for c in customers])
    assert sum(r is not None for r in results) == 14  # a /28 has 14 usable addresses
    assert all(isinstance(e, ValidationError) and "No free /32" in str(e) for e in errors if e is not None)
    assert Assignment.objects.count() == 14


def test_same_address_requested_twenty_times(tenant, make_customer):
    services.create_prefix(actor=None, tenant=tenant, network="10.0.0.0/24", role=Prefix.Role.CUSTOMER_STATIC)
    customers = [make_customer() for _ in range(N)]
    results, errors = run_parallel(lambda c: services.assign_static_ip(c, actor=None, address="10.0.0.77"),
                                   [(c,) for c in customers])
    assert sum(r is not None for r in results) == 1
    assert all(isinstance(e, ValidationError) and "already assigned" in str(e) for e in errors if e is not None)


def test_same_customer_twenty_times(tenant, customer):
    services.create_prefix(actor=None, tenant=tenant, network="10.0.0.0/24", role=Prefix.Role.CUSTOMER_STATIC)
    results, errors = run_parallel(lambda c: services.assign_static_ip(c, actor=None), [(customer,)] * N)
    assert errors == [None] * N
    assert len({a.pk for a in results}) == 1
    assert Assignment.objects.count() == 1


def test_twenty_ipv6_allocations(tenant, make_customer, link_pool):
    services.create_prefix(actor=None, tenant=tenant, network="2001:db8:100::/48", role=Prefix.Role.IPV6_DELEGATED,
                           delegated_prefixlen=60)
    services.create_prefix(actor=None, tenant=tenant, network="2001:db8:1::/48", role=Prefix.Role.IPV6_LINK)
    customers = [make_customer() for _ in range(N)]
    results, errors = run_parallel(lambda c: services.assign_ipv6(c, actor=None), [(c,) for c in customers])
    assert errors == [None] * N
    links = {str(r.link.network) for r in results}
    delegated = {str(r.delegated.network) for r in results}
    assert len(links) == len(delegated) == N
    assert delegated == {f"2001:db8:100:{i:x}0::/60".replace(":00::", "::") for i in range(N)}


def test_mixed_assign_and_release_stay_consistent(tenant, make_customer):
    pool = services.create_prefix(actor=None, tenant=tenant, network="10.0.0.0/27", role=Prefix.Role.CUSTOMER_STATIC)
    customers = [make_customer() for _ in range(N)]
    first = [services.assign_static_ip(c, actor=None) for c in customers[:10]]

    def churn(i):
        if i < 10:
            services.release(first[i], actor=None)
        return services.assign_static_ip(customers[i], pool, actor=None) if i >= 10 or i % 2 else None

    results, errors = run_parallel(churn, [(i,) for i in range(N)])
    assert errors == [None] * N
    nets = list(Assignment.objects.values_list("network", flat=True))
    assert len(nets) == len(set(nets)) == 15


def test_lock_helpers_need_a_transaction(static_pool):
    with pytest.raises(locks.UnlockedAllocationError):
        locks.lock_pools([static_pool.pk])
    with pytest.raises(locks.UnlockedAllocationError):
        locks.assert_pool_locked(static_pool.pk)
