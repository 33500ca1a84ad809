"""Prefix rules: no overlap unless one is the explicit parent, roles and sizes, identity."""
import pytest
from django.core.exceptions import ValidationError

from ipam import services
from ipam.models import Prefix, Reservation
from ispcore.core.models import AuditEvent

R = Prefix.Role


def mk(tenant, network, role=R.INFRASTRUCTURE, **kw):
    return services.create_prefix(actor=None, tenant=tenant, network=network, role=role, **kw)


def test_create_sets_family_and_audits(tenant, users):
    p = services.create_prefix(actor=users["admin"], tenant=tenant, network="10.0.0.0/24", role=R.CUSTOMER_STATIC,
                               name="static-1")
    assert p.family == 4 and p.unit_prefixlen == 32
    event = AuditEvent.objects.get(action="ipam.prefix.create", object_id=str(p.pk))
    assert event.actor == users["admin"] and event.tenant_id == tenant.id


def test_overlap_needs_explicit_parent(tenant):
    big = mk(tenant, "10.0.0.0/16")
    with pytest.raises(ValidationError, match="lies inside 10.0.0.0/16"):
        mk(tenant, "10.0.1.0/24", R.CUSTOMER_STATIC)
    child = mk(tenant, "10.0.1.0/24", R.CUSTOMER_STATIC, parent=big)
    grandchild = mk(tenant, "10.0.1.0/28", R.CUSTOMER_STATIC, parent=child)
    assert grandchild.parent == child
    # the grandchild overlaps `big` too, but `big` is its ancestor: allowed
    with pytest.raises(ValidationError, match="lies inside 10.0.1.0/24"):
        mk(tenant, "10.0.1.16/28", R.CUSTOMER_STATIC, parent=big)


def test_siblings_never_overlap(tenant):
    big = mk(tenant, "10.0.0.0/16")
    mk(tenant, "10.0.1.0/24", parent=big)
    with pytest.raises(ValidationError, match="would contain the existing prefix 10.0.1.0/24"):
        mk(tenant, "10.0.0.0/23", parent=big)
    with pytest.raises(ValidationError, match="already exists"):
        mk(tenant, "10.0.1.0/24", parent=big)
    with pytest.raises(ValidationError, match="would contain"):
        mk(tenant, "10.0.0.0/8")


def test_child_must_lie_strictly_inside_parent(tenant):
    big = mk(tenant, "10.0.0.0/16")
    for network in ["10.1.0.0/24", "10.0.0.0/16", "10.0.0.0/15", "2001:db8::/64"]:
        with pytest.raises(ValidationError):
            mk(tenant, network, parent=big)


def test_tenants_do_not_see_each_others_space(tenant, other_tenant):
    mk(tenant, "10.0.0.0/16")
    mk(other_tenant, "10.0.0.0/16")  # private space is per ISP


def test_role_and_family(tenant):
    with pytest.raises(ValidationError, match="IPv4"):
        mk(tenant, "2001:db8::/48", R.CUSTOMER_STATIC)
    with pytest.raises(ValidationError, match="IPv6"):
        mk(tenant, "10.0.0.0/24", R.IPV6_LINK)
    with pytest.raises(ValidationError, match="Unknown role"):
        mk(tenant, "10.0.0.0/24", "bogus")
    with pytest.raises(ValidationError, match="/64 or bigger"):
        mk(tenant, "2001:db8::/72", R.IPV6_LINK)


@pytest.mark.parametrize("size", [56, 60])
def test_delegation_sizes_accepted(tenant, size):
    p = mk(tenant, "2001:db8:100::/48", R.IPV6_DELEGATED, delegated_prefixlen=size)
    assert p.unit_prefixlen == size


@pytest.mark.parametrize("size", [48, 52, 62, 64])
def test_other_delegation_sizes_refused(tenant, size):
    with pytest.raises(ValidationError, match="/56 or /60"):
        mk(tenant, "2001:db8:100::/40", R.IPV6_DELEGATED, delegated_prefixlen=size)


def test_delegation_defaults_to_56_and_must_fit(tenant):
    assert mk(tenant, "2001:db8:100::/48", R.IPV6_DELEGATED).delegated_prefixlen == 56
    with pytest.raises(ValidationError, match="cannot hand out /56"):
        mk(tenant, "2001:db8:200::/60", R.IPV6_DELEGATED, delegated_prefixlen=56)
    with pytest.raises(ValidationError, match="Only delegated pools"):
        mk(tenant, "2001:db8:300::/48", R.IPV6_LINK, delegated_prefixlen=56)


def test_dynamic_pools_have_no_children_and_no_static_ips(tenant, make_customer):
    dyn = mk(tenant, "100.64.0.0/22", R.CUSTOMER_DYNAMIC)
    with pytest.raises(ValidationError, match="dynamic pool"):
        mk(tenant, "100.64.0.0/24", R.CUSTOMER_STATIC, parent=dyn)
    imported = make_customer("pppoe")
    # Imported data: a static IP IPAM does not manage yet (the services would refuse to create it).
    type(imported).objects.filter(pk=imported.pk).update(static_ip="100.65.0.9")
    with pytest.raises(ValidationError, match="static IPs"):
        mk(tenant, "100.65.0.0/24", R.CUSTOMER_DYNAMIC)


def test_new_child_cannot_cover_assignments_of_its_parent(tenant, customer):
    pool = mk(tenant, "10.9.0.0/24", R.CUSTOMER_STATIC)
    services.assign_static_ip(customer, actor=None)  # 10.9.0.1
    with pytest.raises(ValidationError, match="covers addresses already assigned"):
        mk(tenant, "10.9.0.0/28", R.CUSTOMER_DYNAMIC, parent=pool)
    mk(tenant, "10.9.0.128/25", R.CUSTOMER_DYNAMIC, parent=pool)


def test_gateway_is_reserved(tenant, nas):
    p = mk(tenant, "10.0.0.0/24", R.CUSTOMER_STATIC, nas=nas, gateway="10.0.0.1")
    r = Reservation.objects.get(tenant=tenant)
    assert str(r.network) == "10.0.0.1/32" and r.kind == Reservation.Kind.GATEWAY and r.nas == nas
    assert p.nas == nas


def test_nas_and_parent_of_another_tenant_refused(tenant, other_tenant, nas):
    other = mk(other_tenant, "10.0.0.0/16")
    with pytest.raises(ValidationError) as exc:
        mk(tenant, "10.0.1.0/24", parent=other)
    assert "parent" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        mk(other_tenant, "10.5.0.0/24", nas=nas)
    assert "nas" in exc.value.message_dict


def test_update_changes_only_labels(tenant, nas):
    p = mk(tenant, "10.0.0.0/24", R.CUSTOMER_STATIC)
    p = services.update_prefix(p, actor=None, name="pool-a", description="first", nas=nas)
    p.refresh_from_db()
    assert (p.name, p.description, p.nas) == ("pool-a", "first", nas)
    with pytest.raises(ValidationError, match="cannot be changed"):
        services.update_prefix(p, actor=None, network="10.0.1.0/24")
    with pytest.raises(ValidationError, match="cannot be changed"):
        services.update_prefix(p, actor=None, role=R.CUSTOMER_DYNAMIC)
    services.update_prefix(p, actor=None, role=R.CUSTOMER_STATIC)  # unchanged value: fine


def test_delete_only_when_empty(tenant, customer):
    big = mk(tenant, "10.0.0.0/16")
    pool = mk(tenant, "10.0.1.0/24", R.CUSTOMER_STATIC, parent=big)
    a = services.assign_static_ip(customer, actor=None)
    with pytest.raises(ValidationError, match="sub-prefixes"):
        services.delete_prefix(big, actor=None)
    with pytest.raises(ValidationError, match="assignments"):
        services.delete_prefix(pool, actor=None)
    services.release(a, actor=None)
    services.delete_prefix(pool, actor=None)
    services.delete_prefix(big, actor=None)
    assert not Prefix.objects.filter(tenant=tenant).exists()


def test_reservations(tenant, customer, static_pool):
    services.assign_static_ip(customer, actor=None)  # 10.0.0.1
    with pytest.raises(ValidationError, match="assigned to customer"):
        services.create_reservation(actor=None, tenant=tenant, network="10.0.0.0/30")
    r = services.create_reservation(actor=None, tenant=tenant, network="10.0.0.4/30", kind="router")
    with pytest.raises(ValidationError, match="overlaps the reservation"):
        services.create_reservation(actor=None, tenant=tenant, network="10.0.0.5")
    services.update_reservation(r, actor=None, description="uplink", kind="other")
    with pytest.raises(ValidationError):
        services.update_reservation(r, actor=None, network="10.0.0.6/32")
    services.delete_reservation(r, actor=None)
    services.create_reservation(actor=None, tenant=tenant, network="10.0.0.5")
