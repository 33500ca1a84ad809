"""`manage.py radiusd`: the RADIUS server (auth + accounting), or `--stats`."""

import json
import os

from django.core.management.base import BaseCommand

from radius.metrics import collect, prometheus_text
from radius.runner import Worker, WorkerOptions, run_workers, setting


class Command(BaseCommand):
    help = "Run the RADIUS server (several worker processes sharing the ports), or print its counters."

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=None, help="address to listen on (RADIUS_BIND, default 0.0.0.0)")
        parser.add_argument("--auth-port", type=int, default=None, help="RADIUS_AUTH_PORT, default 1812")
        parser.add_argument("--acct-port", type=int, default=None, help="RADIUS_ACCT_PORT, default 1813")
        parser.add_argument("--workers", type=int, default=None, help="processes (RADIUS_WORKERS, default: CPUs)")
        parser.add_argument("--metrics-port", type=int, default=None,
                            help="Prometheus /metrics port (RADIUS_METRICS_PORT, default 9812; 0 disables)")
        parser.add_argument("--stats", action="store_true", help="print the running server's counters and exit")
        parser.add_argument("--json", action="store_true", dest="as_json", help="with --stats: JSON instead of Prometheus text")

    def handle(self, *args, bind, auth_port, acct_port, workers, metrics_port, stats, as_json: bool, **options):
        # radiusd's workers write the auth log from a copier process (see radius.authlog)
        opts = WorkerOptions.from_settings(host=bind, auth_port=auth_port, acct_port=acct_port,
                                           auth_log_process=setting("RADIUS_AUTH_LOG_PROCESS", True))
        if stats:
            data = collect(opts.state_dir / "stats")
            if as_json:
                self.stdout.write(_dumps(data))
            else:
                self.stdout.write(prometheus_text(data), ending="")
            return
        workers = workers or setting("RADIUS_WORKERS", None) or os.cpu_count() or 1
        if metrics_port is None:
            metrics_port = setting("RADIUS_METRICS_PORT", 9812)
        if workers == 1 and not metrics_port:
            Worker(opts).run()
            return
        run_workers(opts, workers, metrics_port)


def _dumps(data) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
