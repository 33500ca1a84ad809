"""Static IPv4 allocation: lowest free address, requested addresses, every exclusion,
idempotency, release, and following the customer record."""
import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from ipam import locks, selectors, services
from ipam.models import Assignment, Prefix
from ispcore.core.models import AuditEvent
from ispcore.subscribers.models import Customer
from ispcore.subscribers.services import update_customer

R = Prefix.Role


def ips(assignments):
    return [str(a.network.ip) for a in assignments]


def test_lowest_free_skips_network_and_broadcast(make_customer, static_pool):
    got = [services.assign_static_ip(make_customer(), actor=None) for _ in range(6)]
    assert ips(got) == [f"10.0.0.{i}" for i in range(1, 7)]  # .0 and .7 never handed out
    with pytest.raises(ValidationError, match=r"No free /32 left in 10.0.0.0/29"):
        services.assign_static_ip(make_customer(), actor=None)


def test_lowest_free_fills_gaps_after_release(make_customer, static_pool):
    got = [services.assign_static_ip(make_customer(), actor=None) for _ in range(4)]
    services.release(got[1], actor=None)
    assert ips([services.assign_static_ip(make_customer(), actor=None)]) == ["10.0.0.2"]


def test_skips_reserved_router_and_unmanaged_addresses(tenant, nas, make_customer):
    pool = services.create_prefix(actor=None, tenant=tenant, network="10.1.0.0/28", role=R.CUSTOMER_STATIC,
                                  gateway="10.1.0.1")
    services.create_reservation(actor=None, tenant=tenant, network="10.1.0.2", kind="router")
    from ispcore.subscribers.services import create_nas

    create_nas(actor=None, tenant=tenant, name="edge", ip_address="10.1.0.3", secret="secret-99")
    make_customer("static", static_ip="10.1.0.4")  # set before IPAM managed it
    a = services.assign_static_ip(make_customer(), pool, actor=None)
    assert ips([a]) == ["10.1.0.5"]


def test_skips_sub_prefixes_and_dynamic_carve_outs(tenant, make_customer):
    pool = services.create_prefix(actor=None, tenant=tenant, network="10.2.0.0/24", role=R.CUSTOMER_STATIC)
    services.create_prefix(actor=None, tenant=tenant, network="10.2.0.0/25", role=R.CUSTOMER_DYNAMIC, parent=pool)
    services.create_prefix(actor=None, tenant=tenant, network="10.2.0.128/30", role=R.INFRASTRUCTURE, parent=pool)
    assert ips([services.assign_static_ip(make_customer(), pool, actor=None)]) == ["10.2.0.132"]
    with pytest.raises(ValidationError, match="is a dynamic pool"):
        services.assign_static_ip(make_customer(), pool, actor=None, address="10.2.0.9")
    with pytest.raises(ValidationError, match="lies in 10.2.0.0/25, a dynamic pool, not a static-IP pool"):
        services.assign_static_ip(make_customer(), actor=None, address="10.2.0.9")


def test_static_ip_never_inside_a_routers_dynamic_pool(tenant, nas, make_customer):
    services.create_prefix(actor=None, tenant=tenant, network="100.64.0.0/24", role=R.CUSTOMER_DYNAMIC, nas=nas)
    with pytest.raises(ValidationError, match="a dynamic pool, not a static-IP pool"):
        services.assign_static_ip(make_customer(), actor=None, address="100.64.0.10")


def test_requested_address(make_customer, static_pool):
    alice, bob = make_customer(username="alice"), make_customer()
    a = services.assign_static_ip(alice, actor=None, address="10.0.0.5")
    assert ips([a]) == ["10.0.0.5"] and a.prefix == static_pool
    with pytest.raises(ValidationError) as exc:
        services.assign_static_ip(bob, actor=None, address="10.0.0.5")
    assert exc.value.message_dict["address"] == ["10.0.0.5/32 is already assigned to customer alice."]
    for bad, reason in [("10.0.0.0", "network or broadcast"), ("10.0.0.7", "network or broadcast"),
                        ("10.9.9.9", "not inside any prefix"), ("10.0.0.4/30", "hands out /32"),
                        ("banana", "not an IPv4 or IPv6")]:
        with pytest.raises(ValidationError, match=reason):
            services.assign_static_ip(bob, actor=None, address=bad)
    assert Assignment.objects.filter(customer=bob).count() == 0


def test_pool_choice_prefers_the_nas_then_tenant_wide(tenant, nas, make_customer):
    from ispcore.subscribers.services import create_nas

    other_nas = create_nas(actor=None, tenant=tenant, name="edge-2", ip_address="172.31.0.2", secret="secret-99")
    shared = services.create_prefix(actor=None, tenant=tenant, network="10.3.0.0/30", role=R.CUSTOMER_STATIC)
    mine = services.create_prefix(actor=None, tenant=tenant, network="10.4.0.0/30", role=R.CUSTOMER_STATIC, nas=nas)
    services.create_prefix(actor=None, tenant=tenant, network="10.5.0.0/30", role=R.CUSTOMER_STATIC, nas=other_nas)
    got = [services.assign_static_ip(make_customer(), actor=None, nas=nas) for _ in range(4)]
    assert [a.prefix for a in got] == [mine, mine, shared, shared]
    with pytest.raises(ValidationError, match="No free /32 left in 10.4.0.0/30, 10.3.0.0/30"):
        services.assign_static_ip(make_customer(), actor=None, nas=nas)
    # without a NAS any pool of the tenant will do, lowest first
    assert str(services.assign_static_ip(make_customer(), actor=None).network) == "10.5.0.1/32"


def test_no_pool_and_wrong_pool(tenant, other_tenant, make_customer):
    with pytest.raises(ValidationError, match="There is no static-IP pool"):
        services.assign_static_ip(make_customer(), actor=None)
    foreign = services.create_prefix(actor=None, tenant=other_tenant, network="10.0.0.0/24",
                                     role=R.CUSTOMER_STATIC)
    with pytest.raises(ValidationError, match="another tenant"):
        services.assign_static_ip(make_customer(), foreign, actor=None)
    infra = services.create_prefix(actor=None, tenant=tenant, network="10.8.0.0/24", role=R.INFRASTRUCTURE)
    with pytest.raises(ValidationError, match="is an infrastructure prefix, not a static-IP pool"):
        services.assign_static_ip(make_customer(), infra, actor=None)


@pytest.mark.parametrize("ctype,ok", [("pppoe", True), ("static", True), ("hotspot", False), ("other", False)])
def test_customer_types(make_customer, static_pool, ctype, ok):
    c = make_customer(ctype, static_ip="10.0.0.6") if ctype == "static" else make_customer(ctype)
    if ok:
        assert services.assign_static_ip(c, actor=None, address="10.0.0.6")
    else:
        with pytest.raises(ValidationError, match="cannot hold"):
            services.assign_static_ip(c, actor=None)


def test_idempotent_replace_and_mirror(customer, static_pool, users):
    a = services.assign_static_ip(customer, actor=users["admin"])
    customer.refresh_from_db()
    assert customer.static_ip == "10.0.0.1"
    assert services.assign_static_ip(customer, actor=None) == a
    assert services.assign_static_ip(customer, actor=None, address="10.0.0.1") == a
    with pytest.raises(ValidationError, match="already has 10.0.0.1/32; release it first"):
        services.assign_static_ip(customer, actor=None, address="10.0.0.3")
    b = services.assign_static_ip(customer, actor=None, address="10.0.0.3", replace=True)
    customer.refresh_from_db()
    assert customer.static_ip == "10.0.0.3"
    assert list(Assignment.objects.filter(customer=customer)) == [b]
    assert AuditEvent.objects.filter(action="ipam.assign", actor=users["admin"]).count() == 1
    assert AuditEvent.objects.filter(action="ipam.release").count() == 1


def test_failed_replace_keeps_the_old_address(make_customer, static_pool):
    alice, bob = make_customer(), make_customer()
    services.assign_static_ip(alice, actor=None, address="10.0.0.2")
    services.assign_static_ip(bob, actor=None, address="10.0.0.3")
    with pytest.raises(ValidationError):
        services.assign_static_ip(alice, actor=None, address="10.0.0.3", replace=True)
    assert ips(Assignment.objects.filter(customer=alice)) == ["10.0.0.2"]


def test_release_is_idempotent_and_clears_the_mirror(customer, static_pool):
    a = services.assign_static_ip(customer, actor=None)
    services.release(a, actor=None)
    services.release(a, actor=None)
    customer.refresh_from_db()
    assert customer.static_ip is None
    assert not Assignment.objects.exists()


def test_release_on_type_change(customer, static_pool, link_pool, delegated_pool):
    services.assign_static_ip(customer, actor=None)
    services.assign_ipv6(customer, actor=None)
    customer.refresh_from_db()  # IPAM wrote static_ip
    update_customer(customer, actor=None, customer_type="static")
    held = services.sync_customer(customer, actor=None)
    assert sorted(a.kind for a in held) == ["ipv4_static"]  # IPv6 is for PPPoE customers
    customer.refresh_from_db()
    update_customer(customer, actor=None, customer_type="hotspot", static_ip=customer.static_ip)
    assert services.sync_customer(customer, actor=None) == []
    customer.refresh_from_db()
    assert customer.static_ip is None


def test_release_on_customer_deletion(customer, static_pool, link_pool, delegated_pool):
    services.assign_static_ip(customer, actor=None)
    services.assign_ipv6(customer, actor=None)
    assert services.release_customer(customer, actor=None, kinds=["ipv6_link"]) == 1
    assert Assignment.objects.count() == 2
    # and if the row goes anyway, the database releases the rest (CASCADE)
    customer.wallet.delete()
    Customer.objects.filter(pk=customer.pk).delete()
    assert not Assignment.objects.exists()


def test_sync_follows_the_customer_static_ip(make_customer, static_pool):
    # The customer services call sync_customer on create and on a static_ip/type change.
    c = make_customer("static", static_ip="10.0.0.4")
    assert ips(list(c.ip_assignments.all())) == ["10.0.0.4"]
    update_customer(c, actor=None, static_ip="10.0.0.5")
    assert ips(list(c.ip_assignments.all())) == ["10.0.0.5"]
    assert services.sync_customer(c, actor=None) == list(c.ip_assignments.all())  # idempotent
    with pytest.raises(ValidationError, match="already assigned to customer"):
        make_customer("static", static_ip="10.0.0.5")
    p = make_customer("pppoe")
    services.assign_static_ip(p, actor=None)
    update_customer(p, actor=None, static_ip=None)
    assert list(p.ip_assignments.all()) == []


def test_sql_search_agrees_with_python(tenant, make_customer, nas):
    pool = services.create_prefix(actor=None, tenant=tenant, network="10.6.0.0/26", role=R.CUSTOMER_STATIC,
                                  gateway="10.6.0.1")
    services.create_prefix(actor=None, tenant=tenant, network="10.6.0.8/29", role=R.CUSTOMER_DYNAMIC, parent=pool)
    for _ in range(9):
        a = services.assign_static_ip(make_customer(), pool, actor=None)
        assert selectors.first_free(pool) == selectors.first_free_python(pool)
        if a.network.ip.words[-1] % 3 == 0:
            services.release(a, actor=None)
            assert selectors.first_free(pool) == selectors.first_free_python(pool)


def test_writes_need_the_pool_lock(static_pool):
    with transaction.atomic():
        with pytest.raises(locks.UnlockedAllocationError):
            locks.assert_pool_locked(static_pool.pk)
        locks.lock_pools([static_pool.pk])
        locks.assert_pool_locked(static_pool.pk)


def test_interface_addresses(tenant, nas):
    infra = services.create_prefix(actor=None, tenant=tenant, network="10.255.0.0/24", role=R.INFRASTRUCTURE)
    a = services.assign_interface(nas, infra, actor=None, interface="ether1")
    assert str(a.network) == "10.255.0.1/32" and a.nas == nas and a.customer is None
    b = services.assign_interface(nas, actor=None, address="10.255.0.8/31", interface="sfp1")
    assert str(b.network) == "10.255.0.8/31"
    with pytest.raises(ValidationError, match="already assigned to NAS core-1 sfp1"):
        services.assign_interface(nas, actor=None, address="10.255.0.9")
    with pytest.raises(ValidationError, match="Give the address"):
        services.assign_interface(nas, actor=None)
