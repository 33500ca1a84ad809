"""Realistic demo data for a first run and for the docs: one ISP in Dhaka with its
reseller tree, packages of every billing mode, a router at 127.0.0.1 and 200 customers."""
from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from ispcore.accounts import services as accounts
from ispcore.accounts.models import Tenant, User
from ispcore.accounts.roles import ManagerPermission as P
from ispcore.accounts.roles import NodeKind, Role
from ispcore.billing.services import open_wallet, post_transaction, set_credit_limit, system_wallet
from ispcore.catalog import services as catalog

from . import services
from .models import Customer

DEMO_SLUG = "dhaka-fiber"
DEMO_PASSWORD = "demo-pass"
LOGINS = {
    "superadmin": ("super_admin", "Super-Admin-2026"),
    "admin": ("admin", "Isp-Admin-2026"),
    "reseller1": ("reseller", "Reseller-One-2026"),
    "reseller2": ("reseller", "Reseller-Two-2026"),
    "subreseller1": ("sub_reseller", "Sub-Reseller-2026"),
    "manager1": ("manager", "Manager-One-2026"),
    "manager2": ("manager", "Manager-Two-2026"),
    "distributor1": ("card_distributor", "Distributor-One-2026"),
    "distributor2": ("card_distributor", "Distributor-Two-2026"),
}

FIRST = ["Rahim", "Karim", "Fatema", "Ayesha", "Sabbir", "Nusrat", "Tanvir", "Mithila", "Arif", "Farhana",
         "রহিম", "করিম", "ফাতেমা", "আয়েশা", "সাব্বির", "নুসরাত", "তানভীর", "মিথিলা", "আরিফ", "ফারহানা"]
LAST = ["Uddin", "Hossain", "Ahmed", "Rahman", "Islam", "Khan", "Chowdhury", "Akter", "Sarkar", "Begum",
        "উদ্দিন", "হোসেন", "আহমেদ", "রহমান", "ইসলাম", "খান", "চৌধুরী", "আক্তার", "সরকার", "বেগম"]
ZONES = {"Mirpur": ["Mirpur 1", "Mirpur 10", "Pallabi"], "Uttara": ["Sector 4", "Sector 7"],
         "Dhanmondi": ["Road 27", "Jigatola"], "Mohammadpur": ["Shyamoli", "Lalmatia"], "Gulshan": ["Gulshan 1"]}
OPERATOR_PREFIXES = ["13", "14", "15", "16", "17", "18", "19"]

# name, billing mode, price, validity, up/down kbps, burst up/down, types
PACKAGES = [
    ("Home 5 Mbps", "monthly", "500", 30, 5120, 5120, 0, 0, ["pppoe", "static", "other"]),
    ("Home 10 Mbps", "monthly", "800", 30, 10240, 10240, 12288, 15360, ["pppoe", "static"]),
    ("Home 20 Mbps", "monthly", "1200", 30, 20480, 20480, 0, 0, ["pppoe", "static"]),
    ("Business 50 Mbps", "monthly", "3000", 30, 51200, 51200, 0, 0, ["pppoe", "static", "other"]),
    ("Cable TV", "monthly", "350", 30, 0, 0, 0, 0, ["other"]),
    ("3 days 5 Mbps", "prepaid_days", "100", 3, 2048, 5120, 0, 0, ["pppoe", "hotspot"]),
    ("7 days 5 Mbps", "prepaid_days", "200", 7, 2048, 5120, 4096, 8192, ["pppoe", "hotspot"]),
    ("15 days 10 Mbps", "prepaid_days", "350", 15, 4096, 10240, 0, 0, ["pppoe", "hotspot"]),
    ("30 days 10 Mbps", "prepaid_days", "600", 30, 4096, 10240, 0, 0, ["pppoe", "hotspot"]),
    ("1 hour WiFi", "prepaid_hours", "10", 1, 1024, 2048, 0, 0, ["hotspot"]),
    ("3 hours WiFi", "prepaid_hours", "25", 3, 1024, 3072, 0, 0, ["hotspot"]),
    ("12 hours WiFi", "prepaid_hours", "50", 12, 2048, 4096, 0, 0, ["hotspot"]),
    ("24 hours WiFi", "prepaid_hours", "80", 24, 2048, 5120, 4096, 8192, ["hotspot"]),
]


def _mobile(rng: random.Random) -> str:
    return f"+880{rng.choice(OPERATOR_PREFIXES)}{rng.randrange(10**7, 10**8):08d}"


def _expiry_for(package, now):
    if package.billing_mode == "prepaid_hours":
        return now + timedelta(hours=package.validity)
    return now + timedelta(days=package.validity)


@transaction.atomic
def seed_demo(*, customers: int = 200) -> Tenant:
    """Create the demo ISP. Returns the existing one if it is already there."""
    existing = Tenant.objects.filter(slug=DEMO_SLUG).first()
    if existing is not None:
        return existing
    rng = random.Random(2026)
    now = timezone.now()

    superadmin = User.objects.filter(username="superadmin").first()
    if superadmin is None:
        superadmin = User(username="superadmin", role=Role.SUPER_ADMIN, is_staff=True, is_superuser=True)
        superadmin.set_password(LOGINS["superadmin"][1])
        superadmin.save()

    tenant = accounts.create_tenant(actor=superadmin, name="Dhaka Fiber Net (ঢাকা ফাইবার নেট)", slug=DEMO_SLUG,
                                    vat_percent=Decimal("5.00"))
    root = tenant.root_node
    admin = accounts.create_user(actor=superadmin, username="admin", password=LOGINS["admin"][1], role=Role.ADMIN,
                                 node=root, first_name="Shahidul", last_name="Islam", email="owner@dhakafiber.example")
    r1 = accounts.create_node(actor=admin, parent=root, kind=NodeKind.RESELLER, name="Mirpur Net (মিরপুর নেট)",
                              mobile=_mobile(rng))
    r2 = accounts.create_node(actor=admin, parent=root, kind=NodeKind.RESELLER, name="Uttara Link",
                              billing_mode="postpaid", credit_limit=Decimal("20000"), mobile=_mobile(rng))
    s1 = accounts.create_node(actor=admin, parent=r1, kind=NodeKind.SUB_RESELLER, name="Pallabi Broadband (পল্লবী)",
                              mobile=_mobile(rng))
    d1 = accounts.create_node(actor=admin, parent=root, kind=NodeKind.CARD_DISTRIBUTOR, name="Rahman Telecom Shop")
    d2 = accounts.create_node(actor=admin, parent=r1, kind=NodeKind.CARD_DISTRIBUTOR, name="মা মোবাইল সেন্টার")
    nodes = {"reseller1": r1, "reseller2": r2, "subreseller1": s1, "distributor1": d1, "distributor2": d2}
    perms = {"manager1": (root, [P.VIEW_CUSTOMERS, P.CREATE_CUSTOMERS, P.EDIT_CUSTOMERS, P.COLLECT_CASH,
                                 P.VIEW_REPORTS, P.SEND_SMS]),
             "manager2": (r1, [P.VIEW_CUSTOMERS, P.COLLECT_CASH])}
    for username, (role, password) in LOGINS.items():
        if username in ("superadmin", "admin"):
            continue
        if role == Role.MANAGER:
            node, granted = perms[username]
            accounts.create_user(actor=admin, username=username, password=password, role=role, node=node,
                                 permissions=granted)
        else:
            accounts.create_user(actor=admin, username=username, password=password, role=role, node=nodes[username])

    zones = []
    for zone_name, areas in ZONES.items():
        zone = services.create_zone(actor=admin, tenant=tenant, name=zone_name)
        zones.append(zone)
        zones.extend(services.create_zone(actor=admin, tenant=tenant, name=a, parent=zone) for a in areas)

    packages = []
    for name, mode, price, validity, up, down, bup, bdown, types in PACKAGES:
        packages.append(catalog.create_package(
            actor=admin, tenant=tenant, name=name, billing_mode=mode, price=Decimal(price), validity=validity,
            upload_kbps=up, download_kbps=down, burst_upload_kbps=bup, burst_download_kbps=bdown,
            burst_threshold_upload_kbps=up * 3 // 4 if bup else 0,
            burst_threshold_download_kbps=down * 3 // 4 if bdown else 0, burst_time_seconds=16 if bup else 0,
            customer_types=types,
        ))
    for p in packages:
        catalog.set_price(actor=admin, node=r1, package=p, node_price=(p.price * Decimal("0.70")), customer_price=p.price)
        catalog.set_price(actor=admin, node=r2, package=p, node_price=(p.price * Decimal("0.75")), customer_price=p.price)
        catalog.set_price(actor=admin, node=s1, package=p, node_price=(p.price * Decimal("0.80")), customer_price=p.price)

    adjustment = system_wallet(tenant, "adjustment")
    for node, amount in ((r1, "5000"), (s1, "2000"), (d1, "1500"), (d2, "800")):
        post_transaction(legs=[(adjustment, -Decimal(amount)), (open_wallet(tenant=tenant, node=node), Decimal(amount))],
                         kind="opening_balance", idempotency_key=f"demo:opening:{node.id}", actor=admin,
                         memo="Opening balance")
    set_credit_limit(open_wallet(tenant=tenant, node=r2), Decimal("20000"), actor=admin)

    nas = services.create_nas(actor=admin, tenant=tenant, name="Demo router (localhost)", ip_address="127.0.0.1",
                              secret="testing123", require_message_authenticator=False)
    from ipam import services as ipam

    ipam.create_prefix(actor=admin, tenant=tenant, network="10.77.0.0/16", role="customer_static", nas=nas,
                       name="static", gateway="10.77.0.1")
    ipam.create_prefix(actor=admin, tenant=tenant, network="100.64.0.0/16", role="customer_dynamic", nas=nas,
                       name="pppoe-pool")
    ipam.create_prefix(actor=admin, tenant=tenant, network="2001:db8:100::/48", role="ipv6_link", nas=nas,
                       name="v6-link")
    ipam.create_prefix(actor=admin, tenant=tenant, network="2001:db8:4000::/40", role="ipv6_delegated", nas=nas,
                       delegated_prefixlen=56, name="v6-pd")

    by_name = {p.name: p for p in packages}
    specials = [
        ("demo-pppoe", "pppoe", by_name["Home 10 Mbps"], "active", now + timedelta(days=30)),
        ("demo-expired", "pppoe", by_name["7 days 5 Mbps"], "expired", now - timedelta(days=1)),
        ("demo-hotspot", "hotspot", by_name["24 hours WiFi"], "active", now + timedelta(hours=24)),
    ]
    for username, ctype, package, status, expires in specials:
        c = services.create_customer(actor=admin, tenant=tenant, node=root, username=username, password=DEMO_PASSWORD,
                                     customer_type=ctype, full_name="Demo " + username.split("-")[1].title(),
                                     mobile=_mobile(rng), zone=zones[0], package=package, status=status,
                                     expires_at=expires)
        if username == "demo-pppoe":
            services.enable_portal_login(c, actor=admin, password=DEMO_PASSWORD)
            ipam.assign_ipv6(c, actor=admin, nas=nas)

    owners = [root, root, root, r1, r1, r2, s1]
    mix = ["pppoe"] * 11 + ["hotspot"] * 5 + ["static"] * 3 + ["other"] * 2
    for i in range(customers - len(specials)):
        ctype = mix[i % len(mix)]
        node = owners[i % len(owners)]
        choices = [p for p in packages if p.serves(ctype)]
        package = rng.choice(choices)
        expired = rng.random() < 0.12
        expires = now - timedelta(days=rng.randint(1, 20)) if expired else _expiry_for(package, now) - timedelta(
            hours=rng.randint(0, 20))
        services.create_customer(
            actor=admin, tenant=tenant, node=node, username=f"{ctype}{i + 1:04d}", customer_type=ctype,
            full_name=f"{rng.choice(FIRST)} {rng.choice(LAST)}", mobile=_mobile(rng), zone=rng.choice(zones),
            address=f"House {rng.randint(1, 120)}, Road {rng.randint(1, 30)}, Dhaka", package=package,
            status=Customer.Status.EXPIRED if expired else Customer.Status.ACTIVE, expires_at=expires,
            static_ip=f"10.77.{i // 250}.{i % 250 + 2}" if ctype == "static" else None,
            simultaneous_use=2 if ctype == "hotspot" and rng.random() < 0.2 else 1,
        )
    return tenant
