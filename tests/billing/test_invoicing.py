"""Monthly billing, payments against invoices, suspension and the expiry clock."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.utils import timezone

from ispcore.billing.invoicing import (
    create_invoice,
    due_periods,
    invoice_lines,
    run_monthly_billing,
    suspend_overdue,
)
from ispcore.billing.models import Invoice, InvoicePayment
from ispcore.billing.sales import record_payment
from ispcore.billing.services import ledger_differences, open_wallet, system_wallet
from ispcore.core.models import JobRun, OutboxEvent
from ispcore.subscribers import lifecycle
from ispcore.subscribers.models import Customer, ExpiryNotice
from tests.billing.conftest import build_chain

DHAKA = ZoneInfo("Asia/Dhaka")


def monthly_customer(chain, username, node=None, start=None, **extra):
    c = chain["customer"](node or chain["root"], username, package=chain["monthly"], **extra)
    if start is not None:
        Customer.objects.filter(pk=c.pk).update(billing_start=start)
        c.refresh_from_db()
    return c


def test_first_month_is_prorated_by_days(chain):
    # Joined on 14 November (a 30-day month), local time: 17 days of November are billed.
    c = monthly_customer(chain, "newbie", start=datetime(2026, 11, 14, 15, 0, tzinfo=DHAKA))
    lines = invoice_lines(c, date(2026, 12, 1))
    assert lines[0][3] == Decimal("566.67")  # 1000 * 17 / 30
    assert "17 of 30 days" in lines[0][0]
    assert lines[1][3] == Decimal("1000.00")


def test_invoice_vat_rounding_discount_and_ledger(db):
    chain = build_chain(vat="7.5")
    c = monthly_customer(chain, "vat", monthly_discount=Decimal("33.33"))
    inv = create_invoice(c.pk, date(2026, 12, 1))
    assert inv.subtotal == Decimal("1000.00") and inv.discount == Decimal("33.33")
    assert inv.vat == Decimal("72.50")  # 966.67 * 7.5% = 72.50025 -> 72.50
    assert inv.total == Decimal("1039.17")
    assert open_wallet(tenant=chain["tenant"], customer=c).balance == Decimal("-1039.17")
    assert system_wallet(chain["tenant"], "vat").balance == Decimal("72.50")
    assert system_wallet(chain["tenant"], "revenue").balance == Decimal("966.67")
    assert inv.number == f"INV-202612-{c.pk:07d}"
    assert OutboxEvent.objects.filter(kind="invoice.generated", customer_id=c.pk).count() == 1


def test_reseller_customers_bill_into_the_resellers_wallet(chain):
    c = monthly_customer(chain, "rcust", node=chain["r"])
    inv = create_invoice(c.pk, date(2026, 12, 1))
    assert inv.total == Decimal("1000.00")
    assert open_wallet(tenant=chain["tenant"], node=chain["r"]).balance == Decimal("1000.00")


def test_monthly_run_is_idempotent(chain):
    for i in range(5):
        monthly_customer(chain, f"m{i}")
    chain["customer"](chain["root"], "prepaid-one")  # not monthly: not invoiced
    run = run_monthly_billing(chain["tenant"], date(2026, 12, 1))
    assert run.status == JobRun.Status.SUCCEEDED and run.result["invoices"] == 5
    again = run_monthly_billing(chain["tenant"], date(2026, 12, 1))
    assert again.pk == run.pk
    JobRun.objects.filter(pk=run.pk).update(status="failed")  # force a full re-run
    run_monthly_billing(chain["tenant"], date(2026, 12, 1))
    assert Invoice.objects.filter(period=date(2026, 12, 1)).count() == 5
    assert not any(ledger_differences().values())


def test_previous_dues_are_carried(chain):
    c = monthly_customer(chain, "owes")
    create_invoice(c.pk, date(2026, 11, 1))
    december = create_invoice(c.pk, date(2026, 12, 1))
    assert december.previous_due == Decimal("1000.00")
    assert open_wallet(tenant=chain["tenant"], customer=c).balance == Decimal("-2000.00")


def test_payment_settles_oldest_invoices_first_and_keeps_the_rest_as_credit(chain):
    c = monthly_customer(chain, "payer")
    nov = create_invoice(c.pk, date(2026, 11, 1))
    dec = create_invoice(c.pk, date(2026, 12, 1))
    p1 = record_payment(c, Decimal("1200"), method="cash", actor=chain["cash_manager"], idempotency_key="pay1")
    nov.refresh_from_db()
    dec.refresh_from_db()
    assert (nov.status, nov.paid, dec.status, dec.paid) == ("paid", Decimal("1000.00"), "open", Decimal("200.00"))
    record_payment(c, Decimal("1000"), method="online", actor=None, idempotency_key="gw-trx-77")
    dup = record_payment(c, Decimal("1000"), method="online", actor=None, idempotency_key="gw-trx-77")
    assert dup.replayed
    dec.refresh_from_db()
    assert dec.status == "paid"
    assert open_wallet(tenant=chain["tenant"], customer=c).balance == Decimal("200.00")
    assert InvoicePayment.objects.filter(payment=p1).count() == 2
    assert p1.collected_by == chain["cash_manager"] and p1.receipt_number.startswith("R")


def test_overdue_customers_are_suspended_and_payment_reactivates(chain, django_capture_on_commit_callbacks,
                                                                 monkeypatch):
    cut = []
    monkeypatch.setattr("ispcore.subscribers.tasks.cut_off_access.delay", lambda cid, reason: cut.append((cid, reason)))
    c = monthly_customer(chain, "late-payer")
    inv = create_invoice(c.pk, date(2026, 11, 1))
    Invoice.objects.filter(pk=inv.pk).update(due_date=date(2026, 11, 10))
    with django_capture_on_commit_callbacks(execute=True):
        assert suspend_overdue(datetime(2026, 11, 17, 12, 0, tzinfo=DHAKA)) == 0  # 7 days not yet passed
        assert suspend_overdue(datetime(2026, 11, 18, 12, 0, tzinfo=DHAKA)) == 1
    c.refresh_from_db()
    assert c.status == "suspended" and cut == [(c.pk, "unpaid invoice")]
    record_payment(c, Decimal("1000"), method="cash", actor=chain["cash_manager"], idempotency_key="settle")
    c.refresh_from_db()
    assert c.status == "active"


def test_billing_time_is_the_first_at_0005_in_the_tenants_zone(chain):
    tenant = chain["tenant"]
    utc = ZoneInfo("UTC")
    assert due_periods(tenant, datetime(2026, 11, 30, 17, 0, tzinfo=utc)) == date(2026, 11, 1)  # 23:00 local
    assert due_periods(tenant, datetime(2026, 11, 30, 18, 4, tzinfo=utc)) is None  # 1 Dec 00:04 local
    assert due_periods(tenant, datetime(2026, 11, 30, 18, 5, tzinfo=utc)) == date(2026, 12, 1)  # 00:05 local
    assert due_periods(tenant, datetime(2026, 12, 1, 0, 4, tzinfo=DHAKA)) is None
    assert due_periods(tenant, datetime(2026, 12, 1, 0, 5, tzinfo=DHAKA)) == date(2026, 12, 1)


def test_expiry_to_the_minute_and_warnings_once(chain, django_capture_on_commit_callbacks, monkeypatch):
    cut = []
    monkeypatch.setattr("ispcore.subscribers.tasks.cut_off_access.delay", lambda cid, reason: cut.append(cid))
    now = timezone.now()
    gone = chain["customer"](chain["root"], "gone", expires_at=now - timedelta(seconds=30))
    chain["customer"](chain["root"], "soon", expires_at=now + timedelta(hours=20))
    chain["customer"](chain["root"], "later", expires_at=now + timedelta(hours=60))
    monthly = monthly_customer(chain, "monthly", expires_at=now - timedelta(days=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.expire_due(now) == 1
    assert Customer.objects.get(pk=gone.pk).status == "expired" and cut == [gone.pk]
    assert Customer.objects.get(pk=monthly.pk).status == "active"  # monthly customers follow their invoices
    assert lifecycle.send_expiry_warnings(now) == 3  # soon: 72 h and 24 h; later: 72 h
    assert lifecycle.send_expiry_warnings(now) == 0
    assert set(ExpiryNotice.objects.values_list("customer__username", "hours_before")) == {
        ("soon", 24), ("soon", 72), ("later", 72)}
    assert OutboxEvent.objects.filter(kind="customer.expiry_warning").count() == 3


def test_grace_period_delays_expiry(chain):
    from ispcore.catalog.models import Package

    Package.objects.filter(pk=chain["week"].pk).update(grace_minutes=30)
    now = timezone.now()
    c = chain["customer"](chain["root"], "grace", expires_at=now - timedelta(minutes=10))
    assert lifecycle.expire_due(now) == 0
    assert lifecycle.expire_due(now + timedelta(minutes=21)) == 1
    assert Customer.objects.get(pk=c.pk).status == "expired"


RUNNER = """
import os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ispcore.settings")
django.setup()
from datetime import date
from ispcore.accounts.models import Tenant
from ispcore.billing import invoicing
real = invoicing.create_invoices
def slow(*args, **kwargs):
    import time
    time.sleep(0.05)
    return real(*args, **kwargs)
invoicing.create_invoices = slow
invoicing.run_monthly_billing(Tenant.objects.get(slug=sys.argv[1]), date(2026, 12, 1), batch_size=10)
"""


@pytest.mark.django_db(transaction=True)
def test_monthly_run_killed_halfway_then_resumed_creates_each_invoice_once():
    chain = build_chain()
    for i in range(150):
        monthly_customer(chain, f"k{i}")
    db = settings.DATABASES["default"]
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"}
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, chain["tenant"].slug], env=env)
    deadline = time.monotonic() + 60
    while Invoice.objects.count() < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    halfway = Invoice.objects.count()
    assert 0 < halfway < 150
    run = run_monthly_billing(chain["tenant"], date(2026, 12, 1))
    assert run.status == JobRun.Status.SUCCEEDED
    assert Invoice.objects.count() == 150
    assert Invoice.objects.values("customer", "period").distinct().count() == 150
    assert not any(ledger_differences().values())


def test_a_system_account_added_later_is_opened_on_first_use(chain):
    from ispcore.billing.models import Wallet

    Wallet.objects.filter(tenant=chain["tenant"], system_code="vat").delete()  # a tenant older than the account
    c = monthly_customer(chain, "older-tenant")
    assert create_invoice(c.pk, date(2026, 12, 1)).total == Decimal("1000.00")
    assert Wallet.objects.filter(tenant=chain["tenant"], system_code="vat").count() == 1


def test_a_systemic_failure_stops_the_run_after_one_batch(chain, monkeypatch):
    for i in range(12):
        monthly_customer(chain, f"sys{i}")

    def broken(*args, **kwargs):
        raise RuntimeError("database unreachable")

    monkeypatch.setattr("ispcore.billing.invoicing.create_invoices", broken)
    run = run_monthly_billing(chain["tenant"], date(2026, 12, 1), batch_size=5)
    assert run.status == JobRun.Status.FAILED
    assert len(run.errors) == 5 and run.errors[0]["error"] == "database unreachable"
