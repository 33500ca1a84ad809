"""SMS write services: single and transactional messages, OTP, opt-outs, templates,
groups, lines. Every one validates, runs one transaction, records an audit event and
(for messages) holds the cost in the ledger before the row can be sent.
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ispcore.core import audit
from ispcore.core.money import to_money
from ispcore.core.phone import normalise_mobile

from . import credit
from .campaigns import check_bangla, check_sender, default_route, kick_workers, price_per_part
from .encoding import SegmentationError, segment
from .models import ContactGroup, GroupMember, Message, OptOut, SenderId, SmsTemplate
from .numbers import normalise_numbers, validate_sender_id
from .templates import validate_template


def queue_message(*, tenant, to: str, text: str, kind: str = Message.Kind.SINGLE, actor=None,
                  sender: SenderId | str | None = None, promotional: bool = False, customer=None,
                  event_id: int | None = None, idempotency_key: str = "", check_actor_sender: bool = True) -> Message:
    """Queue one message and hold its cost, in the caller's transaction (or a new one).

    The number is normalised (tenant region); the text segmented by our encoder (too
    long: a clear error, never truncated); the cost of all parts is held first
    (InsufficientSmsCredit if short: nothing written). A promotional message to an
    opted-out number is refused. ``idempotency_key`` (API) / ``event_id`` (outbox)
    make a retry return the first message."""
    try:
        number = normalise_mobile(to, tenant.phone_region or "BD")
    except ValidationError as exc:
        raise ValidationError({"to": exc.messages}) from None
    if not (text or "").strip():
        raise ValidationError({"text": _("The message is empty.")})
    try:
        seg = segment(text)
    except SegmentationError as exc:
        raise ValidationError({"text": str(exc)}) from None
    check_bangla(tenant.pk, text, promotional)
    line = check_sender(tenant, sender, actor if check_actor_sender else None)
    route = line.route or default_route(tenant.pk)
    price = price_per_part(tenant.pk, route)
    cost = to_money(price * seg.count)
    if idempotency_key:
        existing = Message.objects.filter(tenant=tenant, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    with transaction.atomic():
        if promotional and OptOut.objects.filter(tenant=tenant, number=number).exists():
            raise ValidationError({"to": _("%(n)s has opted out of promotional SMS.") % {"n": number}})
        try:
            with transaction.atomic():
                message = Message.objects.create(
                    tenant=tenant, kind=kind, promotional=promotional, event_id=event_id,
                    idempotency_key=idempotency_key, customer=customer,
                    node=customer.node if customer is not None else getattr(actor, "node", None),
                    created_by=actor if getattr(actor, "pk", None) else None, to_number=number, sender=line.value,
                    line=line, route=route, text=text, encoding=seg.encoding, parts=seg.count,
                    price_per_part=price, cost=cost,
                )
        except IntegrityError:
            if idempotency_key:
                return Message.objects.get(tenant=tenant, idempotency_key=idempotency_key)
            if event_id is not None:
                return Message.objects.get(event_id=event_id)
            raise
        credit.hold(tenant.pk, cost, key=f"message:{message.pk}", actor=actor, memo=f"SMS {message.pk}")
        if kind != Message.Kind.TRANSACTIONAL:
            audit.record("sms.send", message, actor=actor, to=number, parts=seg.count, cost=str(cost))
        transaction.on_commit(kick_workers)
    return message


def send_otp(*, tenant, to: str, actor=None, minutes: int = 5, length: int = 6) -> tuple[Message, str]:
    """Send a one-time code (the tenant's OTP template, Bangla by default); returns the
    message and the code, which the caller keeps (hashed) to check the answer."""
    from .templates import event_body, render

    enabled, body = event_body(tenant.pk, "otp")
    if not enabled:
        raise ValidationError(_("OTP messages are switched off for this ISP."))
    code = "".join(secrets.choice("0123456789") for _ in range(length))
    text = render(body, {"code": code, "minutes": minutes, "isp": tenant.name})
    return queue_message(tenant=tenant, to=to, text=text, kind=Message.Kind.OTP, actor=actor,
                         check_actor_sender=False), code


# -- opt-outs ---------------------------------------------------------------------------


def opt_out(tenant, number: str, *, source: str = OptOut.Source.KEYWORD, actor=None, note: str = "") -> OptOut:
    """Stop promotional SMS to ``number`` (idempotent). Transactional messages still go."""
    value = normalise_mobile(number, tenant.phone_region or "BD")
    with transaction.atomic():
        row, created = OptOut.objects.get_or_create(tenant=tenant, number=value,
                                                    defaults={"source": source, "note": note[:200]})
        if created:
            audit.record("sms.opt_out", row, actor=actor, tenant_id=tenant.pk, number=value, source=source)
    return row


def opt_in(tenant, number: str, *, actor=None) -> bool:
    """START: promotional SMS to ``number`` again; True if it had opted out."""
    value = normalise_mobile(number, tenant.phone_region or "BD")
    with transaction.atomic():
        row = OptOut.objects.filter(tenant=tenant, number=value).first()
        if row is None:
            return False
        audit.record("sms.opt_in", row, actor=actor, tenant_id=tenant.pk, number=value)
        row.delete()
    return True


# -- templates, groups, lines -------------------------------------------------------------


def save_template(*, tenant, actor, name: str, body: str, promotional: bool = False,
                  template: SmsTemplate | None = None) -> SmsTemplate:
    """Create or change a template; unknown placeholders are a ValidationError on ``body``."""
    try:
        validate_template(body)
    except ValidationError as exc:
        raise ValidationError({"body": exc.messages}) from None
    if promotional:
        check_bangla(tenant.pk, body, True)
    with transaction.atomic():
        obj = template or SmsTemplate(tenant=tenant, created_by=actor if getattr(actor, "pk", None) else None)
        obj.name, obj.body, obj.promotional = name, body, promotional
        obj.full_clean(validate_unique=True)
        obj.save()
        audit.record("sms.template.save", obj, actor=actor, name=name)
    return obj


def create_group(*, tenant, actor, name: str, numbers: Iterable[str] = (), description: str = "") -> ContactGroup:
    with transaction.atomic():
        group = ContactGroup(tenant=tenant, node=getattr(actor, "node", None), name=name, description=description,
                             created_by=actor if getattr(actor, "pk", None) else None)
        group.full_clean()
        group.save()
        audit.record("sms.group.create", group, actor=actor, name=name)
        if numbers:
            add_members(group, numbers, actor=actor)
    return group


def add_members(group: ContactGroup, numbers: Iterable[str], *, actor) -> dict:
    """Add numbers (normalised, duplicates skipped); returns counts and the invalid ones."""
    result = normalise_numbers(numbers, group.tenant.phone_region or "BD")
    from ispcore.subscribers.models import Customer

    customers = dict(Customer.objects.filter(tenant_id=group.tenant_id, mobile__in=result.valid)
                     .values_list("mobile", "id"))
    with transaction.atomic():
        created = GroupMember.objects.bulk_create(
            [GroupMember(group=group, number=n, customer_id=customers.get(n)) for n in result.valid],
            ignore_conflicts=True, batch_size=5000)
        audit.record("sms.group.add", group, actor=actor, added=len(created), invalid=len(result.invalid))
    return {"added": len(result.valid), "invalid": result.invalid, "duplicates": result.duplicates}


def remove_members(group: ContactGroup, numbers: Iterable[str], *, actor) -> int:
    result = normalise_numbers(numbers, group.tenant.phone_region or "BD")
    with transaction.atomic():
        deleted, _ = GroupMember.objects.filter(group=group, number__in=result.valid).delete()
        audit.record("sms.group.remove", group, actor=actor, removed=deleted)
    return deleted


def create_sender(*, tenant, actor, value: str, line_type: str = SenderId.LineType.SHARED, route=None,
                  is_default: bool = False, open_to_all: bool = True) -> SenderId:
    value = validate_sender_id(value)
    with transaction.atomic():
        if is_default:
            SenderId.objects.filter(tenant=tenant, is_default=True).update(is_default=False)
        line = SenderId(tenant=tenant, value=value, line_type=line_type, route=route, is_default=is_default,
                        open_to_all=open_to_all)
        line.full_clean()
        line.save()
        audit.record("sms.sender.create", line, actor=actor, value=value, line_type=line_type)
    return line
