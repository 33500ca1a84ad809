"""Benchmark: the monthly billing run over a seeded tenant.

Usage (PostgreSQL; seed first with `manage.py seed_scale --customers 100000`):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp_bench DEBUG=true \
        .venv/bin/python bench/billing/monthly_run.py --slug scale-isp --period 2027-01-01
Prints invoices created, seconds and invoices/s. Running it twice shows the idempotent
re-run cost (nothing created)."""
import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispcore.settings")

import django

django.setup()

from ispcore.accounts.models import Tenant  # noqa: E402
from ispcore.billing.invoicing import billable_customers, run_monthly_billing  # noqa: E402
from ispcore.billing.models import Invoice  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slug", default="scale-isp")
    parser.add_argument("--period", default="2027-01-01")
    args = parser.parse_args()
    tenant = Tenant.objects.get(slug=args.slug)
    period = date.fromisoformat(args.period)
    billable = billable_customers(tenant).count()
    before = Invoice.objects.filter(tenant=tenant, period=period).count()
    started = time.perf_counter()
    run = run_monthly_billing(tenant, period)
    elapsed = time.perf_counter() - started
    created = Invoice.objects.filter(tenant=tenant, period=period).count() - before
    print(f"billable customers: {billable}; invoices created: {created}; status {run.status}; errors {len(run.errors)}")
    print(f"elapsed: {elapsed:.1f} s; {created / elapsed if elapsed else 0:.0f} invoices/s")


if __name__ == "__main__":
    main()
