"""Shared set-up for the SMS core tests: a tenant with SMS credit, a line and a route
bound to a real SMSC simulator over TCP."""
from __future__ import annotations

import itertools
from decimal import Decimal

from ispcore.accounts import services as accounts
from ispcore.accounts.models import User
from ispcore.accounts.roles import Role
from notifications import credit
from notifications.models import ProviderRoute, SenderId, SmsProfile

_ids = itertools.count(1)


def make_super() -> User:
    su = User(username=f"super{next(_ids)}", role=Role.SUPER_ADMIN, is_staff=True, is_superuser=True)
    su.set_password("x")
    su.save()
    return su


def make_tenant(su, slug: str = "isp-sms", *, price: str = "0.35", credit_amount: str | None = "1000",
                port: int = 1, route_name: str | None = None, **profile):
    tenant = accounts.create_tenant(actor=su, name=f"ISP {slug}", slug=slug)
    route = ProviderRoute.objects.create(
        tenant=tenant, name=route_name or f"sim-{slug}", kind="smpp", secret="secret",
        settings={"host": "127.0.0.1", "port": port, "system_id": "ispsms", "reconnect_initial": 0.05,
                  "reconnect_max": 0.5, "bind_wait": 5.0, "response_timeout": 5.0},
        price_per_part=Decimal(price), window=20)
    SmsProfile.objects.update_or_create(tenant=tenant, defaults={"default_route": route, **profile})
    SenderId.objects.create(tenant=tenant, value="DhakaFiber", is_default=True, route=route)
    if credit_amount:
        credit.sell_credit(tenant, Decimal(credit_amount), actor=su, idempotency_key=f"{slug}:initial")
    return tenant, route
