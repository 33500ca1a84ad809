"""Benchmark: generate one batch of 100,000 recharge cards (PINs from `secrets`, keyed
hashes, COPY into PostgreSQL, the encrypted one-time download) and print seconds and cards/s.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/isp_cards_bench DEBUG=true \
        .venv/bin/python bench/cards/generate.py [--count 100000] [--files]

The database must be migrated (`manage.py migrate`). Everything runs in one transaction
that is rolled back at the end, so the database is left as it was; the figure therefore
excludes the final COMMIT (a few hundred ms for 100k rows). --files also times building
the download (PDF card sheet, CSV, XLSX) from the encrypted PIN list.
"""
from __future__ import annotations

import argparse
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

from ispcore.accounts import services as accounts  # noqa: E402
from ispcore.accounts.models import User  # noqa: E402
from ispcore.accounts.roles import Role  # noqa: E402
from ispcore.cards import services as cards  # noqa: E402


class Rollback(Exception):
    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--files", action="store_true", help="also build the PDF/CSV/XLSX download")
    args = parser.parse_args()
    try:
        with transaction.atomic():
            su = User.objects.create(username=f"bench-{time.time_ns()}", role=Role.SUPER_ADMIN)
            tenant = accounts.create_tenant(actor=su, name="Bench ISP", slug=f"bench-{time.time_ns()}")
            t0 = time.perf_counter()
            batch = cards.generate_batch(actor=su, issuer=tenant.root_node, count=args.count,
                                         face_value=Decimal("100"), validity_days=180)
            seconds = time.perf_counter() - t0
            print(f"generated {batch.count} cards in {seconds:.2f} s ({batch.count / seconds:,.0f} cards/s)")
            if args.files:
                t0 = time.perf_counter()
                files = cards.download_batch(batch, actor=su)
                seconds = time.perf_counter() - t0
                print(f"built the download ({len(files.content) / 1e6:.1f} MB zip) in {seconds:.2f} s")
            raise Rollback
    except Rollback:
        pass


if __name__ == "__main__":
    main()
