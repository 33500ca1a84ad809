"""Recompute every wallet balance from the ledger; with --check only report."""
from django.core.management.base import BaseCommand, CommandError

from ispcore.billing.services import ledger_differences, repair_balances


class Command(BaseCommand):
    help = "Recompute wallet balances from ledger entries. --check reports differences and exits 1 if any."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="only report; change nothing")
        parser.add_argument("--tenant", type=int, help="limit to one tenant id")

    def handle(self, *args, check: bool, tenant: int | None, **options):
        diffs = ledger_differences(tenant)
        for d in diffs["wallets"]:
            self.stdout.write(
                f"wallet {d['wallet']}: stored {d['stored']} ledger {d['ledger']} difference {d['difference']}"
            )
        for t in diffs["transactions"]:
            self.stdout.write(f"transaction {t['transaction']}: entries sum to {t['sum']}, not 0")
        if diffs["transactions"]:
            raise CommandError(f"{len(diffs['transactions'])} unbalanced transaction(s): the ledger itself is wrong")
        if check:
            if diffs["wallets"]:
                raise CommandError(f"{len(diffs['wallets'])} wallet balance(s) differ from the ledger")
            self.stdout.write(self.style.SUCCESS("ledger consistent: every balance equals the sum of its entries"))
            return
        changed = repair_balances([d["wallet"] for d in diffs["wallets"]])
        self.stdout.write(self.style.SUCCESS(f"{changed} wallet balance(s) rebuilt from the ledger"))
