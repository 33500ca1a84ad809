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
from ispcore.core.bulk import bulk_set
from ispcore.core.models import AuditEvent, JobRun, OutboxEvent
from ispcore.core.money import MONEY_PLACES
from ispcore.subscribers import lifecycle
from ispcore.subscribers.models import Customer

from .locks import lock_wallets
from .models import Invoice, InvoiceLine, Wallet
from .sales import customer_price
from .services import Posting, open_wallet, post_transactions, system_wallet

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


def invoice_lines(customer: Customer, period: date, *, price: Decimal | None = None
                  ) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """(description, quantity, unit price, amount) for the month, plus the prorated part of
    the previous month when billing started after its 1st."""
    tz = customer.tenant.tzinfo
    if price is None:
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
    create_invoices([customer_id], period, run=run)
    return Invoice.objects.filter(customer_id=customer_id, period=period).first()


def create_invoices(customer_ids: list[int], period: date, *, run: JobRun | None = None) -> int:
    """Invoice a batch of customers for `period` in one transaction; customers already
    invoiced for it are skipped (the (customer, period) constraint has the last word).
    Returns how many invoices were created."""
    with transaction.atomic():
        customers = list(Customer.objects.select_for_update(of=("self",))
                         .select_related("tenant", "package", "node").filter(pk__in=customer_ids).order_by("pk"))
        done = set(Invoice.objects.filter(customer_id__in=customer_ids, period=period)
                   .values_list("customer_id", flat=True))
        todo = [c for c in customers if c.pk not in done and c.package is not None
                and c.package.billing_mode == Package.BillingMode.MONTHLY]
        if not todo:
            return 0
        tenant = todo[0].tenant
        if any(c.tenant_id != tenant.id for c in todo):
            raise ValueError("a billing batch must belong to one tenant")
        wallets = {w.customer_id: w for w in Wallet.objects.filter(customer__in=todo)}
        missing = [c for c in todo if c.pk not in wallets]
        for c in missing:
            wallets[c.pk] = open_wallet(tenant=tenant, customer=c)
        revenue, vat_wallet = system_wallet(tenant, "revenue"), system_wallet(tenant, "vat")
        node_wallets = {w.node_id: w for w in Wallet.objects.filter(node_id__in={c.node_id for c in todo})}
        locked = lock_wallets([w.pk for w in wallets.values()])
        # A monthly customer owes its bills: its balance may go below zero (dues).
        flip = [w for w in locked.values() if not w.unbounded]
        for w in flip:
            w.unbounded = True
        bulk_set(flip, ["unbounded"])
        issued = timezone.now()
        due = timezone.localdate(issued, tenant.tzinfo) + timedelta(days=tenant.invoice_due_days)
        prices: dict[tuple[int, int], Decimal] = {}
        invoices, lines_by_customer = [], {}
        for c in todo:
            key = (c.node_id, c.package_id)
            if key not in prices:
                prices[key] = customer_price(c, c.package)
            lines = invoice_lines(c, period, price=prices[key])
            subtotal = sum((a for *_, a in lines), Decimal("0"))
            discount = min(c.monthly_discount, subtotal)
            vat = _money((subtotal - discount) * tenant.vat_percent / Decimal("100"))
            total = subtotal - discount + vat
            wallet = locked[wallets[c.pk].pk]
            invoices.append(Invoice(
                tenant=tenant, customer=c, number=f"INV-{period:%Y%m}-{c.id:07d}", period=period, issued_at=issued,
                due_date=due, subtotal=subtotal, discount=discount, vat_percent=tenant.vat_percent, vat=vat,
                total=total, previous_due=max(Decimal("0"), -wallet.balance), run=run,
                status=Invoice.Status.OPEN if total > 0 else Invoice.Status.PAID,
            ))
            if discount:
                lines = [*lines, ("Discount", Decimal("1"), -discount, -discount)]
            lines_by_customer[c.pk] = lines
        Invoice.objects.bulk_create(invoices, batch_size=2000)
        InvoiceLine.objects.bulk_create([
            InvoiceLine(invoice=inv, description=d, quantity=q, unit_price=u, amount=a)
            for inv in invoices for d, q, u, a in lines_by_customer[inv.customer_id]
        ], batch_size=5000)
        postings, billed = [], []
        for inv in invoices:
            if inv.total <= 0:
                continue
            c = inv.customer
            seller = revenue if c.node.parent_id is None else node_wallets.get(c.node_id) or open_wallet(
                tenant=tenant, node=c.node)
            legs = [(wallets[c.pk].pk, -inv.total), (seller.pk, inv.total - inv.vat)]
            if inv.vat:
                legs.append((vat_wallet.pk, inv.vat))
            postings.append(Posting(legs=legs, kind="invoice", idempotency_key=f"invoice:{inv.pk}",
                                    memo=inv.number, reference=c.username))
            billed.append(inv)
        for inv, txn in zip(billed, post_transactions(postings), strict=True):
            inv.transaction = txn
        bulk_set(billed, ["transaction"])
        AuditEvent.objects.bulk_create([
            AuditEvent(tenant_id=tenant.id, action="invoice.issued", object_type="billing.invoice",
                       object_id=str(inv.pk), data={"total": str(inv.total)}) for inv in invoices], batch_size=5000)
        OutboxEvent.objects.bulk_create([
            OutboxEvent(tenant_id=tenant.id, kind="invoice.generated", customer_id=inv.customer_id,
                        payload={"number": inv.number, "total": str(inv.total), "due_date": inv.due_date.isoformat()})
            for inv in invoices], batch_size=5000)
        return len(invoices)


def run_monthly_billing(tenant, period: date, *, batch_size: int = 500) -> JobRun:
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
    for start in range(0, len(ids), batch_size):
        batch = ids[start:start + batch_size]
        try:
            create_invoices(batch, period, run=run)
        except Exception:
            # One bad customer must not stop the month's billing: retry this batch one by one.
            log.exception("invoice batch failed; retrying its customers one by one")
            failed = []
            for customer_id in batch:
                try:
                    create_invoices([customer_id], period, run=run)
                except Exception as exc:
                    log.warning("invoice for customer %s failed: %s", customer_id, exc)
                    failed.append({"customer": customer_id, "error": str(exc)[:300]})
            errors.extend(failed)
            if len(failed) == len(batch) and len(batch) > 1:
                # Every customer of the batch failed: the cause is not a customer's data.
                # Stop here instead of failing the whole tenant one customer at a time.
                log.error("monthly billing of tenant %s stopped: a whole batch failed (%s)", tenant.pk,
                          failed[0]["error"])
                break
        JobRun.objects.filter(pk=run.pk).update(progress=done + start + len(batch))
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
        if period is not None:
            # Postpaid resellers' per-minute statements are billed in arrears (last month).
            from .minutes import issue_reseller_statements

            last_month = (period - timedelta(days=1)).replace(day=1)
            if not JobRun.objects.filter(kind="reseller_statements", key=f"{tenant.id}:{last_month.isoformat()}",
                                         status=JobRun.Status.SUCCEEDED).exists():
                issue_reseller_statements(tenant, last_month, now=now)
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
