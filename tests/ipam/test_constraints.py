"""The database backs every rule on its own: rows written without the services (raw
ORM saves, as a buggy script or an import would) are refused by PostgreSQL."""
import pytest
from django.db import IntegrityError, connection, transaction
from netaddr import IPNetwork

from ipam import services
from ipam.models import Assignment, Prefix, Reservation

R, K = Prefix.Role, Assignment.Kind


def refused(match=None):
    class _Ctx:
        def __enter__(self):
            self.raises = pytest.raises(IntegrityError, match=match)
            self.raises.__enter__()
            self.atomic = transaction.atomic()
            self.atomic.__enter__()

        def __exit__(self, *exc):
            self.atomic.__exit__(*exc)
            return self.raises.__exit__(*exc)

    return _Ctx()


def raw_prefix(tenant, network, role=R.INFRASTRUCTURE, **kw):
    net = IPNetwork(network)
    return Prefix.objects.create(tenant=tenant, network=net, family=net.version, role=role, **kw)


def raw_assignment(pool, network, customer=None, kind=K.IPV4_STATIC, **kw):
    return Assignment.objects.create(tenant_id=pool.tenant_id, prefix=pool, customer=customer,
                                     network=IPNetwork(network), kind=kind, **kw)


pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL constraints")


def test_prefix_siblings_cannot_overlap(tenant):
    big = raw_prefix(tenant, "10.0.0.0/16")
    with refused("ipam_prefix_no_sibling_overlap"):
        raw_prefix(tenant, "10.0.1.0/24")  # inside, but not naming its parent
    raw_prefix(tenant, "10.0.1.0/24", parent=big)
    with refused("ipam_prefix_no_sibling_overlap"):
        raw_prefix(tenant, "10.0.1.128/25", parent=big)
    with refused("ipam_prefix_unique_network"):
        raw_prefix(tenant, "10.0.0.0/16")


def test_prefix_child_inside_parent_and_identity_fixed(tenant):
    big = raw_prefix(tenant, "10.0.0.0/16")
    with refused("strictly inside its parent"):
        raw_prefix(tenant, "10.1.0.0/24", parent=big)
    dyn = raw_prefix(tenant, "100.64.0.0/22", R.CUSTOMER_DYNAMIC)
    with refused("cannot contain other prefixes"):
        raw_prefix(tenant, "100.64.0.0/24", R.CUSTOMER_STATIC, parent=dyn)
    with refused("cannot change"):
        Prefix.objects.filter(pk=big.pk).update(network=IPNetwork("10.0.0.0/15"))
    with refused("cannot change"):
        Prefix.objects.filter(pk=big.pk).update(role=R.CUSTOMER_STATIC)
    with refused("ipam_prefix_family_matches"):
        Prefix.objects.create(tenant=tenant, network=IPNetwork("10.9.0.0/16"), family=6, role=R.INFRASTRUCTURE)
    with refused("ipam_prefix_role_family"):
        raw_prefix(tenant, "2001:db8::/48", R.CUSTOMER_STATIC)
    with refused("ipam_prefix_fits_unit"):
        raw_prefix(tenant, "2001:db8:1::/60", R.IPV6_DELEGATED, delegated_prefixlen=56)


def test_no_address_assigned_twice(tenant, make_customer):
    pool = raw_prefix(tenant, "10.0.0.0/24", R.CUSTOMER_STATIC)
    a, b = make_customer(), make_customer()
    raw_assignment(pool, "10.0.0.5/32", a)
    with refused("ipam_assignment_unique_network"):
        raw_assignment(pool, "10.0.0.5/32", b)
    with refused("ipam_assignment_one_per_kind"):
        raw_assignment(pool, "10.0.0.6/32", a)


def test_no_delegated_prefix_assigned_twice_or_overlapping(tenant, make_customer):
    pool = raw_prefix(tenant, "2001:db8:100::/48", R.IPV6_DELEGATED, delegated_prefixlen=56)
    infra = raw_prefix(tenant, "2001:db8:200::/48", R.INFRASTRUCTURE)
    a, b = make_customer(), make_customer()
    raw_assignment(pool, "2001:db8:100:100::/56", a, K.IPV6_DELEGATED)
    with refused("ipam_assignment_unique_network"):
        raw_assignment(pool, "2001:db8:100:100::/56", b, K.IPV6_DELEGATED)
    raw_assignment(infra, "2001:db8:200::/64", None, K.INTERFACE, nas=_nas(tenant))
    with refused("ipam_assignment_no_overlap"):
        raw_assignment(infra, "2001:db8:200::/60", None, K.INTERFACE, nas=_nas(tenant, "172.16.9.2"))


def _nas(tenant, ip="172.16.9.1"):
    from ispcore.subscribers.models import Nas

    return Nas.objects.filter(ip_address=ip).first() or Nas.objects.create(
        tenant=tenant, name=f"r-{ip}", ip_address=ip, secret="x" * 8)


def test_assignment_inside_pool_and_not_network_broadcast_or_reserved(tenant, customer):
    pool = raw_prefix(tenant, "10.0.0.0/24", R.CUSTOMER_STATIC)
    Reservation.objects.create(tenant=tenant, network=IPNetwork("10.0.0.1/32"), kind="gateway")
    with refused("outside its pool"):
        raw_assignment(pool, "10.0.1.5/32", customer)
    with refused("network or broadcast"):
        raw_assignment(pool, "10.0.0.0/32", customer)
    with refused("network or broadcast"):
        raw_assignment(pool, "10.0.0.255/32", customer)
    with refused("reserved"):
        raw_assignment(pool, "10.0.0.1/32", customer)
    with refused("must be a /32"):
        raw_assignment(pool, "10.0.0.4/30", customer)
    raw_assignment(pool, "10.0.0.2/32", customer)


def test_assignment_kind_must_match_pool_role(tenant, customer):
    pool = raw_prefix(tenant, "10.0.0.0/24", R.CUSTOMER_STATIC)
    with refused("cannot come from"):
        raw_assignment(pool, "10.0.0.9/32", customer, K.IPV6_LINK)
    with refused("ipam_assignment_owner"):
        raw_assignment(pool, "10.0.0.9/32", None, K.IPV4_STATIC)


def test_assignment_not_in_more_specific_prefix_nor_dynamic_pool(tenant, customer):
    pool = raw_prefix(tenant, "10.0.0.0/24", R.CUSTOMER_STATIC)
    raw_prefix(tenant, "10.0.0.128/25", R.CUSTOMER_DYNAMIC, parent=pool)
    with refused("more specific prefix"):
        raw_assignment(pool, "10.0.0.200/32", customer)


def test_reservation_never_covers_an_assignment(tenant, customer):
    pool = raw_prefix(tenant, "10.0.0.0/24", R.CUSTOMER_STATIC)
    raw_assignment(pool, "10.0.0.7/32", customer)
    with refused("covers an assigned address"):
        Reservation.objects.create(tenant=tenant, network=IPNetwork("10.0.0.4/30"))
    Reservation.objects.create(tenant=tenant, network=IPNetwork("10.0.0.8/30"))
    with refused("ipam_reservation_no_overlap"):
        Reservation.objects.create(tenant=tenant, network=IPNetwork("10.0.0.9/32"))


def test_new_prefix_cannot_cover_existing_assignments(tenant, customer):
    pool = raw_prefix(tenant, "10.0.0.0/24", R.CUSTOMER_STATIC)
    raw_assignment(pool, "10.0.0.7/32", customer)
    with refused("already assigned"):
        raw_prefix(tenant, "10.0.0.0/29", R.CUSTOMER_DYNAMIC, parent=pool)


def test_services_turn_constraint_refusals_into_validation_errors(tenant, customer, static_pool, monkeypatch):
    """If the Python checks ever miss something, the constraint still refuses and the
    caller gets a ValidationError, not a 500 or a duplicate."""
    from django.core.exceptions import ValidationError

    other = services.create_prefix(actor=None, tenant=tenant, network="10.0.1.0/29", role=R.CUSTOMER_STATIC)
    raw_assignment(other, "10.0.1.1/32", customer)
    monkeypatch.setattr(services.selectors, "candidate_problems", lambda *a, **k: [])
    with pytest.raises(ValidationError) as exc:
        services.assign_static_ip(services.Customer.objects.create(
            tenant=tenant, node=tenant.root_node, customer_type="pppoe", username="x1", password="p",
            full_name="X", mobile="+8801712345678"), actor=None, address="10.0.1.1")
    assert "assigned meanwhile" in str(exc.value)
