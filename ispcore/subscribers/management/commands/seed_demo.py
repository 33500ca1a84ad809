"""Create the demo ISP (idempotent) and print where to log in."""
from django.core.management.base import BaseCommand

from ispcore.subscribers.demo import DEMO_PASSWORD, DEMO_SLUG, LOGINS, seed_demo


class Command(BaseCommand):
    help = "Seed a demo ISP with resellers, packages, a NAS at 127.0.0.1 and 200 customers (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=200)
        parser.add_argument("--quiet-logins", action="store_true", help="do not print the demo logins")

    def handle(self, *args, customers: int, quiet_logins: bool, **options):
        tenant = seed_demo(customers=customers)
        self.stdout.write(self.style.SUCCESS(f"demo ISP ready: {tenant.name} (slug {DEMO_SLUG})"))
        if quiet_logins:
            return
        self.stdout.write("panel logins (username / password / role):")
        for username, (role, password) in LOGINS.items():
            self.stdout.write(f"  {username:14} {password:22} {role}")
        self.stdout.write(f"customer portal login: {DEMO_SLUG}.demo-pppoe / {DEMO_PASSWORD}")
        self.stdout.write("RADIUS: NAS 127.0.0.1 secret testing123; users demo-pppoe, demo-expired, demo-hotspot "
                          f"with password {DEMO_PASSWORD}")
