"""Benchmark: a 100,000-recipient campaign with a personalised Bangla template.

1. materialise: ``start_campaign`` (resolve the audience, render the template per
   customer, segment, COPY one row per recipient, hold the cost) — goal < 30 s;
2. send: N ``manage.py sms_worker`` processes (default 2) against a local SMSC simulator
   (in this process, receipts for every part) for ``--send-seconds``; prints parts/s
   accepted by the SMSC, receipts stored/s, receipts matched (DLRs processed)/s, parts
   delivered/s (receipt matched within the window), the load average, and each worker's
   time per round by phase — goal >= 1,000 parts/s.

Usage (PostgreSQL; a database of its own, migrated; the tenant is seeded on first run):
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp_smsbench DEBUG=false SECRET_KEY=x ENCRYPTION_KEY=... \\
        .venv/bin/python bench/sms/campaign.py [--customers 100000] [--workers 2] [--threads 1] [--send-seconds 60]
The campaign is cancelled at the end (the rest of its hold refunded), so the run can repeat.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispcore.settings")
os.environ["SMS_DISPATCH_ON_COMMIT"] = "false"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Count  # noqa: E402
from django.utils import timezone  # noqa: E402

from ispcore.accounts.models import Tenant, User  # noqa: E402
from ispcore.accounts.roles import Role  # noqa: E402
from notifications import credit  # noqa: E402
from notifications.campaigns import cancel_campaign, create_campaign, start_campaign  # noqa: E402
from notifications.models import DeliveryReport, Message, MessagePart, ProviderRoute, SenderId, SmsProfile  # noqa: E402
from tests.peers.smsc import SMSCSimulator  # noqa: E402

TEMPLATE = "প্রিয় {name}, আপনার বকেয়া {due} টাকা। প্যাকেজ {package}, মেয়াদ {expiry}। ধন্যবাদ - {isp}"


def setup(slug: str, customers: int, port: int, window: int) -> tuple[Tenant, User]:
    call_command("migrate", verbosity=0)
    # each run leaves ~100,000 dead message versions (sent, then the rest cancelled): clear
    # them and refresh the statistics so a run is not measured against the last one's debris
    with connection.cursor() as cursor:
        for model in (Message, MessagePart, DeliveryReport):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    if not Tenant.objects.filter(slug=slug).exists():
        print(f"seeding {customers} customers (once) ...", flush=True)
        call_command("seed_scale", customers=customers, slug=slug)
    tenant = Tenant.objects.get(slug=slug)
    su = User.objects.filter(role=Role.SUPER_ADMIN).first()
    route, _ = ProviderRoute.objects.update_or_create(
        name=f"bench-{slug}", defaults={"tenant": tenant, "kind": "smpp", "secret": "secret", "window": window,
                                        "price_per_part": Decimal("0.25"),
                                        "settings": {"host": "127.0.0.1", "port": port, "system_id": "ispsms"}})
    SmsProfile.objects.update_or_create(tenant=tenant, defaults={"default_route": route})
    SenderId.objects.get_or_create(tenant=tenant, value="ScaleISP", defaults={"is_default": True, "route": route})
    if credit.balance(tenant.pk) < Decimal("200000"):
        credit.sell_credit(tenant, Decimal("500000"), actor=su, idempotency_key=f"bench:{time.time()}")
    return tenant, su


def cpu_ticks(pids) -> int:
    """User+system clock ticks used so far by these processes (all their threads; Linux)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def machine_ticks() -> int:
    try:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return sum(values) - values[3] - values[4]  # all but idle and iowait
    except OSError:
        return 0


def cpu_snapshot(worker_pids) -> dict[str, int]:
    with connection.cursor() as cursor:  # the workers' database sessions (same host)
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                       "AND pid <> pg_backend_pid()")
        backends = [row[0] for row in cursor.fetchall()]
    return {"workers": cpu_ticks(worker_pids), "PostgreSQL sessions": cpu_ticks(backends),
            "this process (simulator)": cpu_ticks([os.getpid()]), "machine": machine_ticks()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slug", default="sms-bench")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=400)
    parser.add_argument("--send-seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2, help="claim/submit/record loops per worker")
    parser.add_argument("--window", type=int, default=50, help="SMPP window of the route")
    args = parser.parse_args()

    # a fresh id range per run, as a real SMSC's ids would be (the simulator restarts at a fixed id)
    with SMSCSimulator("ispsms", "secret", first_message_id=int(time.time() * 1000) % 10**12) as sim:
        sim.configure(dlr="late", dlr_delay=0.2)
        tenant, su = setup(args.slug, args.customers, sim.port, args.window)
        print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}", flush=True)
        campaign = create_campaign(tenant=tenant, actor=su, name=f"bench {time.strftime('%H:%M:%S')}",
                                   body=TEMPLATE, audience={"kind": "customers"}, promotional=True)
        started = time.perf_counter()
        campaign = start_campaign(campaign, actor=su)
        materialise = time.perf_counter() - started
        print(f"materialised {campaign.total} messages ({campaign.parts_total} parts, {campaign.invalid_count} "
              f"invalid, cost held {campaign.cost_held}) in {materialise:.1f} s "
              f"({campaign.total / materialise:,.0f} recipients/s)", flush=True)
        sample = Message.objects.filter(campaign=campaign).values_list("text", flat=True).first()
        print(f"sample: {sample}")

        env = {**os.environ, "SMS_DISPATCH_ON_COMMIT": "false"}
        workers = [subprocess.Popen([sys.executable, "manage.py", "sms_worker", "--batch-size", str(args.batch_size),
                                     "--threads", str(args.threads), "--max-seconds", str(args.send_seconds + 30)],
                                    cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
                   for _ in range(args.workers)]
        try:
            sim.wait_for(lambda: sim.counters["submit_ok"] > 0, timeout=60)
            t0, parts0, at0 = time.perf_counter(), sim.counters["submit_ok"], timezone.now()
            dlr0 = DeliveryReport.objects.count()
            cpu0 = cpu_snapshot([w.pid for w in workers])
            time.sleep(args.send_seconds)
            t1, parts1, at1 = time.perf_counter(), sim.counters["submit_ok"], timezone.now()
            cpu1 = cpu_snapshot([w.pid for w in workers])
            load = os.getloadavg()
            dlr1 = DeliveryReport.objects.count()
            span = t1 - t0
            matched = DeliveryReport.objects.filter(matched_at__gte=at0, matched_at__lt=at1).count()
            delivered_parts = MessagePart.objects.filter(message__campaign=campaign, state="delivered",
                                                         updated_at__gte=at0, updated_at__lt=at1).count()
            states = dict(Message.objects.filter(campaign=campaign).values_list("state").annotate(n=Count("id")))
        finally:
            for w in workers:
                w.terminate()
            summaries = [w.communicate(timeout=60)[0].strip() for w in workers]
        print(f"send window {span:.1f} s with {args.workers} workers x {args.threads} loops, window {args.window}, "
              f"batch {args.batch_size}; load average at the end {load[0]:.2f} (1 min) {load[1]:.2f} (5 min):")
        print(f"  parts accepted by the SMSC: {parts1 - parts0} -> {(parts1 - parts0) / span:,.0f} parts/s")
        print(f"  receipts stored: {dlr1 - dlr0} -> {(dlr1 - dlr0) / span:,.0f} DLRs/s "
              f"(simulator sent {sim.counters['dlr_sent']})")
        print(f"  receipts matched to parts (DLRs processed): {matched} -> {matched / span:,.0f} DLRs/s")
        print(f"  parts delivered (receipt matched) in the window: {delivered_parts} -> "
              f"{delivered_parts / span:,.0f} parts/s")
        print(f"  messages by state at the end: {states}")
        hz = os.sysconf("SC_CLK_TCK")
        print("  CPU over the window (cores): " + ", ".join(
            f"{k} {(cpu1[k] - cpu0[k]) / hz / span:.2f}" for k in cpu0) + f" of {os.cpu_count()}")
        for summary in summaries:
            print(f"  {summary}")
        cancel_campaign(campaign, actor=su)


if __name__ == "__main__":
    main()
