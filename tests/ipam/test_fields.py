"""CidrField: netaddr values in, netaddr values out; containment lookups on PostgreSQL
and (through the registered functions) on SQLite."""
import pytest
from django.core.exceptions import ValidationError
from netaddr import IPNetwork

from ipam import services
from ipam.fields import SQLITE_FUNCTIONS, to_network
from ipam.models import Prefix


def test_to_network_normalises_and_is_strict():
    assert to_network("10.0.0.5") == IPNetwork("10.0.0.5/32")
    assert str(to_network(" 2001:DB8::/32 ")) == "2001:db8::/32"
    assert str(to_network("2001:db8::1")) == "2001:db8::1/128"
    with pytest.raises(ValidationError, match="host bits"):
        to_network("10.0.0.5/24")
    assert to_network("10.0.0.5/24", strict=False) == IPNetwork("10.0.0.0/24")
    for bad in ["", "10.1", "10/8", "300.0.0.1", "not-an-ip", "10.0.0.0/33"]:
        with pytest.raises(ValidationError):
            to_network(bad)


def test_round_trip_through_postgres_cidr(tenant):
    services.create_prefix(actor=None, tenant=tenant, network="10.20.0.0/16", role=Prefix.Role.INFRASTRUCTURE)
    services.create_prefix(actor=None, tenant=tenant, network="2001:DB8:AA::/48", role=Prefix.Role.INFRASTRUCTURE)
    rows = list(Prefix.objects.filter(tenant=tenant).order_by("family", "network"))
    assert [type(p.network) for p in rows] == [IPNetwork, IPNetwork]
    assert [str(p.network) for p in rows] == ["10.20.0.0/16", "2001:db8:aa::/48"]
    assert [p.family for p in rows] == [4, 6]


def test_containment_lookups(tenant):
    big = services.create_prefix(actor=None, tenant=tenant, network="10.0.0.0/16", role=Prefix.Role.INFRASTRUCTURE)
    small = services.create_prefix(actor=None, tenant=tenant, network="10.0.1.0/24",
                                   role=Prefix.Role.CUSTOMER_STATIC, parent=big)
    v6 = services.create_prefix(actor=None, tenant=tenant, network="2001:db8::/32", role=Prefix.Role.INFRASTRUCTURE)
    qs = Prefix.objects.filter(tenant=tenant)
    assert set(qs.within("10.0.0.0/16")) == {big, small}
    assert set(qs.within("10.0.1.0/24")) == {small}
    assert set(qs.filter(network__net_inside="10.0.0.0/16")) == {small}
    assert set(qs.containing("10.0.1.7")) == {big, small}
    assert set(qs.overlapping("10.0.0.0/8")) == {big, small}
    assert set(qs.within("2001:db8::/16")) == {v6}
    assert set(qs.within("10.0.1.77/24")) == {small}  # a filter value may carry host bits


def test_sqlite_functions_match_postgres_semantics():
    f = SQLITE_FUNCTIONS
    assert f["ipam_net_within"]("10.0.1.0/24", "10.0.0.0/16") == 1
    assert f["ipam_net_within"]("10.0.0.0/16", "10.0.0.0/16") == 1
    assert f["ipam_net_inside"]("10.0.0.0/16", "10.0.0.0/16") == 0
    assert f["ipam_net_contains"]("10.0.0.0/16", "10.0.0.5") == 1
    assert f["ipam_net_overlaps"]("10.0.0.0/16", "10.0.255.0/24") == 1
    assert f["ipam_net_overlaps"]("10.1.0.0/16", "10.0.255.0/24") == 0
    assert f["ipam_net_within"]("2001:db8::/64", "10.0.0.0/8") == 0  # families never mix
    assert f["ipam_net_within"](None, "10.0.0.0/8") == 0
