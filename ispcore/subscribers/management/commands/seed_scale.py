"""Bulk-create a large tenant for benchmarks: `seed_scale --customers 100000`.

Customers are user000001 .. userNNNNNN with password pwNNNNNN (so load generators
can authenticate them), spread over the four types and several resellers."""
import time
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from ispcore.accounts import services as accounts
from ispcore.accounts.models import Tenant, User
from ispcore.accounts.roles import NodeKind, Role
from ispcore.billing.models import Wallet
from ispcore.catalog import services as catalog
from ispcore.subscribers import services
from ispcore.subscribers.models import Customer

TYPES = ["pppoe"] * 7 + ["hotspot"] * 2 + ["static"]


class Command(BaseCommand):
    help = "Bulk-create a tenant with N customers (and wallets) for benchmarks."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=100_000)
        parser.add_argument("--slug", default="scale-isp")
        parser.add_argument("--batch", type=int, default=5000)
        parser.add_argument("--nas-ip", default="127.0.0.2", help="source address of the benchmark NAS")
        parser.add_argument("--secret", default="testing123")

    def handle(self, *args, customers: int, slug: str, batch: int, nas_ip: str, secret: str, **options):
        if customers < 1:
            raise CommandError("--customers must be at least 1")
        if Tenant.objects.filter(slug=slug).exists():
            raise CommandError(f"tenant {slug!r} already exists; pick another --slug or drop the database")
        started = time.monotonic()
        superadmin = User.objects.filter(role=Role.SUPER_ADMIN).first()
        with transaction.atomic():
            tenant = accounts.create_tenant(actor=superadmin, name=f"Scale ISP {customers}", slug=slug)
            root = tenant.root_node
            resellers = [accounts.create_node(actor=superadmin, parent=root, kind=NodeKind.RESELLER, name=f"Reseller {i}")
                         for i in range(1, 5)]
            packages = {
                "pppoe": catalog.create_package(actor=superadmin, tenant=tenant, name="PPPoE 10M", billing_mode="monthly",
                                                price=Decimal("800"), upload_kbps=10240, download_kbps=10240,
                                                customer_types=["pppoe", "static"]),
                "hotspot": catalog.create_package(actor=superadmin, tenant=tenant, name="WiFi 24h",
                                                  billing_mode="prepaid_hours", validity=24, price=Decimal("80"),
                                                  upload_kbps=2048, download_kbps=5120, customer_types=["hotspot"]),
            }
            packages["static"] = packages["pppoe"]
            for r in resellers:
                for p in set(packages.values()):
                    catalog.set_price(actor=superadmin, node=r, package=p, node_price=p.price * Decimal("0.7"),
                                      customer_price=p.price)
            services.create_nas(actor=superadmin, tenant=tenant, name="Benchmark NAS", ip_address=nas_ip, secret=secret,
                                require_message_authenticator=False)
        owners = [root, *resellers]
        expires = timezone.now() + timedelta(days=30)
        made = 0
        while made < customers:
            n = min(batch, customers - made)
            rows = []
            for i in range(made + 1, made + n + 1):
                ctype = TYPES[i % len(TYPES)]
                rows.append(Customer(
                    tenant=tenant, node=owners[i % len(owners)], customer_type=ctype, username=f"user{i:06d}",
                    password=f"pw{i:06d}", full_name=f"Customer {i}", mobile=f"+88017{i % 10**8:08d}",
                    package=packages[ctype], status=Customer.Status.ACTIVE, expires_at=expires,
                    static_ip=f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}" if ctype == "static" else None,
                ))
            with transaction.atomic():
                created = Customer.objects.bulk_create(rows, batch_size=batch)
                Wallet.objects.bulk_create(
                    [Wallet(tenant=tenant, customer=c, currency=tenant.currency) for c in created], batch_size=batch
                )
            made += n
            self.stdout.write(f"  {made}/{customers} customers", ending="\r")
            self.stdout.flush()
        elapsed = time.monotonic() - started
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"seeded {customers} customers into {slug!r} in {elapsed:.1f} s "
                                             f"({customers / elapsed:.0f}/s); NAS {nas_ip} secret {secret}"))
