"""Properties: after any sequence of assign/release, no two assignments overlap, every
one obeys its pool, the SQL search agrees with the Python one, and the conflict
report finds nothing."""
import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netaddr import IPAddress

from ipam import selectors, services
from ipam.models import Assignment, Prefix, Reservation

K = Assignment.Kind
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_consistent(tenant):
    rows = list(Assignment.objects.filter(tenant=tenant).select_related("prefix", "customer"))
    spans = sorted((a.network.version, a.network.first, a.network.last) for a in rows)
    for (v1, _f1, l1), (v2, f2, _l2) in zip(spans, spans[1:], strict=False):
        assert v1 != v2 or l1 < f2, "two assignments overlap"
    reserved = [r.network for r in Reservation.objects.filter(tenant=tenant)]
    for a in rows:
        pool = a.prefix
        start, end = selectors.pool_bounds(pool)
        assert start <= a.network.first and a.network.last <= end
        assert a.network.prefixlen == pool.unit_prefixlen
        assert not any(r.first <= a.network.last and a.network.first <= r.last for r in reserved)
        if a.kind == K.IPV4_STATIC:
            a.customer.refresh_from_db()
            assert a.customer.static_ip == str(a.network.ip)
    for pool in Prefix.objects.filter(tenant=tenant).exclude(role=Prefix.Role.CUSTOMER_DYNAMIC):
        assert selectors.first_free(pool) == selectors.first_free_python(pool)
    assert [c for c in selectors.conflict_report(tenant.id) if c.severity == "error"] == []


ops = st.lists(
    st.tuples(st.sampled_from(["static", "static_at", "ipv6", "release", "release_all"]),
              st.integers(0, 5), st.integers(0, 20)),
    min_size=1, max_size=25,
)


@pytest.fixture
def world(tenant, make_customer):
    pool = services.create_prefix(actor=None, tenant=tenant, network="10.7.0.0/28", role=Prefix.Role.CUSTOMER_STATIC,
                                  gateway="10.7.0.1")
    services.create_prefix(actor=None, tenant=tenant, network="10.7.0.8/30", role=Prefix.Role.INFRASTRUCTURE,
                           parent=pool)
    services.create_prefix(actor=None, tenant=tenant, network="2001:db8::/62", role=Prefix.Role.IPV6_LINK)
    services.create_prefix(actor=None, tenant=tenant, network="2001:db8:100::/54", role=Prefix.Role.IPV6_DELEGATED,
                           delegated_prefixlen=56)
    services.create_prefix(actor=None, tenant=tenant, network="2001:db8:200::/58", role=Prefix.Role.IPV6_DELEGATED,
                           delegated_prefixlen=60)
    return tenant, [make_customer() for _ in range(6)]


@PROPS
@given(ops)
def test_no_two_assignments_overlap_after_any_sequence(world, sequence):
    tenant, customers = world
    with transaction.atomic():
        for op, who, n in sequence:
            customer = customers[who]
            try:
                if op == "static":
                    services.assign_static_ip(customer, actor=None)
                elif op == "static_at":
                    services.assign_static_ip(customer, actor=None, address=f"10.7.0.{n % 16}", replace=True)
                elif op == "ipv6":
                    services.assign_ipv6(customer, actor=None)
                elif op == "release":
                    a = Assignment.objects.filter(customer=customer).order_by("kind").first()
                    if a is not None:
                        services.release(a, actor=None)
                else:
                    services.release_customer(customer, actor=None)
            except ValidationError:
                pass  # pool full, address taken, reserved, network/broadcast: refused, never broken
            assert_consistent(tenant)
        transaction.set_rollback(True)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 63), st.integers(0, 8)), max_size=12), st.integers(0, 63), st.integers(0, 63))
def test_gap_search_matches_brute_force(blocks, start, end):
    ranges = [(lo, lo + size) for lo, size in blocks]
    expected = next((x for x in range(start, end + 1) if not any(lo <= x <= hi for lo, hi in ranges)), None)
    assert selectors.first_free_between(ranges, start, end) == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(8, 30))
def test_bounds_exclude_network_and_broadcast(address, prefixlen):
    net = f"{IPAddress(address)}/{prefixlen}"
    from netaddr import IPNetwork

    pool = Prefix(network=IPNetwork(net).cidr, family=4, role=Prefix.Role.CUSTOMER_STATIC)
    start, end = selectors.pool_bounds(pool)
    assert (start, end) == (pool.network.first + 1, pool.network.last - 1)
