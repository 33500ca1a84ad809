"""Transactional SMS: the consumer of ``core.OutboxEvent``.

Business services write an OutboxEvent in their own transaction (``audit.emit``); this
module turns each event of a known kind into at most one message, in one transaction
with marking the event processed: exactly once per event (``Message.event_id`` is
unique, and the event row is locked with SKIP LOCKED so two consumers never take the
same one). An event that rolled back never existed, so nothing is sent for it. It runs
right after the commit (``on_commit`` kick registered in ``apps.ready``) and from beat
every few seconds, which also catches up after downtime.
"""
from __future__ import annotations

import logging
from datetime import date

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from ispcore.core.models import OutboxEvent

from .models import Message
from .templates import EVENT_FIELDS, customer_contexts, event_body, render

log = logging.getLogger(__name__)

HANDLED = [kind for kind in EVENT_FIELDS if kind != "otp"]


def _event_context(event: OutboxEvent) -> dict:
    p = dict(event.payload or {})
    ctx = {k: str(v) for k, v in p.items()}
    ctx.setdefault("amount", str(p.get("total", p.get("price", ""))))
    if event.kind == "customer.expiry_warning":
        ctx["hours"] = str(p.get("hours_before", ""))
    if event.kind == "invoice.generated" and p.get("due_date"):
        try:
            ctx["period"] = date.fromisoformat(p["due_date"]).strftime("%m/%Y")
        except ValueError:
            pass
    return ctx


def process_outbox(limit: int = 200) -> dict[str, int]:
    """Handle up to ``limit`` pending events; returns counts by outcome."""
    from ispcore.accounts.models import Tenant
    from ispcore.subscribers.models import Customer

    from .services import queue_message

    counts = {"sent": 0, "off": 0, "skipped": 0, "failed": 0}
    with transaction.atomic():
        events = list(OutboxEvent.objects.select_for_update(skip_locked=True)
                      .filter(processed_at__isnull=True, kind__in=HANDLED).order_by("id")[:limit])
        if not events:
            return counts
        tenants = Tenant.objects.in_bulk({e.tenant_id for e in events})
        customers = Customer.objects.select_related("node").in_bulk({e.customer_id for e in events if e.customer_id})
        for event in events:
            tenant, customer = tenants.get(event.tenant_id), customers.get(event.customer_id)
            enabled, body = event_body(event.tenant_id, event.kind)
            if not enabled:
                counts["off"] += 1
                continue
            if tenant is None or customer is None or not customer.mobile:
                counts["skipped"] += 1
                continue
            ctx = customer_contexts([customer.pk], tenant=tenant).get(customer.pk, {})
            ctx.update(_event_context(event))
            try:
                with transaction.atomic():
                    queue_message(tenant=tenant, to=customer.mobile, text=render(body, ctx),
                                  kind=Message.Kind.TRANSACTIONAL, customer=customer, event_id=event.pk,
                                  check_actor_sender=False)
                counts["sent"] += 1
            except ValidationError as exc:  # no credit, no sender, bad number: reported, not retried forever
                log.warning("SMS for event %s (%s) not queued: %s", event.pk, event.kind, exc.messages)
                counts["failed"] += 1
        OutboxEvent.objects.filter(pk__in=[e.pk for e in events]).update(processed_at=timezone.now())
    return counts


def kick_outbox() -> None:
    """on_commit hook for ``audit.emit``: process the new event now (beat would anyway)."""
    from .tasks import process_outbox_task

    try:
        process_outbox_task.delay()
    except Exception:
        log.warning("could not queue the outbox task; beat will handle the event", exc_info=True)
