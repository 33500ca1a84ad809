"""Monthly billing: on the 1st at 00:05 in each tenant's zone, one invoice per monthly
customer for the month, with the first partial month prorated by days, the customer's
discount and VAT. Idempotent and resumable: one transaction per customer, and the
(customer, period) constraint means a rerun or a resumed run creates nothing twice."""
from __future__ import annotations

import calendar
import logging
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ispcore.catalog.models import Package
from ispcore.core import audit
from ispcore.core.models import JobRun
from ispcore.core.money import MONEY_PLACES
from ispcore.subscribers import lifecycle
from ispcore.subscribers.models import Customer

from .locks import lock_wallets
from .models import Invoice, InvoiceLine
from .sales import customer_price
from .services import open_wallet, post_transaction, system_wallet

log = logging.getLogger(__name__)
RUN_AT = time(0, 5)


def _money(value: Decimal) -> Decimal:
    return value.quantize(MONEY_PLACES, rounding=ROUND_HALF_UP)


def period_start(day: date) -> date:
    return day.replace(day=1)


def previous_period(period: date) -> date:
    return period_start(period - timedelta(days=1))


def billable_customers(tenant):
    return Customer.objects.filter(
        tenant=tenant, package__billing_mode=Package.BillingMode.MONTHLY,
        status__in=[Customer.Status.ACTIVE, Customer.Status.SUSPENDED],
    )


def invoice_lines(customer: Customer, period: date) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """(description, quantity, unit price, amount) for the month, plus the prorated part of
    the previous month when billing started after its 1st."""
    tz = customer.tenant.tzinfo
    price = customer_price(customer, customer.package)
    lines = [(f"{customer.package.name}, {period:%B %Y}", Decimal("1"), price, price)]
    if customer.billing_start:
        start = timezone.localtime(customer.billing_start, tz).date()
        prev = previous_period(period)
        if prev < start < period:
            days_in_month = calendar.monthrange(prev.year, prev.month)[1]
            days = (period - start).days
            qty = Decimal(days) / Decimal(days_in_month)
            amount = _money(price * Decimal(days) / Decimal(days_in_month))
            last = period - timedelta(days=1)
            lines.insert(0, (f"{customer.package.name}, {start:%d %b} to {last:%d %b %Y} ({days} of {days_in_month} days)",
                             qty.quantize(Decimal("0.0001")), price, amount))
    return lines


def create_invoice(customer_id: int, period: date, *, run: JobRun | None = None) -> Invoice | None:
    """Invoice one customer for `period`, once. Returns the invoice (existing or new)."""
    with transaction.atomic():
        customer = Customer.objects.select_for_update(of=("self",)).select_related("tenant", "package", "node").get(pk=customer_id)
        existing = Invoice.objects.filter(customer=customer, period=period).first()
        if existing is not None:
            return existing
        if customer.package is None or customer.package.billing_mode != Package.BillingMode.MONTHLY:
            return None
        tenant = customer.tenant
        lines = invoice_lines(customer, period)
        subtotal = sum((a for *_, a in lines), Decimal("0"))
        discount = min(customer.monthly_discount, subtotal)
        vat = _money((subtotal - discount) * tenant.vat_percent / Decimal("100"))
        total = subtotal - discount + vat
        wallet = open_wallet(tenant=tenant, customer=customer)
        locked = lock_wallets([wallet.pk])[wallet.pk]
        if not locked.unbounded:
            # A monthly customer owes its bills: its balance may go below zero (dues).
            locked.unbounded = True
            locked.save(update_fields=["unbounded", "updated_at"])
        previous_due = max(Decimal("0"), -locked.balance)
        issued = timezone.now()
        local_day = timezone.localdate(issued, tenant.tzinfo)
        invoice = Invoice.objects.create(
            tenant=tenant, customer=customer, number=f"INV-{period:%Y%m}-{customer.id:07d}", period=period,
            issued_at=issued, due_date=local_day + timedelta(days=tenant.invoice_due_days), subtotal=subtotal,
            discount=discount, vat_percent=tenant.vat_percent, vat=vat, total=total, previous_due=previous_due,
            run=run, status=Invoice.Status.OPEN if total > 0 else Invoice.Status.PAID,
        )
        InvoiceLine.objects.bulk_create([InvoiceLine(invoice=invoice, description=d, quantity=q, unit_price=u, amount=a)
                                         for d, q, u, a in lines])
        if discount:
            InvoiceLine.objects.create(invoice=invoice, description="Discount", unit_price=-discount, amount=-discount)
        if total > 0:
            seller = (system_wallet(tenant, "revenue") if customer.node.parent_id is None
                      else open_wallet(tenant=tenant, node=customer.node))
            legs = [(locked, -total), (seller, total - vat)]
            if vat:
                legs.append((system_wallet(tenant, "vat"), vat))
            invoice.transaction = post_transaction(legs=legs, kind="invoice", idempotency_key=f"invoice:{invoice.pk}",
                                                   memo=invoice.number, reference=customer.username)
            invoice.save(update_fields=["transaction"])
        audit.record("invoice.issued", invoice, total=str(total))
        audit.emit("invoice.generated", tenant_id=tenant.id, customer_id=customer.id, number=invoice.number,
                   total=str(total), due_date=invoice.due_date.isoformat())
        return invoice


def run_monthly_billing(tenant, period: date, *, progress_every: int = 500) -> JobRun:
    """Invoice every monthly customer of `tenant` for `period`; safe to run again or resume."""
    run, _ = JobRun.objects.get_or_create(kind="monthly_billing", key=f"{tenant.id}:{period.isoformat()}",
                                          defaults={"tenant_id": tenant.id})
    if run.status == JobRun.Status.SUCCEEDED:
        return run
    ids = list(billable_customers(tenant).exclude(invoices__period=period).order_by("id").values_list("id", flat=True))
    done = Invoice.objects.filter(tenant=tenant, period=period).count()
    run.status, run.total, run.progress, run.errors = JobRun.Status.RUNNING, done + len(ids), done, []
    run.save()
    errors = []
    for n, customer_id in enumerate(ids, 1):
        try:
            create_invoice(customer_id, period, run=run)
        except Exception as exc:  # one bad customer must not stop the month's billing
            log.exception("invoice for customer %s failed", customer_id)
            errors.append({"customer": customer_id, "error": str(exc)[:300]})
        if n % progress_every == 0:
            JobRun.objects.filter(pk=run.pk).update(progress=done + n)
    run.progress = done + len(ids)
    run.errors = errors[:1000]
    run.status = JobRun.Status.FAILED if errors else JobRun.Status.SUCCEEDED
    run.result = {"invoices": Invoice.objects.filter(tenant=tenant, period=period).count(), "errors": len(errors)}
    run.finished_at = timezone.now()
    run.save()
    return run


def due_periods(tenant, now: datetime) -> date | None:
    """The period to bill now, if its run time (the 1st, 00:05 local) has passed."""
    local = timezone.localtime(now, tenant.tzinfo)
    period = local.date().replace(day=1)
    if local.day == 1 and local.time() < RUN_AT:
        return None
    return period


def monthly_billing_tick(now: datetime | None = None) -> list[str]:
    """Called every few minutes by beat: starts each tenant's run once its 1st-of-month time
    has come (catching up after downtime); a Redis lock keeps two ticks from overlapping."""
    from ispcore.accounts.models import Tenant

    now = now or timezone.now()
    started = []
    client = redis.Redis.from_url(settings.REDIS_URL)
    for tenant in Tenant.objects.filter(is_active=True):
        period = due_periods(tenant, now)
        if period is None or JobRun.objects.filter(kind="monthly_billing", key=f"{tenant.id}:{period.isoformat()}",
                                                   status=JobRun.Status.SUCCEEDED).exists():
            continue
        lock = client.lock(f"isp:monthly-billing:{tenant.id}", timeout=3600, blocking=False)
        if not lock.acquire():
            continue
        try:
            run_monthly_billing(tenant, period)
            started.append(f"{tenant.slug}:{period}")
        finally:
            lock.release()
    return started


def suspend_overdue(now: datetime | None = None) -> int:
    """Suspend monthly customers whose invoice is unpaid `suspend_after_days` past its due date."""
    from ispcore.accounts.models import Tenant

    now = now or timezone.now()
    count = 0
    for tenant in Tenant.objects.filter(is_active=True):
        cutoff = timezone.localdate(now, tenant.tzinfo) - timedelta(days=tenant.suspend_after_days)
        overdue = Customer.objects.filter(tenant=tenant, status=Customer.Status.ACTIVE,
                                          invoices__status=Invoice.Status.OPEN, invoices__due_date__lt=cutoff).distinct()
        for customer in overdue:
            lifecycle.suspend(customer, reason="unpaid invoice")
            count += 1
    return count
