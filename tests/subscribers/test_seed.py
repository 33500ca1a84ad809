"""The demo data a newcomer logs into, and the bulk seeder used by the benchmarks."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from ispcore.accounts.models import AccountNode, User
from ispcore.billing.services import ledger_differences
from ispcore.catalog.models import Package
from ispcore.subscribers.models import Customer, Nas


@pytest.mark.django_db
def test_seed_demo_builds_the_documented_isp_and_is_idempotent(capsys):
    call_command("seed_demo")
    out = capsys.readouterr().out
    assert "admin" in out and "testing123" in out
    assert Customer.objects.count() == 200
    assert set(Customer.objects.values_list("customer_type", flat=True)) == {"pppoe", "hotspot", "static", "other"}
    assert Customer.objects.filter(status="expired", expires_at__lt=timezone.now()).exists()
    for mode in ("monthly", "prepaid_days", "prepaid_hours"):
        assert Package.objects.filter(billing_mode=mode).count() >= 4
    kinds = list(AccountNode.objects.values_list("kind", flat=True))
    assert kinds.count("reseller") == 2 and kinds.count("sub_reseller") == 1 and kinds.count("card_distributor") == 2
    assert User.objects.filter(role="manager").count() >= 1
    nas = Nas.objects.get(ip_address="127.0.0.1")
    assert nas.secret == "testing123"
    now = timezone.now()
    pppoe = Customer.objects.get(username="demo-pppoe")
    assert pppoe.password == "demo-pass" and pppoe.status == "active" and pppoe.expires_at > now + timedelta(days=29)
    expired = Customer.objects.get(username="demo-expired")
    assert expired.status == "expired" and expired.expires_at < now
    hotspot = Customer.objects.get(username="demo-hotspot")
    assert hotspot.customer_type == "hotspot" and hotspot.status == "active"
    assert any("\u0980" <= ch <= "\u09ff" for ch in "".join(Customer.objects.values_list("full_name", flat=True)))
    assert not any(ledger_differences().values())
    call_command("seed_demo")
    assert Customer.objects.count() == 200


@pytest.mark.django_db
def test_seed_scale_bulk_creates_customers_with_wallets():
    call_command("seed_demo", "--customers", "10", "--quiet-logins")
    call_command("seed_scale", "--customers", "1200", "--batch", "500", "--slug", "bench")
    customers = Customer.objects.filter(tenant__slug="bench")
    assert customers.count() == 1200
    assert customers.filter(wallet__isnull=True).count() == 0
    assert customers.get(username="user000007").password == "pw000007"
