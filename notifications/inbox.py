"""Incoming SMS: stored for the inbox as they arrive, then answered by keyword rules.

Two steps, so the provider's I/O thread never waits for business logic:

1. :func:`store_incoming` (the providers' ``on_incoming`` handler, on the I/O thread)
   only inserts the :class:`InboundMessage` row, committed before the provider
   acknowledges the deliver_sm: an exception makes the SMSC redeliver, nothing is lost.
   It then asks Celery to handle it (``notifications.process_inbox``); beat runs the same
   task every few seconds, which catches anything a lost kick left behind.
2. :func:`process_pending` takes ``new`` rows with ``FOR UPDATE SKIP LOCKED`` (any number
   of workers, each row handled once) and :func:`handle` runs the matched keyword
   action and queues the reply, as a transactional message through the core's
   ``queue_message`` from the SAME line the text came in on, in one transaction with
   marking the row handled. If only the reply cannot be queued (no SMS credit, ...),
   the action stands and the row says why no reply went.
"""
from __future__ import annotations

import logging

from celery import shared_task
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from .models import InboundMessage, Message, SenderId, SmsProfile

log = logging.getLogger(__name__)
S = InboundMessage.Status


def store_incoming(provider: str, message) -> InboundMessage:
    """Persist one mobile-originated message (``notifications.smpp.IncomingMessage``).

    The line is found by the destination address (a dedicated number); with none, the
    row is kept without a tenant so nothing is lost. Committed before the provider
    acknowledges it (an exception makes the SMSC redeliver)."""
    try:
        line = find_line(provider, message.destination_addr or "")
        row = InboundMessage.objects.create(
            tenant=line.tenant if line else None, line=line, provider=provider,
            from_number=(message.source_addr or "")[:21], to_number=(message.destination_addr or "")[:21],
            text=message.text, parts=message.part_count, complete=message.complete, received_at=message.received_at,
            status=S.NEW if line else S.IGNORED,
        )
    except Exception:
        connection.close()  # a broken connection must not poison the I/O thread's next call
        raise
    if line is not None:
        kick_inbox()
    return row


def find_line(provider: str, destination: str) -> SenderId | None:
    """The dedicated line a text was sent to: by its number; when the provider does not say
    (some HTTP APIs post no destination), the route's only dedicated line. A destination
    that is no line is not guessed: the text is kept without a tenant."""
    dest = destination.lstrip("+")
    dedicated = SenderId.objects.filter(line_type=SenderId.LineType.DEDICATED, is_active=True).select_related("tenant")
    if dest:
        return dedicated.filter(value__in=[dest, "+" + dest]).first()
    on_route = list(dedicated.filter(route__name=provider)[:2])
    return on_route[0] if len(on_route) == 1 else None


def kick_inbox() -> None:
    """Ask a Celery worker to answer new incoming messages now (beat does it anyway)."""
    try:
        process_inbox_task.delay()
    except Exception:  # the broker being down must not lose the message: it is stored
        log.warning("could not queue the inbox task; beat will handle the message", exc_info=True)


def _sender_number(row: InboundMessage) -> str | None:
    from ispcore.core.phone import normalise_mobile

    raw = row.from_number
    if raw.isdigit() and not raw.startswith("0"):
        raw = "+" + raw  # SMPP source addresses come without the '+' (TON international)
    try:
        return normalise_mobile(raw, row.tenant.phone_region or "BD")
    except ValidationError:
        return None


def handle(row: InboundMessage) -> InboundMessage:
    """Answer one locked ``new`` row (call inside a transaction). Sets status, customer,
    rule, data, reply and handled_at."""
    from ispcore.subscribers.models import Customer

    from .campaigns import profile
    from .keywords import NEEDS_CUSTOMER, Outcome, match_rule, rules_for, run_action
    from .services import queue_message

    tenant = row.tenant
    prof: SmsProfile = profile(tenant.pk)
    number = _sender_number(row)
    customer = (Customer.objects.filter(tenant=tenant, mobile=number).select_related("node").order_by("id").first()
                if number else None)
    row.customer = customer
    row.handled_at = timezone.now()
    match = match_rule(row.text, rules=rules_for(tenant.pk, row.line_id), separators=prof.keyword_separators)
    if match is None:
        row.status = S.IGNORED
        row.data = {"reason": "no rule matched"}
        return row
    row.rule = match.rule
    if match.action in NEEDS_CUSTOMER and customer is None:
        outcome = Outcome(prof.unknown_sender_reply or None, {"reason": "unknown sender"})
    elif number is None and match.action in ("stop", "start"):
        outcome = Outcome(None, {"reason": "sender is not a mobile number"})
    else:
        outcome = run_action(match, tenant=tenant, inbound=row, customer=customer)
    row.data = {"action": match.action, "keyword": match.keyword, **outcome.data}
    row.status = S.HANDLED
    if outcome.reply and number:
        try:
            with transaction.atomic():
                row.reply = queue_message(tenant=tenant, to=number, text=outcome.reply, kind=Message.Kind.REPLY,
                                          sender=row.line, customer=customer, check_actor_sender=False,
                                          idempotency_key=f"inbox-reply:{row.pk}")
        except ValidationError as exc:
            row.error = ("reply not sent: " + "; ".join(exc.messages))[:255]
            log.warning("no reply to incoming SMS %s: %s", row.pk, exc.messages)
    return row


def process_pending(limit: int = 100) -> int:
    """Handle up to ``limit`` new incoming messages, each in its own transaction; returns
    how many were taken. A failure marks that row ``failed`` with the error and goes on."""
    done = 0
    while done < limit:
        with transaction.atomic():
            row = (InboundMessage.objects.select_for_update(skip_locked=True, of=("self",))
                   .filter(status=S.NEW, tenant__isnull=False).select_related("tenant", "line")
                   .order_by("id").first())
            if row is None:
                return done
            pk = row.pk
            try:
                with transaction.atomic():
                    handle(row)
                    row.save(update_fields=["status", "customer", "rule", "data", "reply", "error", "handled_at"])
            except Exception as exc:
                log.exception("incoming SMS %s could not be handled", pk)
                InboundMessage.objects.filter(pk=pk).update(status=S.FAILED, error=str(exc)[:255],
                                                            handled_at=timezone.now())
        done += 1
    return done


def mark_read(rows, *, actor) -> int:
    """Staff opened these inbox rows."""
    return InboundMessage.objects.filter(pk__in=[r.pk for r in rows], read_at__isnull=True) \
        .update(read_at=timezone.now())


@shared_task(name="notifications.process_inbox", ignore_result=True)
def process_inbox_task() -> None:
    while process_pending() >= 100:
        pass
