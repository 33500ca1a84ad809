"""IPv6 for PPPoE customers: a /64 on the link and a delegated /56 or /60."""
import pytest
from django.core.exceptions import ValidationError

from ipam import selectors, services
from ipam.models import Assignment, Prefix

R, K = Prefix.Role, Assignment.Kind


def test_link_and_delegated_prefixes(make_customer, link_pool, delegated_pool):
    a, b = make_customer(), make_customer()
    first = services.assign_ipv6(a, actor=None)
    second = services.assign_ipv6(b, actor=None)
    assert (str(first.link.network), str(first.delegated.network)) == ("2001:db8::/64", "2001:db8:100::/56")
    assert (str(second.link.network), str(second.delegated.network)) == ("2001:db8:0:1::/64", "2001:db8:100:100::/56")
    assert first.link.kind == K.IPV6_LINK and first.delegated.kind == K.IPV6_DELEGATED
    assert services.assign_ipv6(a, actor=None) == first  # idempotent


@pytest.mark.parametrize("size,pool,expected", [
    (56, "2001:db8:100::/54", ["2001:db8:100::/56", "2001:db8:100:100::/56", "2001:db8:100:200::/56",
                               "2001:db8:100:300::/56"]),
    (60, "2001:db8:100::/58", ["2001:db8:100::/60", "2001:db8:100:10::/60", "2001:db8:100:20::/60",
                               "2001:db8:100:30::/60"]),
])
def test_delegation_sizes(tenant, make_customer, link_pool, size, pool, expected):
    services.create_prefix(actor=None, tenant=tenant, network=pool, role=R.IPV6_DELEGATED, delegated_prefixlen=size)
    got = [services.assign_ipv6(make_customer(), actor=None).delegated for _ in range(4)]
    assert [str(a.network) for a in got] == expected
    assert all(a.network.prefixlen == size for a in got)
    with pytest.raises(ValidationError, match=f"No free /{size} left in {pool}"):
        services.assign_ipv6(make_customer(), actor=None)


def test_both_or_neither(tenant, make_customer, link_pool):
    c = make_customer()
    with pytest.raises(ValidationError, match="no IPv6 delegated-prefix pool"):
        services.assign_ipv6(c, actor=None)
    assert not Assignment.objects.filter(customer=c).exists()
    link, delegated = services.assign_ipv6(c, actor=None, delegate=False)
    assert delegated is None and link.network.prefixlen == 64


def test_from_the_nas_pools(tenant, nas, make_customer):
    from ispcore.subscribers.services import create_nas

    other = create_nas(actor=None, tenant=tenant, name="edge-9", ip_address="172.30.0.9", secret="secret-99")
    services.create_prefix(actor=None, tenant=tenant, network="2001:db8:a::/48", role=R.IPV6_LINK, nas=other)
    services.create_prefix(actor=None, tenant=tenant, network="2001:db8:b::/48", role=R.IPV6_LINK, nas=nas)
    services.create_prefix(actor=None, tenant=tenant, network="2001:db8:f00::/40", role=R.IPV6_DELEGATED, nas=nas,
                           delegated_prefixlen=60)
    got = services.assign_ipv6(make_customer(), actor=None, nas=nas)
    assert str(got.link.network) == "2001:db8:b::/64"
    assert str(got.delegated.network) == "2001:db8:f00::/60"
    with pytest.raises(ValidationError, match="There is no IPv6 delegated-prefix pool for NAS edge-9."):
        services.assign_ipv6(make_customer(), actor=None, nas=other)


def test_requested_prefixes(make_customer, link_pool, delegated_pool):
    c = make_customer()
    a = services.assign_customer_prefix(c, K.IPV6_LINK, actor=None, address="2001:db8:0:2::")
    assert str(a.network) == "2001:db8:0:2::/64"
    d = services.assign_customer_prefix(c, K.IPV6_DELEGATED, actor=None, address="2001:db8:100:300::/56")
    assert str(d.network) == "2001:db8:100:300::/56"
    other = make_customer()
    with pytest.raises(ValidationError, match="already assigned to customer"):
        services.assign_customer_prefix(other, K.IPV6_DELEGATED, actor=None, address="2001:db8:100:300::/56")
    with pytest.raises(ValidationError, match="host bits"):
        services.assign_customer_prefix(other, K.IPV6_LINK, actor=None, address="2001:db8:0:3::1")
    with pytest.raises(ValidationError, match="hands out /56 blocks, not /60"):
        services.assign_customer_prefix(other, K.IPV6_DELEGATED, actor=None, address="2001:db8:100:200::/60")
    # the allocator skips what was asked for explicitly
    assert str(services.assign_ipv6(other, actor=None).link.network) == "2001:db8::/64"


def test_only_pppoe_customers(make_customer, link_pool, delegated_pool):
    with pytest.raises(ValidationError, match="cannot hold"):
        services.assign_ipv6(make_customer("hotspot"), actor=None)


def test_sql_search_agrees_with_python_for_ipv6(tenant, make_customer, link_pool, delegated_pool):
    services.create_reservation(actor=None, tenant=tenant, network="2001:db8:100:100::1")  # blocks a whole /56
    for _ in range(3):
        services.assign_ipv6(make_customer(), actor=None)
        for pool in (link_pool, delegated_pool):
            assert selectors.first_free(pool) == selectors.first_free_python(pool)
    assert [str(n) for n in sorted(Assignment.objects.filter(kind=K.IPV6_DELEGATED).values_list("network", flat=True))] == [
        "2001:db8:100::/56", "2001:db8:100:200::/56", "2001:db8:100:300::/56"]
