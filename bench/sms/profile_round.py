"""Profile one sender round statement by statement: claim N messages, record them as
accepted (2 parts each), store a receipt for every part, match the receipts. Prints each
SQL statement's time and count per phase, and a cProfile of the record step.

Runs on the benchmark database seeded by bench/sms/campaign.py (tenant ``sms-bench``); it
materialises a small campaign of its own to numbers and cancels it at the end. Usage:
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp_smsbench DEBUG=false SECRET_KEY=x ENCRYPTION_KEY=... \\
        .venv/bin/python bench/sms/profile_round.py [--messages 400] [--cprofile]
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispcore.settings")
os.environ["SMS_DISPATCH_ON_COMMIT"] = "false"

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from ispcore.accounts.models import Tenant, User  # noqa: E402
from ispcore.accounts.roles import Role  # noqa: E402
from notifications import reports  # noqa: E402
from notifications.campaigns import cancel_campaign, create_campaign, start_campaign  # noqa: E402
from notifications.smpp import Outcome, SubmitResult  # noqa: E402
from notifications.worker import claim, record_results  # noqa: E402

BODY = ("প্রিয় গ্রাহক, আপনার বকেয়া ৫০০ টাকা। প্যাকেজ ১০ এমবিপিএস, মেয়াদ শেষ ২২-১২-২০২৬। "
        "অনুগ্রহ করে সময়মতো পরিশোধ করুন। ধন্যবাদ - স্কেল আইএসপি লিমিটেড")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--cprofile", action="store_true", help="also print a cProfile of the record step")
    args = parser.parse_args()
    n = args.messages
    tenant = Tenant.objects.get(slug="sms-bench")
    su = User.objects.filter(role=Role.SUPER_ADMIN).first()
    route = f"bench-{tenant.slug}"
    reports.apply_reports(limit=100_000)  # leftovers of earlier runs are not this round's work
    campaign = start_campaign(create_campaign(
        tenant=tenant, actor=su, name="profile", body=BODY, promotional=False,
        audience={"kind": "numbers", "numbers": [f"0171{i:07d}" for i in range(n)]}), actor=su)
    statements: list[tuple[float, str]] = []

    def wrap(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((time.perf_counter() - started, " ".join(sql.split())[:100]))

    def phase(name: str, func):
        statements.clear()
        started = time.perf_counter()
        result = func()
        took = time.perf_counter() - started
        print(f"{name}: {took * 1000:.0f} ms, {len(statements)} statements")
        for seconds, sql in statements:
            print(f"   {seconds * 1000:7.1f} ms  {sql}")
        return result

    base = int(time.time() * 1000)
    try:
        with connection.execute_wrapper(wrap):
            batch = phase(f"claim {n}", lambda: claim("profile", n))
            ids = {m.pk: [str(base + m.pk * 2 + i) for i in range(2)] for m in batch}
            results = {mid: (route, [SubmitResult(mid, i, 2, Outcome.ACCEPTED, 1, 0, key, key)
                                     for i, key in enumerate(keys)], "") for mid, keys in ids.items()}
            profiler = cProfile.Profile()
            profiler.enable()
            phase(f"record {len(results)} (accepted, 2 parts each)", lambda: record_results("profile", results))
            profiler.disable()
            receipts = [(route, SimpleNamespace(
                message_id=key, message_key=key, stat="DELIVRD", err="000", message_state=2,
                source_addr="8801700000000", done_date=None, received_at=datetime.now(UTC),
                raw=f"id:{key} sub:001 dlvrd:001 stat:DELIVRD err:000 text:")) for keys in ids.values() for key in keys]
            phase(f"store {len(receipts)} receipts (one group commit)", lambda: reports.store_receipts(receipts))
            matched = phase("match receipts (apply_reports)", reports.apply_reports)
            print(f"matched {matched}")
        if args.cprofile:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    finally:
        cancel_campaign(campaign, actor=su)


if __name__ == "__main__":
    main()
