"""Benchmark: how fast the inbox answers keyword commands, and the compose counter.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp_bench DEBUG=true \
        .venv/bin/python bench/sms/inbox_keywords.py [--customers 200] [--messages 2000]

1. ``--messages`` incoming texts (BAL, USAGE, HELP, STOP/START mixed) from ``--customers``
   known customers are stored as the SMPP handler stores them, then
   ``notifications.inbox.process_pending`` answers them all: one transaction per text
   (match, action, reply queued with its credit hold in the ledger). Prints texts/s.
2. The live counter: ``POST /api/v1/sms/preview/`` through Django's test client (the whole
   request path: session auth, DRF, segmenter, route price) for a Bangla text. Prints
   requests/s and the mean latency.

The database must be migrated. Everything runs in one transaction that is rolled back,
so the database is left as it was (the figures exclude the final COMMIT).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispcore.settings")

import django

django.setup()

from django.db import transaction  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from ispcore.accounts import services as accounts  # noqa: E402
from ispcore.accounts.models import User  # noqa: E402
from ispcore.accounts.roles import Role  # noqa: E402
from ispcore.subscribers import services as subscribers  # noqa: E402
from notifications import credit, inbox  # noqa: E402
from notifications.models import InboundMessage, ProviderRoute, SenderId, SmsProfile  # noqa: E402


class Rollback(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--previews", type=int, default=1000)
    args = parser.parse_args()
    stamp = time.time_ns()
    try:
        with transaction.atomic():
            su = User.objects.create(username=f"bench-{stamp}", role=Role.SUPER_ADMIN, is_superuser=True)
            tenant = accounts.create_tenant(actor=su, name="Bench ISP", slug=f"bench-{stamp}")
            admin = accounts.create_user(actor=su, username=f"bench-admin-{stamp}", password="Bench-Pass-2026",
                                         role=Role.ADMIN, node=tenant.root_node)
            route = ProviderRoute.objects.create(tenant=tenant, name=f"bench-{stamp}", kind="smpp",
                                                 settings={"host": "127.0.0.1", "port": 1}, price_per_part=Decimal("0.25"))
            SmsProfile.objects.update_or_create(tenant=tenant, defaults={"default_route": route})
            line = SenderId.objects.create(tenant=tenant, value="8809612000001", line_type="dedicated", route=route,
                                           is_default=True)
            credit.sell_credit(tenant, Decimal("100000"), actor=su, idempotency_key=f"bench-{stamp}")
            numbers = []
            for i in range(args.customers):
                c = subscribers.create_customer(actor=su, tenant=tenant, node=tenant.root_node,
                                                username=f"b{stamp % 100000}-{i}", password="secret1",
                                                customer_type="pppoe", full_name=f"Customer {i}",
                                                mobile=f"0171{i:07d}")
                numbers.append(c.mobile.lstrip("+"))
            words = ["BAL", "usage", "HELP", "STOP", "START", "বকেয়া"]
            now = timezone.now()
            InboundMessage.objects.bulk_create([
                InboundMessage(tenant=tenant, line=line, provider=route.name, from_number=numbers[i % len(numbers)],
                               to_number=line.value, text=words[i % len(words)], received_at=now)
                for i in range(args.messages)])
            t0 = time.perf_counter()
            done = 0
            while (n := inbox.process_pending(limit=500)) > 0:
                done += n
            seconds = time.perf_counter() - t0
            handled = InboundMessage.objects.filter(tenant=tenant, status="handled", reply__isnull=False).count()
            print(f"inbox: {done} texts answered in {seconds:.2f} s ({done / seconds:,.0f} texts/s; "
                  f"{handled} replies queued with their credit hold)")

            client = Client(SERVER_NAME="localhost")
            client.force_login(admin)
            body = json.dumps({"text": "প্রিয় গ্রাহক, আপনার বকেয়া ৫০০ টাকা। অনুগ্রহ করে পরিশোধ করুন। " * 3,
                               "recipients": 5000})
            t0 = time.perf_counter()
            for _ in range(args.previews):
                r = client.post("/api/v1/sms/preview/", body, content_type="application/json")
                assert r.status_code == 200, r.status_code
            seconds = time.perf_counter() - t0
            print(f"preview: {args.previews} requests in {seconds:.2f} s ({args.previews / seconds:,.0f} req/s, "
                  f"mean {1000 * seconds / args.previews:.2f} ms); answer {r.json()['parts']} parts "
                  f"{r.json()['encoding']}, total {r.json()['total_cost']}")
            raise Rollback
    except Rollback:
        pass


if __name__ == "__main__":
    main()
