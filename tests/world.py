"""A small two-tenant world with two branches per tenant, built through the services.

Tenant A:  rootA ─┬─ r1 ─┬─ s1          Tenant B: rootB ── rB1
                  │      └─ d1 (distributor)
                  └─ r2 ─┬─ s2
                         └─ d2
Every object has a name; the authorization matrix states its expectations in names."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django.utils import timezone

from ipam import services as ipam
from ipam.models import Reservation
from ispcore.accounts import services as accounts
from ispcore.accounts.models import User
from ispcore.accounts.roles import ManagerPermission, NodeKind, Role
from ispcore.billing.invoicing import create_invoice
from ispcore.billing.sales import purchase_package, record_payment
from ispcore.billing.services import open_wallet, post_transaction, system_wallet
from ispcore.cards import services as cards
from ispcore.catalog import services as catalog
from ispcore.subscribers import services as subscribers

PASSWORD = "Matrix-Pass-2026"
ALL_PERMS = list(ManagerPermission.values)


class World(dict):
    """name -> object; `.ids(kind, names)` maps names to primary keys."""

    def pk(self, name: str) -> int:
        return self[name].pk


def build_world() -> World:
    w = World()
    su = User(username="super", role=Role.SUPER_ADMIN, is_staff=True, is_superuser=True)
    su.set_password(PASSWORD)
    su.save()
    w["u:super"] = su
    expires = timezone.now() + timedelta(days=30)
    for t in ("A", "B"):
        tenant = accounts.create_tenant(actor=su, name=f"ISP {t}", slug=f"isp-{t.lower()}")
        w[f"tenant:{t}"] = tenant
        root = tenant.root_node
        w[f"node:root{t}"] = root
        w[f"u:admin{t}"] = accounts.create_user(actor=su, username=f"admin{t}", password=PASSWORD, role=Role.ADMIN, node=root)
        w[f"zone:{t}"] = subscribers.create_zone(actor=su, tenant=tenant, name=f"Zone {t}")
        w[f"nas:{t}"] = subscribers.create_nas(actor=su, tenant=tenant, name=f"NAS {t}",
                                               ip_address=f"192.0.2.{1 if t == 'A' else 2}", secret="secret123")
        for code in ("revenue", "vat", "cash", "gateway", "adjustment"):
            w[f"wallet:sys{t}:{code}"] = system_wallet(tenant, code)
        w[f"wallet:root{t}"] = open_wallet(tenant=tenant, node=root)
    su_a = w["u:adminA"]
    su_b = w["u:adminB"]
    rootA, rootB = w["node:rootA"], w["node:rootB"]
    mk = accounts.create_node
    w["node:r1"] = mk(actor=su_a, parent=rootA, kind=NodeKind.RESELLER, name="R1")
    w["node:r2"] = mk(actor=su_a, parent=rootA, kind=NodeKind.RESELLER, name="R2", billing_mode="postpaid",
                      credit_limit=Decimal("1000"))
    w["node:s1"] = mk(actor=su_a, parent=w["node:r1"], kind=NodeKind.SUB_RESELLER, name="S1")
    w["node:s2"] = mk(actor=su_a, parent=w["node:r2"], kind=NodeKind.SUB_RESELLER, name="S2")
    w["node:d1"] = mk(actor=su_a, parent=w["node:r1"], kind=NodeKind.CARD_DISTRIBUTOR, name="D1")
    w["node:d2"] = mk(actor=su_a, parent=w["node:r2"], kind=NodeKind.CARD_DISTRIBUTOR, name="D2")
    w["node:rB1"] = mk(actor=su_b, parent=rootB, kind=NodeKind.RESELLER, name="RB1")
    users = {
        "r1": (Role.RESELLER, "node:r1", None), "r2": (Role.RESELLER, "node:r2", None),
        "s1": (Role.SUB_RESELLER, "node:s1", None), "s2": (Role.SUB_RESELLER, "node:s2", None),
        "m1": (Role.MANAGER, "node:r1", ALL_PERMS), "m2": (Role.MANAGER, "node:r2", ALL_PERMS),
        "m0": (Role.MANAGER, "node:r1", []),
        "d1": (Role.CARD_DISTRIBUTOR, "node:d1", None), "d2": (Role.CARD_DISTRIBUTOR, "node:d2", None),
        "rB1": (Role.RESELLER, "node:rB1", None),
    }
    for name, (role, node, perms) in users.items():
        actor = su_b if name == "rB1" else su_a
        w[f"u:{name}"] = accounts.create_user(actor=actor, username=name, password=PASSWORD, role=role, node=w[node],
                                              permissions=perms)
    for name, tenant, price in (("A1", "A", "500"), ("A2", "A", "600"), ("A3", "A", "700"), ("B1", "B", "500")):
        w[f"pkg:{name}"] = catalog.create_package(actor=su, tenant=w[f"tenant:{tenant}"], name=f"Package {name}",
                                                  billing_mode="monthly", price=Decimal(price),
                                                  upload_kbps=5120, download_kbps=5120, customer_types=["pppoe"])
    prices = {"r1": "A1", "s1": "A1", "r2": "A2", "s2": "A2", "rB1": "B1"}
    for node, pkg in prices.items():
        w[f"price:{node}"] = catalog.set_price(actor=su, node=w[f"node:{node}"], package=w[f"pkg:{pkg}"],
                                               node_price=Decimal("300"), customer_price=Decimal("500"))
    customers = {"rootA": ("A", "A3"), "r1": ("A", "A1"), "s1": ("A", "A1"), "r2": ("A", "A2"), "s2": ("A", "A2"),
                 "rB1": ("B", "B1")}
    for i, (node, (t, pkg)) in enumerate(customers.items()):
        w[f"cust:{node}"] = subscribers.create_customer(
            actor=su, tenant=w[f"tenant:{t}"], node=w[f"node:{node}"], username=f"cust-{node}", password="cpass1",
            customer_type="pppoe", full_name=f"Customer {node}", mobile=f"0171{i:07d}", package=w[f"pkg:{pkg}"],
            expires_at=expires,
        )
    for c in ("r1", "r2"):
        w[f"u:c{c[-1]}"] = subscribers.enable_portal_login(w[f"cust:{c}"], actor=su, password=PASSWORD)
    for name in ("node:r1", "node:r2", "node:s1", "node:s2", "node:d1", "node:d2", "node:rB1"):
        w[f"wallet:{name[5:]}"] = open_wallet(tenant=w[name].tenant, node=w[name])
    for name in ("rootA", "r1", "s1", "r2", "s2", "rB1"):
        w[f"wallet:cust:{name}"] = open_wallet(tenant=w[f"cust:{name}"].tenant, customer=w[f"cust:{name}"])
    for target in ("r1", "s1", "r2", "s2", "d1", "rB1", "cust:rootA", "cust:r1", "cust:r2", "cust:s2", "cust:rB1"):
        wallet = w[f"wallet:{target}"]
        adj = w[f"wallet:sys{'B' if target.endswith('rB1') else 'A'}:adjustment"]
        post_transaction(legs=[(adj, Decimal("-5000")), (wallet, Decimal("5000"))], kind="topup",
                         idempotency_key=f"world:{target}", actor=su)
    for name, pkg in (("r1", "A1"), ("s2", "A2"), ("rB1", "B1")):
        w[f"sale:{name}"] = purchase_package(w[f"cust:{name}"], w[f"pkg:{pkg}"], actor=su, payer="customer",
                                             idempotency_key=f"world:sale:{name}")
        w[f"pay:{name}"] = record_payment(w[f"cust:{name}"], Decimal("50"), method="cash", actor=su,
                                          idempotency_key=f"world:pay:{name}")
    for name in ("rootA", "s1", "rB1"):
        w[f"inv:{name}"] = create_invoice(w[f"cust:{name}"].pk, date(2026, 12, 1))
    for t, net in (("A", "10.50.0.0/24"), ("B", "10.60.0.0/24")):
        w[f"pfx:{t}"] = ipam.create_prefix(actor=su, tenant=w[f"tenant:{t}"], network=net, role="customer_static",
                                           nas=w[f"nas:{t}"], gateway=net.replace(".0/24", ".1"))
        w[f"res:{t}"] = Reservation.objects.get(tenant=w[f"tenant:{t}"])
    for name in ("r1", "s2"):
        w[f"asg:{name}"] = ipam.assign_static_ip(w[f"cust:{name}"], actor=su)
    for node, distributor in (("r1", "d1"), ("r2", "d2"), ("rB1", None)):
        batch = cards.generate_batch(actor=su, issuer=w[f"node:{node}"], count=1, face_value=Decimal("100"),
                                     validity_days=30, memo="world")
        if distributor:
            cards.issue_batch(batch, distributor=w[f"node:{distributor}"], actor=su)
        w[f"batch:{node}"] = batch
        w[f"card:{node}"] = batch.cards.get()
    for u in User.objects.all():
        w[f"u:{u.username}"] = u
    add_sms(w)
    return w


def add_sms(w: World) -> None:
    """SMS objects: a platform route (free, never connected), a default line per tenant,
    messages to customers of each branch and one a manager sent, incoming texts from
    customers and a stranger, templates and campaigns. Built through the SMS services."""
    from django.utils import timezone

    from notifications import campaigns as sms_campaigns
    from notifications import services as sms
    from notifications.models import InboundMessage, ProviderRoute, SenderId

    su = w["u:super"]
    ProviderRoute.objects.create(name="world-sms", kind="smpp", is_default=True, price_per_part=Decimal("0"),
                                 settings={"host": "127.0.0.1", "port": 1, "system_id": "w", "password": "w"})
    # not the tenants' default line: tests that build on the world add their own default
    for t in ("A", "B"):
        w[f"line:{t}"] = SenderId.objects.create(tenant=w[f"tenant:{t}"], value=f"World{t}")
    for name in ("rootA", "r1", "s2", "rB1"):
        cust = w[f"cust:{name}"]
        w[f"msg:{name}"] = sms.queue_message(tenant=cust.tenant, to=cust.mobile, text=f"Hello {name}", actor=su,
                                             customer=cust, sender=w[f"line:{'B' if name == 'rB1' else 'A'}"])
    w["msg:m1"] = sms.queue_message(tenant=w["tenant:A"], to="01811000001", text="From m1", actor=w["u:m1"],
                                    sender=w["line:A"])
    now = timezone.now()
    for name, tenant, customer, number in (("r1", "A", "cust:r1", None), ("s2", "A", "cust:s2", None),
                                           ("anon", "A", None, "8801999000001"), ("rB1", "B", "cust:rB1", None)):
        cust = w[customer] if customer else None
        w[f"in:{name}"] = InboundMessage.objects.create(
            tenant=w[f"tenant:{tenant}"], line=w[f"line:{tenant}"], provider="world-sms",
            from_number=number or cust.mobile.lstrip("+"), to_number=f"World{tenant}", text="BAL", received_at=now,
            customer=cust, status=InboundMessage.Status.HANDLED)
    for t in ("A", "B"):
        w[f"tpl:{t}"] = sms.save_template(tenant=w[f"tenant:{t}"], actor=w[f"u:admin{t}"], name="Due",
                                          body="প্রিয় {name}, বকেয়া {due} টাকা")
    audience = {"kind": "numbers", "numbers": ["01711999001"]}
    for name, actor, tenant in (("A", "adminA", "A"), ("m1", "m1", "A"), ("B", "adminB", "B")):
        w[f"camp:{name}"] = sms_campaigns.create_campaign(tenant=w[f"tenant:{tenant}"], actor=w[f"u:{actor}"],
                                                          name=f"Offer {name}", body="অফার {name}",
                                                          audience=audience, sender=w[f"line:{tenant}"])
