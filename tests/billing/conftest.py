from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ispcore.accounts import services as accounts
from ispcore.accounts.models import User
from ispcore.accounts.roles import ManagerPermission, NodeKind, Role
from ispcore.billing.services import open_wallet, post_transaction, system_wallet
from ispcore.catalog import services as catalog
from ispcore.subscribers import services as subscribers


def build_chain(vat="0", reseller_balance="0", sub_balance="5000"):
    su = User.objects.create(username=f"root{User.objects.count()}", role=Role.SUPER_ADMIN)
    tenant = accounts.create_tenant(actor=su, name="Chain ISP", slug=f"chain{User.objects.count()}",
                                    vat_percent=Decimal(vat))
    root = tenant.root_node
    admin = accounts.create_user(actor=su, username=f"admin{tenant.id}", password="Chain-Pass-2026", role=Role.ADMIN,
                                 node=root)
    r = accounts.create_node(actor=admin, parent=root, kind=NodeKind.RESELLER, name="R")
    s = accounts.create_node(actor=admin, parent=r, kind=NodeKind.SUB_RESELLER, name="S")
    p = accounts.create_node(actor=admin, parent=root, kind=NodeKind.RESELLER, name="P", billing_mode="postpaid",
                             credit_limit=Decimal("1500"))
    monthly = catalog.create_package(actor=admin, tenant=tenant, name="Home 10M", billing_mode="monthly",
                                     price=Decimal("1000"), upload_kbps=10240, download_kbps=10240,
                                     customer_types=["pppoe", "static"])
    fast = catalog.create_package(actor=admin, tenant=tenant, name="Home 20M", billing_mode="monthly",
                                  price=Decimal("1500"), upload_kbps=20480, download_kbps=20480, customer_types=["pppoe"])
    week = catalog.create_package(actor=admin, tenant=tenant, name="7 days", billing_mode="prepaid_days", validity=7,
                                  price=Decimal("200"), upload_kbps=5120, download_kbps=5120,
                                  customer_types=["pppoe", "hotspot"])
    hours = catalog.create_package(actor=admin, tenant=tenant, name="24 hours", billing_mode="prepaid_hours",
                                   validity=24, price=Decimal("80"), upload_kbps=2048, download_kbps=4096,
                                   customer_types=["hotspot"])
    catalog.set_price(actor=admin, node=r, package=monthly, node_price=Decimal("600"), customer_price=Decimal("1000"))
    catalog.set_price(actor=admin, node=s, package=monthly, node_price=Decimal("750"), customer_price=Decimal("1000"))
    catalog.set_price(actor=admin, node=r, package=week, node_price=Decimal("150"), customer_price=Decimal("200"))
    catalog.set_price(actor=admin, node=p, package=week, node_price=Decimal("140"), customer_price=Decimal("200"))
    adj = system_wallet(tenant, "adjustment")
    for node, amount in ((r, reseller_balance), (s, sub_balance)):
        if Decimal(amount):
            post_transaction(legs=[(adj, -Decimal(amount)), (open_wallet(tenant=tenant, node=node), Decimal(amount))],
                             kind="topup", idempotency_key=f"chain:{node.id}")
    cash_manager = accounts.create_user(actor=admin, username=f"cash{tenant.id}", password="Chain-Pass-2026",
                                        role=Role.MANAGER, node=root,
                                        permissions=[ManagerPermission.COLLECT_CASH, ManagerPermission.VIEW_CUSTOMERS])
    expires = timezone.now() + timedelta(days=3)

    def customer(node, username, ctype="pppoe", package=week, **extra):
        return subscribers.create_customer(actor=admin, tenant=tenant, node=node, username=username, password="pw1234",
                                           customer_type=ctype, full_name=username, mobile="01712345678",
                                           package=package, expires_at=extra.pop("expires_at", expires),
                                           static_ip=extra.pop("static_ip", None), **extra)

    return {"su": su, "tenant": tenant, "admin": admin, "root": root, "r": r, "s": s, "p": p, "monthly": monthly,
            "fast": fast, "week": week, "hours": hours, "customer": customer, "cash_manager": cash_manager}


@pytest.fixture
def chain(db):
    return build_chain()
