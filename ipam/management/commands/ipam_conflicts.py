"""Print every IPAM overlap, duplicate and rule violation (e.g. after an import)."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from ipam.selectors import conflict_report
from ispcore.accounts.models import Tenant


class Command(BaseCommand):
    help = "List every overlap, duplicate and rule violation in stored IPAM data; exit 1 if there are errors."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", help="Tenant slug (default: all tenants).")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print JSON.")

    def handle(self, *args, tenant=None, as_json=False, **options):
        tenant_id = None
        if tenant:
            found = Tenant.objects.filter(slug=tenant).first()
            if found is None:
                raise CommandError(f"No tenant with slug {tenant!r}.")
            tenant_id = found.id
        conflicts = conflict_report(tenant_id)
        if as_json:
            self.stdout.write(json.dumps([c.as_dict() for c in conflicts], indent=2))
        else:
            for c in conflicts:
                self.stdout.write(f"[{c.severity}] tenant {c.tenant_id} {c.code}: {c.message}")
            self.stdout.write(f"{len(conflicts)} finding(s).")
        if any(c.severity == "error" for c in conflicts):
            raise CommandError("IPAM data has conflicts.", returncode=1)

