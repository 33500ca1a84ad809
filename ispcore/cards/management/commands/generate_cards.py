"""Generate a card batch from the command line and write its one-time download (a ZIP with
the PDF card sheet, CSV and XLSX) into a directory. A thin wrapper over the services."""
from __future__ import annotations

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from ispcore.accounts.models import AccountNode, User
from ispcore.cards import services
from ispcore.catalog.models import Package


class Command(BaseCommand):
    help = "Generate recharge cards for an issuer node and save the one-time download."

    def add_arguments(self, parser):
        parser.add_argument("--issuer", type=int, required=True, help="AccountNode id (ISP root, reseller, sub-reseller)")
        parser.add_argument("--count", type=int, required=True)
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--value", help="face value, e.g. 100")
        group.add_argument("--package", type=int, help="Package id")
        parser.add_argument("--days", type=int, default=180, help="validity in days (default 180)")
        parser.add_argument("--actor", required=True, help="username acting (audited)")
        parser.add_argument("--out", help="directory for the ZIP; omit to leave the download pending")

    def handle(self, *args, **opts):
        try:
            issuer = AccountNode.objects.get(pk=opts["issuer"])
            actor = User.objects.get(username=opts["actor"])
            package = Package.objects.get(pk=opts["package"]) if opts["package"] else None
        except (AccountNode.DoesNotExist, User.DoesNotExist, Package.DoesNotExist) as exc:
            raise CommandError(str(exc)) from None
        try:
            batch = services.generate_batch(
                actor=actor, issuer=issuer, count=opts["count"], package=package,
                face_value=Decimal(opts["value"]) if opts["value"] else None, validity_days=opts["days"],
            )
        except services.CardRefused as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"batch {batch.pk}: {batch.count} cards of {batch.face_value}")
        if opts["out"]:
            path = services.write_download(batch, actor=actor, directory=opts["out"])
            self.stdout.write(f"PINs written once to {path}")
