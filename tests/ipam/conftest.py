"""IPAM fixtures, built through the real services (accounts, subscribers, ipam)."""
from __future__ import annotations

import itertools

import pytest

from ipam import services
from ipam.models import Prefix
from ispcore.accounts.roles import NodeKind, Role
from ispcore.accounts.services import create_node, create_tenant, create_user
from ispcore.subscribers.services import create_customer, create_nas

_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def _no_radius(monkeypatch):
    """Keep tests off Redis unless a test installs its own publisher."""
    monkeypatch.setattr(services, "_publish", lambda tenant_id, customer_ids: None)


@pytest.fixture
def tenant(db):
    return create_tenant(actor=None, name="Dhaka Net", slug=f"dhaka-{next(_seq)}")


@pytest.fixture
def other_tenant(db):
    return create_tenant(actor=None, name="Other Net", slug=f"other-{next(_seq)}")


@pytest.fixture
def nas(tenant):
    return create_nas(actor=None, tenant=tenant, name="core-1", ip_address=f"172.16.0.{next(_seq) % 250 + 1}",
                      secret="s3cret-123")


@pytest.fixture
def make_customer(tenant):
    def make(customer_type="pppoe", *, node=None, tenant_=None, **fields):
        t = tenant_ or tenant
        n = next(_seq)
        return create_customer(actor=None, tenant=t, node=node or t.root_node, customer_type=customer_type,
                               username=fields.pop("username", f"cust{n}"), full_name=f"Customer {n}",
                               mobile="+8801712345678", **fields)
    return make


@pytest.fixture
def customer(make_customer):
    return make_customer("pppoe")


@pytest.fixture
def static_pool(tenant):
    return services.create_prefix(actor=None, tenant=tenant, network="10.0.0.0/29", role=Prefix.Role.CUSTOMER_STATIC)


@pytest.fixture
def link_pool(tenant):
    return services.create_prefix(actor=None, tenant=tenant, network="2001:db8::/60", role=Prefix.Role.IPV6_LINK)


@pytest.fixture
def delegated_pool(tenant):
    return services.create_prefix(actor=None, tenant=tenant, network="2001:db8:100::/54",
                                  role=Prefix.Role.IPV6_DELEGATED, delegated_prefixlen=56)


@pytest.fixture
def users(tenant, other_tenant):
    """One login per role, plus an admin of another tenant and a reseller of another branch."""
    root = tenant.root_node
    reseller_node = create_node(actor=None, parent=root, kind=NodeKind.RESELLER, name="R1")
    other_reseller_node = create_node(actor=None, parent=root, kind=NodeKind.RESELLER, name="R2")
    sub_node = create_node(actor=None, parent=reseller_node, kind=NodeKind.SUB_RESELLER, name="S1")
    dist_node = create_node(actor=None, parent=root, kind=NodeKind.CARD_DISTRIBUTOR, name="D1")
    pw = "a-long-pass-123"

    def user(name, role, node, **kw):
        return create_user(actor=None, username=f"{name}{next(_seq)}", password=pw, role=role, node=node, **kw)

    from ispcore.accounts.models import User

    out = {
        "super_admin": User.objects.create_user(username=f"root{next(_seq)}", password=pw, role=Role.SUPER_ADMIN),
        "admin": user("admin", Role.ADMIN, root),
        "manager_nas": user("mgrnas", Role.MANAGER, root, permissions=["manage_nas", "view_customers"]),
        "manager": user("mgr", Role.MANAGER, root, permissions=["view_customers"]),
        "reseller": user("res", Role.RESELLER, reseller_node),
        "other_reseller": user("res2", Role.RESELLER, other_reseller_node),
        "sub_reseller": user("sub", Role.SUB_RESELLER, sub_node),
        "card_distributor": user("dist", Role.CARD_DISTRIBUTOR, dist_node),
        "other_admin": user("oadmin", Role.ADMIN, other_tenant.root_node),
    }
    out["nodes"] = {"reseller": reseller_node, "other_reseller": other_reseller_node, "sub": sub_node}
    return out
