"""Benchmark: one per-minute reseller billing tick over N open accounting sessions.

Usage (its own PostgreSQL database; the script migrates and seeds it on the first run):
    createdb -h 127.0.0.1 -U postgres isp_bench_min
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp_bench_min DEBUG=true \
        .venv/bin/python bench/billing/minute_tick.py --sessions 50000
Seeds one tenant with --resellers resellers, each with --subs sub-resellers, and spreads
N active customers with one open session each over them (every node has a per-minute
rate), plus --history closed sessions of the last 30 days (a tick must not read them). Then times: the one-minute tick (the goal: under 2 s for 50,000 sessions), the
same minute again (a duplicate run: nothing posted), the next minute in the now warm
process, and a tick 10 minutes late (catch-up).
Prints the figures and checks the charged minutes and the ledger. Re-running continues
from the stored watermarks."""
import argparse
import os
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispcore.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Max, Sum  # noqa: E402
from django.utils import timezone  # noqa: E402

from ispcore.accounts import services as accounts  # noqa: E402
from ispcore.accounts.models import Tenant, User  # noqa: E402
from ispcore.accounts.roles import NodeKind, Role  # noqa: E402
from ispcore.billing import minutes  # noqa: E402
from ispcore.billing.models import MinuteBillingState, MinuteCharge, ServiceSpan  # noqa: E402
from ispcore.billing.services import ledger_differences, open_wallet, post_transaction, system_wallet  # noqa: E402
from ispcore.catalog import services as catalog  # noqa: E402
from ispcore.subscribers.models import Customer  # noqa: E402
from radius.models import AccountingSession  # noqa: E402

SLUG = "minute-bench"


HISTORY_SQL = """
INSERT INTO radius_accountingsession (tenant_id, customer_id, unique_id, acct_session_id, username, nas_port_id,
    calling_station_id, called_station_id, started_at, updated_at, stopped_at, session_time, input_octets,
    output_octets, input_packets, output_packets, interim_interval, terminate_cause)
SELECT c.tenant_id, c.id, md5('h' || g::text), 'H' || g, c.username, '', '', '',
       now() - interval '30 days' - interval '1 hour' + g * %s * interval '1 second',
       now() - interval '30 days' + g * %s * interval '1 second',
       now() - interval '30 days' + g * %s * interval '1 second', 3600, 0, 0, 0, 0, 0, 'User-Request'
  FROM generate_series(1, %s) g
  JOIN subscribers_customer c ON c.username = 'm' || lpad((g %% %s)::text, 6, '0')
  JOIN accounts_tenant t ON t.id = c.tenant_id AND t.slug = %s
"""


def seed(sessions: int, resellers: int, subs: int, history: int) -> Tenant:
    su = User.objects.filter(role=Role.SUPER_ADMIN).first() or User.objects.create(
        username="bench-root", role=Role.SUPER_ADMIN)
    with transaction.atomic():
        tenant = accounts.create_tenant(actor=su, name="Minute bench ISP", slug=SLUG)
        root = tenant.root_node
        package = catalog.create_package(actor=su, tenant=tenant, name="Home 10M", billing_mode="monthly",
                                         price=Decimal("1000"), upload_kbps=10240, download_kbps=10240,
                                         customer_types=["pppoe"])
        adjustment = system_wallet(tenant, "adjustment")
        nodes = []
        for i in range(resellers):
            r = accounts.create_node(actor=su, parent=root, kind=NodeKind.RESELLER, name=f"R{i}")
            catalog.set_price(actor=su, node=r, package=package, node_price="600", customer_price="1000")
            catalog.set_minute_price(actor=su, node=r, package=package, minute_price="0.013889")
            nodes.append(r)
            for j in range(subs):
                s = accounts.create_node(actor=su, parent=r, kind=NodeKind.SUB_RESELLER, name=f"R{i}S{j}")
                catalog.set_price(actor=su, node=s, package=package, node_price="750", customer_price="1000")
                catalog.set_minute_price(actor=su, node=s, package=package, minute_price="0.020000")
                nodes.append(s)
        for n in nodes:
            post_transaction(legs=[(adjustment, Decimal("-1000000")),
                                   (open_wallet(tenant=tenant, node=n), Decimal("1000000"))],
                             kind="topup", idempotency_key=f"bench-topup:{n.id}")
    started = timezone.now() - timedelta(hours=1)
    for lo in range(0, sessions, 5000):
        hi = min(lo + 5000, sessions)
        with transaction.atomic():
            made = Customer.objects.bulk_create([
                Customer(tenant=tenant, node=nodes[i % len(nodes)], customer_type="pppoe", username=f"m{i:06d}",
                         password=f"pw{i:06d}", full_name=f"Customer {i}", mobile=f"+88017{i:08d}",
                         package=package, status=Customer.Status.ACTIVE) for i in range(lo, hi)])
            AccountingSession.objects.bulk_create([
                AccountingSession(tenant_id=tenant.id, customer=c, unique_id=f"{c.id:032x}", acct_session_id=f"{c.id:08X}",
                                  username=c.username, started_at=started, updated_at=started) for c in made])
        print(f"  seeded {hi}/{sessions} customers and open sessions", end="\r", flush=True)
    print()
    with connection.cursor() as cur:
        # Closed sessions of the last 30 days: the tick must not read the history.
        step = 30 * 86400 / max(history, 1)
        cur.execute(HISTORY_SQL, [step, step, step, history, sessions, SLUG])
        cur.execute("ANALYZE")
    print(f"  seeded {history} closed sessions of the last 30 days")
    return tenant


def timed_tick(label: str, now, expect_minutes: int | None) -> float:
    before = MinuteCharge.objects.aggregate(m=Sum("minutes"))["m"] or 0
    t0 = time.perf_counter()
    run = minutes.bill_minutes(now=now)
    elapsed = time.perf_counter() - t0
    charged = (MinuteCharge.objects.aggregate(m=Sum("minutes"))["m"] or 0) - before
    r = run.result
    print(f"{label}: {elapsed:.3f} s; nodes {r.get('nodes', 0)}, customer-minutes {charged}, "
          f"postings {r.get('postings', 0)}, charged {r.get('charged', '0')} BDT, refused {r.get('refused', 0)}")
    if expect_minutes is not None and charged != expect_minutes:
        raise SystemExit(f"expected {expect_minutes} customer-minutes, got {charged}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=50_000)
    parser.add_argument("--resellers", type=int, default=50)
    parser.add_argument("--subs", type=int, default=3, help="sub-resellers per reseller")
    parser.add_argument("--history", type=int, default=1_000_000, help="closed sessions of the last 30 days")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("run it on PostgreSQL (DATABASE_URL=postgres://...)")
    call_command("migrate", verbosity=0)
    tenant = Tenant.objects.filter(slug=SLUG).first()
    if tenant is None:
        t0 = time.perf_counter()
        tenant = seed(args.sessions, args.resellers, args.subs, args.history)
        print(f"seeded in {time.perf_counter() - t0:.1f} s")
    open_sessions = AccountingSession.objects.filter(tenant_id=tenant.id, stopped_at__isnull=True).count()
    closed = AccountingSession.objects.filter(tenant_id=tenant.id, stopped_at__isnull=False).count()
    nodes = tenant.nodes.exclude(parent__isnull=True).count()
    print(f"tenant {SLUG}: {nodes} resellers and sub-resellers, {open_sessions} open sessions, "
          f"{closed} closed ones (history)")
    lag = timedelta(seconds=minutes.lag_seconds())
    watermark = MinuteBillingState.objects.filter(tenant=tenant).aggregate(m=Max("billed_until"))["m"]
    # Customers count from the first whole minute after they became active (their spans
    # were opened by the seeding): start (or catch up, untimed) there.
    seeded = ServiceSpan.objects.filter(node_id__in=tenant.nodes.values("id")).aggregate(m=Max("started_at"))["m"]
    start = minutes.floor_minute(seeded) + timedelta(minutes=1)
    if watermark is None or watermark < start:
        minutes.bill_minutes(now=start + lag)
        watermark = start
    one = timed_tick("one-minute tick (first in this process)", watermark + timedelta(minutes=1) + lag, open_sessions)
    timed_tick("same minute again (duplicate run)", watermark + timedelta(minutes=1) + lag, 0)
    warm = timed_tick("next minute (warm process, as a worker runs it)", watermark + timedelta(minutes=2) + lag,
                      open_sessions)
    timed_tick("10 minutes late (catch-up)", watermark + timedelta(minutes=12) + lag, 10 * open_sessions)
    diffs = ledger_differences(tenant.id)
    print(f"ledger check: {len(diffs['wallets'])} wallet differences, {len(diffs['transactions'])} unbalanced")
    print(f"RESULT one tick over {open_sessions} sessions: {one:.3f} s first, {warm:.3f} s warm (goal < 2 s)")


if __name__ == "__main__":
    main()
