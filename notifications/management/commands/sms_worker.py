"""Run an SMS sender loop in the foreground (a dedicated process instead of Celery)."""
from __future__ import annotations

import signal

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Claim and send queued SMS until stopped (SIGTERM/SIGINT finish the current round)."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=200)
        parser.add_argument("--max-seconds", type=float, default=None)
        parser.add_argument("--name", default=None, help="Worker name (default host:pid).")
        parser.add_argument("--threads", type=int, default=2,
                            help="Claim/submit/record loops sharing the binds, so one loop's database work "
                                 "overlaps another's submits (default 2).")

    def handle(self, *args, batch_size, max_seconds, name, threads, **options):
        from notifications.worker import Sender

        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        sender = Sender(batch_size=batch_size, name=name)
        sender.run(stop=lambda: bool(stopping), max_seconds=max_seconds, threads=threads)
        self.stdout.write(f"sms_worker {sender.name}: {sender.timing_summary()}")
