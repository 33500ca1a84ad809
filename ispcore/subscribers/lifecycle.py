"""The customer lifecycle over time: expiry at the minute, warnings before it, suspension
for unpaid bills and reactivation. Each transition locks the customer row, re-checks its
state, writes an audit event and an outbox event, and queues the network side effect
after commit."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef

from ispcore.core import audit

from . import access
from .models import Customer, ExpiryNotice

EXPIRY_BATCH = 2000


def new_expiry(customer: Customer, package, now: datetime) -> datetime:
    """Renewing early loses no days: extend from the current expiry while it is still in the
    future, otherwise from now."""
    base = customer.expires_at if customer.expires_at and customer.expires_at > now else now
    return base + package.validity_delta()


def expire_due(now: datetime) -> int:
    """Expire every active customer whose expiry (plus its package's grace) has passed."""
    expired = 0
    # Monthly customers are governed by their invoices (suspension when unpaid), not by a date.
    candidates = (Customer.objects.filter(status=Customer.Status.ACTIVE, expires_at__lte=now)
                  .exclude(package__billing_mode="monthly")
                  .select_related("package").values_list("id", "expires_at", "package__grace_minutes")[:EXPIRY_BATCH])
    for customer_id, expires_at, grace in candidates:
        if expires_at + timedelta(minutes=grace or 0) > now:
            continue
        with transaction.atomic():
            customer = Customer.objects.select_for_update().filter(pk=customer_id).first()
            if customer is None or customer.status != Customer.Status.ACTIVE or customer.expires_at > now - timedelta(
                    minutes=grace or 0):
                continue  # renewed or changed meanwhile
            customer.status = Customer.Status.EXPIRED
            customer.save(update_fields=["status", "updated_at"])
            audit.record("customer.expired", customer, expires_at=customer.expires_at.isoformat())
            audit.emit("customer.expired", tenant_id=customer.tenant_id, customer_id=customer.id,
                       expires_at=customer.expires_at.isoformat())
            access.cut_off_on_commit(customer.id, "expired")
            expired += 1
    return expired


def send_expiry_warnings(now: datetime) -> int:
    """Queue each configured warning (e.g. 72 h and 24 h before expiry) exactly once."""
    from ispcore.accounts.models import Tenant

    sent = 0
    for tenant in Tenant.objects.filter(is_active=True).only("id", "expiry_warning_hours"):
        for hours in sorted({int(h) for h in tenant.expiry_warning_hours or [] if int(h) > 0}):
            due = Customer.objects.filter(
                tenant=tenant, status=Customer.Status.ACTIVE, expires_at__gt=now,
                expires_at__lte=now + timedelta(hours=hours),
            ).exclude(Exists(ExpiryNotice.objects.filter(
                customer=OuterRef("pk"), hours_before=hours, expires_at=OuterRef("expires_at"))))
            for customer in due.only("id", "tenant_id", "expires_at").iterator(chunk_size=1000):
                with transaction.atomic():
                    _, created = ExpiryNotice.objects.get_or_create(
                        customer=customer, expires_at=customer.expires_at, hours_before=hours)
                    if created:
                        audit.emit("customer.expiry_warning", tenant_id=customer.tenant_id, customer_id=customer.id,
                                   hours_before=hours, expires_at=customer.expires_at.isoformat())
                        sent += 1
    return sent


@transaction.atomic
def suspend(customer: Customer, *, reason: str, actor=None) -> Customer:
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    if customer.status != Customer.Status.ACTIVE:
        return customer
    customer.status = Customer.Status.SUSPENDED
    customer.save(update_fields=["status", "updated_at"])
    audit.record("customer.suspended", customer, actor=actor, reason=reason)
    audit.emit("customer.suspended", tenant_id=customer.tenant_id, customer_id=customer.id, reason=reason)
    access.cut_off_on_commit(customer.id, reason)
    return customer


@transaction.atomic
def reactivate(customer: Customer, *, reason: str, actor=None) -> Customer:
    customer = Customer.objects.select_for_update().get(pk=customer.pk)
    if customer.status != Customer.Status.SUSPENDED:
        return customer
    customer.status = Customer.Status.ACTIVE
    customer.save(update_fields=["status", "updated_at"])
    audit.record("customer.reactivated", customer, actor=actor, reason=reason)
    access.refresh_routers_on_commit(customer.tenant_id)
    return customer
