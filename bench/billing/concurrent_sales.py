"""Benchmark: 1,000 package sales at once through the reseller chain, from many processes.

Usage (PostgreSQL; any database the script may migrate, e.g. the one of minute_tick.py):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp_bench_min DEBUG=true \
        .venv/bin/python bench/billing/concurrent_sales.py --sales 1000 --workers 8
Seeds a fresh tenant (ISP -> 2 resellers -> 3 sub-resellers each) with one funded customer
per sale, then forks --workers processes that all call `purchase_package` (customer pays;
each sub-reseller, reseller and the ISP's revenue account take their part, so every sale
locks the shared reseller and revenue wallets). Prints sales/s, errors, and checks after:
one sale per key, every balance equal to its ledger, each level's income exactly
sales x its commission."""
import argparse
import multiprocessing as mp
import os
import sys
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispcore.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from ispcore.accounts import services as accounts  # noqa: E402
from ispcore.accounts.models import User  # noqa: E402
from ispcore.accounts.roles import NodeKind, Role  # noqa: E402
from ispcore.billing.models import PackageSale, Wallet  # noqa: E402
from ispcore.billing.sales import purchase_package  # noqa: E402
from ispcore.billing.services import Posting, ledger_differences, post_transactions, system_wallet  # noqa: E402
from ispcore.catalog import services as catalog  # noqa: E402
from ispcore.catalog.models import Package  # noqa: E402
from ispcore.subscribers.models import Customer  # noqa: E402


def seed(sales: int):
    su = User.objects.filter(role=Role.SUPER_ADMIN).first() or User.objects.create(
        username="bench-root", role=Role.SUPER_ADMIN)
    slug = f"sales-bench-{int(time.time())}"
    with transaction.atomic():
        tenant = accounts.create_tenant(actor=su, name="Sales bench ISP", slug=slug)
        package = catalog.create_package(actor=su, tenant=tenant, name="7 days", billing_mode="prepaid_days",
                                         validity=7, price=Decimal("200"), upload_kbps=5120, download_kbps=5120,
                                         customer_types=["pppoe"])
        subs = []
        for i in range(2):
            r = accounts.create_node(actor=su, parent=tenant.root_node, kind=NodeKind.RESELLER, name=f"R{i}")
            catalog.set_price(actor=su, node=r, package=package, node_price="150", customer_price="200")
            for j in range(3):
                s = accounts.create_node(actor=su, parent=r, kind=NodeKind.SUB_RESELLER, name=f"R{i}S{j}")
                catalog.set_price(actor=su, node=s, package=package, node_price="170", customer_price="200")
                subs.append(s)
        expires = timezone.now() + timedelta(days=1)
        customers = Customer.objects.bulk_create([
            Customer(tenant=tenant, node=subs[i % len(subs)], customer_type="pppoe", username=f"s{i:05d}",
                     password=f"pw{i:05d}", full_name=f"Buyer {i}", mobile=f"+88018{i:08d}", package=package,
                     status=Customer.Status.ACTIVE, expires_at=expires) for i in range(sales)])
        Wallet.objects.bulk_create([Wallet(tenant=tenant, customer=c, currency=tenant.currency) for c in customers])
        adjustment = system_wallet(tenant, "adjustment")
        wallets = dict(Wallet.objects.filter(customer__in=customers).values_list("customer_id", "id"))
        post_transactions([Posting(legs=[(adjustment, Decimal("-200")), (wallets[c.id], Decimal("200"))],
                                   kind="topup", idempotency_key=f"{slug}:fund:{c.id}") for c in customers])
    return tenant, package, [c.id for c in customers]


def worker(args) -> Counter:
    package_id, customer_ids, slug = args
    connections.close_all()  # a forked child must not share its parent's connection
    package = Package.objects.get(pk=package_id)
    outcome: Counter = Counter()
    for cid in customer_ids:
        try:
            sale = purchase_package(Customer.objects.get(pk=cid), package, actor=None, payer="customer",
                                    idempotency_key=f"{slug}:sale:{cid}")
            outcome["replayed" if sale.replayed else "ok"] += 1
        except Exception as exc:  # counted and reported; the benchmark goes on
            outcome[f"error {type(exc).__name__}: {exc}"[:160]] += 1
    connections.close_all()
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sales", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("run it on PostgreSQL (DATABASE_URL=postgres://...)")
    call_command("migrate", verbosity=0)
    tenant, package, ids = seed(args.sales)
    revenue0 = system_wallet(tenant, "revenue").balance
    slices = [(package.id, ids[i::args.workers], tenant.slug) for i in range(args.workers)]
    connections.close_all()
    ctx = mp.get_context("fork")
    started = time.perf_counter()
    with ctx.Pool(args.workers) as pool:
        results = pool.map(worker, slices)
    elapsed = time.perf_counter() - started
    outcome = sum(results, Counter())
    errors = {k: v for k, v in outcome.items() if k.startswith("error")}
    print(f"{args.sales} sales from {args.workers} processes in {elapsed:.2f} s: "
          f"{outcome['ok'] / elapsed:.0f} sales/s; ok {outcome['ok']}, errors {sum(errors.values())}")
    for message, count in errors.items():
        print(f"  {count} x {message}")
    # Balances after: every level got exactly its commission on every sale, nothing else.
    sold = PackageSale.objects.filter(tenant=tenant).count()
    subs = Wallet.objects.filter(tenant=tenant, node__kind=NodeKind.SUB_RESELLER)
    resellers = Wallet.objects.filter(tenant=tenant, node__kind=NodeKind.RESELLER)
    revenue = system_wallet(tenant, "revenue").balance - revenue0
    checks = {
        "sales recorded": sold == outcome["ok"] == args.sales,
        "sub-resellers earned 30 per sale": sum(w.balance for w in subs) == 30 * sold,
        "resellers earned 20 per sale": sum(w.balance for w in resellers) == 20 * sold,
        "ISP revenue 150 per sale": revenue == 150 * sold,
        "customers charged once": not Wallet.objects.filter(tenant=tenant, customer__isnull=False).exclude(
            balance=0).exists(),
        "ledger consistent": not any(ledger_differences(tenant.id).values()),
    }
    for name, ok in checks.items():
        print(f"  check {name}: {'ok' if ok else 'FAILED'}")
    if not all(checks.values()) or errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
