"""Sync one router now (or only report its drift), printing what changed."""
from __future__ import annotations

import contextlib

from django.core.management.base import BaseCommand, CommandError
from redis.exceptions import LockError

from ispcore.subscribers.models import Nas
from mikrotik.client import RouterError
from mikrotik.sync import drift_report, sync_router
from mikrotik.tasks import router_lock


class Command(BaseCommand):
    help = ("Sync a MikroTik (by NAS id or name) now, or with --dry-run only print its drift. "
            "Exits 1 if the router could not be synced or refused an item.")

    def add_arguments(self, parser):
        parser.add_argument("nas", help="NAS id or name")
        parser.add_argument("--dry-run", action="store_true", help="Only read and report what differs.")

    def handle(self, *args, nas: str, dry_run: bool = False, **options):
        found = Nas.objects.filter(pk=int(nas)).first() if nas.isdigit() else None
        if found is None:
            matches = list(Nas.objects.filter(name=nas)[:2])
            if len(matches) != 1:
                raise CommandError(f"No single NAS with id or name {nas!r}.")
            found = matches[0]
        if found.nas_type != Nas.NasType.MIKROTIK or not found.api_username:
            raise CommandError(f"NAS {found} is not a MikroTik with an API user.")
        lock = None
        if not dry_run:  # a dry run only reads; a sync must not overlap the task's
            lock = router_lock(found.pk)
            if not lock.acquire():
                raise CommandError(f"Another sync of {found} is running; try again when it has finished.",
                                   returncode=1)
        try:
            result = drift_report(found) if dry_run else sync_router(found)
        except RouterError as exc:
            raise CommandError(f"{type(exc).__name__}: {exc.message}", returncode=1) from exc
        finally:
            if lock is not None:
                with contextlib.suppress(LockError):
                    lock.release()
        for change in result.changes:
            data = change.as_dict()
            detail = ", ".join(f"{k}={v!r}" + (f" (was {data['old'][k]!r})" if k in data["old"] else "")
                               for k, v in data["fields"].items())
            self.stdout.write(f"{change.action:8} {change.menu} {change.name} {detail}".rstrip())
        for error in result.errors:
            self.stdout.write(f"ERROR    {error['menu']} {error['name']} ({error['action']}): {error['message']}")
        verb = "would change" if dry_run else "changed"
        self.stdout.write(f"{verb}: {result.counts()} (run {result.run_id})")
        if result.errors:
            raise CommandError("The router refused or clashed with some items.", returncode=1)
