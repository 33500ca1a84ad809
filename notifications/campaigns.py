"""Campaigns: create, materialise (one Message row per recipient, cost held), schedule,
pause, resume, cancel, progress.

Sending is the worker's job (``notifications.worker``); a campaign only decides which
rows exist and whether its rows may be claimed (status ``running``, outside quiet hours
for promotional campaigns).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, time
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from ispcore.core import audit
from ispcore.core.money import to_money

from . import credit
from .audiences import resolve
from .encoding import SegmentationError, contains_bangla
from .fastcount import count_parts
from .models import Campaign, Message, OptOut, ProviderRoute, SenderId, SmsProfile, SmsTemplate
from .numbers import fast_e164, validate_sender_id
from .templates import compile_template, customer_contexts, validate_template

log = logging.getLogger(__name__)
S = Campaign.Status
M = Message.State
REPORT_SAMPLE = 1000


# -- tenant settings and prices ---------------------------------------------------------


def profile(tenant_id: int) -> SmsProfile:
    """The tenant's SMS settings, created with defaults on first use (Bangla rule on for BD)."""
    found = SmsProfile.objects.filter(tenant_id=tenant_id).select_related("tenant").first()
    if found is not None:
        return found
    from ispcore.accounts.models import Tenant

    tenant = Tenant.objects.get(pk=tenant_id)
    obj, _created = SmsProfile.objects.get_or_create(tenant=tenant,
                                                     defaults={"require_bangla": tenant.phone_region == "BD"})
    return obj


def default_route(tenant_id: int) -> ProviderRoute | None:
    """The tenant's default route, else the platform default, else the first active route."""
    prof = profile(tenant_id)
    if prof.default_route_id and prof.default_route.is_active:
        return prof.default_route
    routes = ProviderRoute.objects.filter(is_active=True).filter(tenant_id__in=[tenant_id]) | \
        ProviderRoute.objects.filter(is_active=True, tenant__isnull=True)
    return routes.order_by("-is_default", "priority", "id").first()


def price_per_part(tenant_id: int, route: ProviderRoute | None) -> Decimal:
    if route is None:
        raise ValidationError(_("No SMS route is configured."))
    own = route.prices.filter(tenant_id=tenant_id).values_list("price_per_part", flat=True).first()
    return own if own is not None else route.price_per_part


def in_quiet_hours(prof: SmsProfile, at: datetime | None = None) -> bool:
    """True when ``at`` (now) falls in the tenant's quiet window (local time; may wrap midnight)."""
    if prof.quiet_start is None or prof.quiet_end is None or prof.quiet_start == prof.quiet_end:
        return False
    local: time = timezone.localtime(at or timezone.now(), prof.tenant.tzinfo).time()
    start, end = prof.quiet_start, prof.quiet_end
    return start <= local < end if start < end else (local >= start or local < end)


def check_sender(tenant, sender: SenderId | str | None, actor=None) -> SenderId | None:
    """The line to send from (the tenant's default when None); ValidationError when the
    sender id is malformed, not the tenant's, inactive, or not allowed for ``actor``."""
    from ispcore.accounts.roles import Role

    if sender is None:
        line = SenderId.objects.filter(tenant=tenant, is_default=True, is_active=True).first()
        if line is None:
            raise ValidationError({"sender": _("Choose a sender id (the tenant has no default).")})
    elif isinstance(sender, SenderId):
        line = sender
    else:
        value = validate_sender_id(sender)
        line = SenderId.objects.filter(tenant=tenant, value=value).first()
        if line is None:
            raise ValidationError({"sender": _("'%(s)s' is not one of this ISP's sender ids.") % {"s": value}})
    if line.tenant_id != tenant.pk or not line.is_active:
        raise ValidationError({"sender": _("This sender id is not available.")})
    role = getattr(actor, "role", None)
    if actor is not None and role not in (Role.SUPER_ADMIN, Role.ADMIN) and not line.open_to_all \
            and not line.allowed_users.filter(pk=actor.pk).exists():
        raise ValidationError({"sender": _("You may not send from '%(s)s'.") % {"s": line.value}})
    return line


def check_bangla(tenant_id: int, body: str, promotional: bool) -> None:
    if promotional and profile(tenant_id).require_bangla and not contains_bangla(body):
        raise ValidationError({"body": _("Promotional SMS must contain Bangla text (BTRC rule; tenant setting).")},
                              code="bangla_required")


# -- create and materialise ------------------------------------------------------------


def create_campaign(*, tenant, actor, name: str, audience: Mapping, body: str = "", template: SmsTemplate | None = None,
                    sender: SenderId | str | None = None, promotional: bool = True,
                    scheduled_at: datetime | None = None, route: ProviderRoute | None = None) -> Campaign:
    """A draft campaign; validates the text (placeholders, Bangla rule) and the sender."""
    if template is not None:
        if template.tenant_id != tenant.pk:
            raise ValidationError({"template": _("Unknown template.")})
        body = body or template.body
    try:
        validate_template(body)
    except ValidationError as exc:
        raise ValidationError({"body": exc.messages}) from None
    check_bangla(tenant.pk, body, promotional)
    line = check_sender(tenant, sender, actor)
    if scheduled_at is not None and timezone.is_naive(scheduled_at):
        raise ValidationError({"scheduled_at": _("Give the time with its time zone.")})
    route = route or line.route or default_route(tenant.pk)
    if route is None:
        raise ValidationError({"route": _("No SMS route is configured.")})
    with transaction.atomic():
        campaign = Campaign.objects.create(
            tenant=tenant, node=getattr(actor, "node", None), created_by=actor if getattr(actor, "pk", None) else None,
            name=name, promotional=promotional, template=template, body=body, line=line, sender=line.value,
            route=route, audience=dict(audience), scheduled_at=scheduled_at,
            group_id=audience.get("group") if audience.get("kind") == "group" else None,
        )
        audit.record("sms.campaign.create", campaign, actor=actor, name=name, promotional=promotional)
    return campaign


def _build_rows(campaign: Campaign) -> tuple[list[tuple], dict]:
    """Resolve, normalise, de-duplicate, drop opt-outs, render and segment: the message
    rows to insert (as tuples in ``_COLUMNS`` order) and the report."""
    tenant = campaign.tenant
    region = tenant.phone_region or "BD"
    import phonenumbers

    recipients = list(resolve(tenant, campaign.audience))
    names = set(validate_template(campaign.body))
    customer_ids = {r.customer_id for r in recipients if r.customer_id}
    contexts = customer_contexts(customer_ids, tenant=tenant, needed=names) if (customer_ids and names) else {}
    opted_out = set(OptOut.objects.filter(tenant=tenant).values_list("number", flat=True)) \
        if campaign.promotional else set()
    price = price_per_part(tenant.pk, campaign.route)
    costs: dict[int, Decimal] = {}
    seen: set[str] = set()
    invalid: list[list[str]] = []
    invalid_count = duplicates = opted = 0
    rows: list[tuple] = []
    fixed_text = None if names else campaign.body
    fixed_seg = count_parts(fixed_text) if fixed_text is not None else None
    fill = compile_template(campaign.body)
    fallback = {"isp": tenant.name}
    cache: dict[str, str] = {}
    for raw, cid in recipients:
        number = cache.get(raw) or fast_e164(raw, region)
        if number is None:
            try:
                parsed = phonenumbers.parse(raw, region)
                if not phonenumbers.is_valid_number(parsed):
                    raise ValueError(_("not a valid number for %(r)s") % {"r": region})
                number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            except (phonenumbers.NumberParseException, ValueError) as exc:
                invalid_count += 1
                if len(invalid) < REPORT_SAMPLE:
                    invalid.append([raw, str(exc)])
                continue
            cache[raw] = number
        if number in seen:
            duplicates += 1
            continue
        seen.add(number)
        if number in opted_out:
            opted += 1
            continue
        if fixed_seg is not None:
            text, seg = fixed_text, fixed_seg
        else:
            text = fill(contexts.get(cid, fallback))
            try:
                seg = count_parts(text)
            except SegmentationError as exc:
                invalid_count += 1
                if len(invalid) < REPORT_SAMPLE:
                    invalid.append([raw, str(exc)])
                continue
        encoding, parts = seg
        rows.append((number, cid, text, encoding, parts, price, costs.get(parts) or costs.setdefault(
            parts, to_money(price * parts))))
    report = {"invalid": invalid, "invalid_count": invalid_count, "duplicates": duplicates, "opted_out": opted}
    return rows, report


_COLUMNS = ("tenant_id", "campaign_id", "kind", "promotional", "idempotency_key", "customer_id", "node_id",
            "created_by_id", "group_id", "to_number", "sender", "line_id", "route_id", "text", "encoding", "parts",
            "price_per_part", "cost", "state", "attempts", "next_attempt_at", "claimed_by", "error", "created_at")


def _insert_messages(campaign: Campaign, rows: list[tuple], now: datetime) -> None:
    """COPY the rows in (PostgreSQL), else bulk_create; inside the caller's transaction."""
    fixed = (campaign.tenant_id, campaign.pk, Message.Kind.CAMPAIGN, campaign.promotional, "")
    after = (campaign.node_id, campaign.created_by_id, campaign.group_id)
    if connection.vendor == "postgresql":
        table = Message._meta.db_table
        with connection.cursor() as cursor:
            raw = cursor.cursor
            with raw.copy(f"COPY {table} ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                for number, cid, text, enc, parts, price, cost in rows:
                    copy.write_row(fixed + (cid,) + after + (number, campaign.sender, campaign.line_id,
                                   campaign.route_id, text, enc, parts, price, cost, M.QUEUED, 0, None, "", "", now))
        return
    Message.objects.bulk_create([
        Message(tenant_id=campaign.tenant_id, campaign=campaign, kind=Message.Kind.CAMPAIGN,
                promotional=campaign.promotional, customer_id=cid, node_id=campaign.node_id,
                created_by_id=campaign.created_by_id, group_id=campaign.group_id, to_number=number,
                sender=campaign.sender, line_id=campaign.line_id, route_id=campaign.route_id, text=text, encoding=enc,
                parts=parts, price_per_part=price, cost=cost)
        for number, cid, text, enc, parts, price, cost in rows], batch_size=5000)


def start_campaign(campaign: Campaign, *, actor) -> Campaign:
    """Materialise a draft: one queued Message per valid, unique, not-opted-out recipient,
    and hold their whole cost, in one transaction; refused (nothing written, nothing
    held) when the SMS balance is short. The campaign then runs now or at ``scheduled_at``."""
    if campaign.status != S.DRAFT:
        raise ValidationError(_("Only a draft campaign can be started."))
    check_bangla(campaign.tenant_id, campaign.body, campaign.promotional)
    rows, report = _build_rows(campaign)
    if not rows:
        raise ValidationError({"audience": _("No valid recipient: %(n)d invalid, %(o)d opted out.")
                               % {"n": report["invalid_count"], "o": report["opted_out"]}})
    total_cost = sum((r[6] for r in rows), Decimal("0.00"))
    now = timezone.now()
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status != S.DRAFT:
            raise ValidationError(_("Only a draft campaign can be started."))
        credit.hold(locked.tenant_id, total_cost, key=f"campaign:{locked.pk}", actor=actor,
                    memo=f"campaign {locked.pk}: {len(rows)} SMS")
        _insert_messages(locked, rows, now)
        locked.total = len(rows)
        locked.parts_total = sum(r[4] for r in rows)
        locked.cost_held = total_cost
        locked.invalid_count = report["invalid_count"]
        locked.duplicate_count = report["duplicates"]
        locked.opted_out_count = report["opted_out"]
        locked.report = {"invalid": report["invalid"]}
        locked.materialised_at = now
        scheduled = locked.scheduled_at is not None and locked.scheduled_at > now
        locked.status = S.SCHEDULED if scheduled else S.RUNNING
        locked.started_at = None if scheduled else now
        locked.save()
        audit.record("sms.campaign.start", locked, actor=actor, total=locked.total, cost=str(total_cost),
                     invalid=locked.invalid_count, status=locked.status)
        transaction.on_commit(kick_workers)
    return locked


def kick_workers() -> None:
    """Ask a Celery worker to start sending now (beat does it anyway every few seconds)."""
    from django.conf import settings

    from .tasks import dispatch

    if not getattr(settings, "SMS_DISPATCH_ON_COMMIT", True):
        return
    try:
        dispatch.delay()
    except Exception:  # the broker being down must not fail the business transaction
        log.warning("could not queue the SMS dispatch task; beat will pick the messages up", exc_info=True)


def start_due_campaigns(now: datetime | None = None) -> int:
    """Scheduled campaigns whose time has come start running (beat)."""
    now = now or timezone.now()
    return Campaign.objects.filter(status=S.SCHEDULED, scheduled_at__lte=now).update(status=S.RUNNING, started_at=now)


def pause_campaign(campaign: Campaign, *, actor) -> Campaign:
    """Workers stop claiming its messages; messages already claimed finish their attempt."""
    return _set_status(campaign, actor, {S.RUNNING, S.SCHEDULED}, S.PAUSED, "sms.campaign.pause")


def resume_campaign(campaign: Campaign, *, actor) -> Campaign:
    return _set_status(campaign, actor, {S.PAUSED}, S.RUNNING, "sms.campaign.resume")


def _set_status(campaign: Campaign, actor, allowed: set, new: str, action: str) -> Campaign:
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status not in allowed:
            raise ValidationError(_("A %(s)s campaign cannot do that.") % {"s": locked.get_status_display()})
        locked.status = new
        if new == S.RUNNING and locked.started_at is None:
            locked.started_at = timezone.now()
        locked.save(update_fields=["status", "started_at"])
        audit.record(action, locked, actor=actor)
    if new == S.RUNNING:
        transaction.on_commit(kick_workers)
    return locked


def cancel_campaign(campaign: Campaign, *, actor) -> Campaign:
    """Stop for good: every message still queued is cancelled and its hold refunded in
    the same transaction. Messages a worker has already claimed finish their attempt."""
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status in (S.COMPLETED, S.CANCELLED):
            raise ValidationError(_("The campaign has already finished."))
        now = timezone.now()
        pairs = list(Message.objects.select_for_update().filter(campaign=locked, state=M.QUEUED)
                     .values_list("id", "cost"))
        if pairs:
            Message.objects.filter(pk__in=[p[0] for p in pairs]).update(state=M.CANCELLED, finished_at=now,
                                                                        refunded_at=now)
            credit.settle(locked.tenant_id, refund_held=[p for p in pairs if p[1]])
        locked.status = S.CANCELLED
        locked.finished_at = now
        locked.save(update_fields=["status", "finished_at"])
        audit.record("sms.campaign.cancel", locked, actor=actor, cancelled=len(pairs))
    return locked


def finish_campaigns() -> int:
    """Running campaigns with nothing left to send are completed (beat / worker)."""
    done = 0
    for campaign in Campaign.objects.filter(status=S.RUNNING):
        if not Message.objects.filter(campaign=campaign, state__in=[M.QUEUED, M.SUBMITTING]).exists():
            done += Campaign.objects.filter(pk=campaign.pk, status=S.RUNNING).update(
                status=S.COMPLETED, finished_at=timezone.now())
    return done


def progress(campaign: Campaign) -> dict:
    """Live progress: messages per state, parts, cost charged and refunded."""
    by_state = dict(Message.objects.filter(campaign=campaign).values_list("state").annotate(n=Count("id")))
    money = Message.objects.filter(campaign=campaign).aggregate(
        charged=Sum("cost", filter=~_null("charged_at")), refunded=Sum("cost", filter=~_null("refunded_at")))
    done = sum(n for s, n in by_state.items() if s not in (M.QUEUED, M.SUBMITTING))
    return {"status": campaign.status, "total": campaign.total, "done": done, "states": by_state,
            "percent": round(100 * done / campaign.total, 1) if campaign.total else 0.0,
            "charged": money["charged"] or Decimal("0.00"), "refunded": money["refunded"] or Decimal("0.00")}


def _null(field: str):
    from django.db.models import Q

    return Q(**{f"{field}__isnull": True})


#: the one-click "tell every customer their current due" text (Bangla; placeholders filled per customer).
DUE_REMINDER = "প্রিয় {name}, আপনার বর্তমান বকেয়া {due} টাকা, মেয়াদ {expiry}। অনুগ্রহ করে পরিশোধ করুন। - {isp}"


def send_due_to_all(*, tenant, actor, sender: SenderId | str | None = None, body: str = DUE_REMINDER,
                    due_gt: Decimal | str = "0") -> Campaign:
    """One click: every customer with a due above ``due_gt`` gets their own due amount
    (a non-promotional campaign, started at once: materialised, held, queued)."""
    campaign = create_campaign(tenant=tenant, actor=actor, name=f"Due reminder {timezone.localdate()}",
                               body=body, sender=sender, promotional=False,
                               audience={"kind": "customers", "due_gt": str(due_gt)})
    return start_campaign(campaign, actor=actor)


def parse_audience_upload(content: bytes, filename: str) -> dict:
    """An uploaded CSV/XLSX as a ``numbers`` audience."""
    from .audiences import parse_upload

    return {"kind": "numbers", "numbers": parse_upload(content, filename)}


__all__ = ["cancel_campaign", "create_campaign", "send_due_to_all", "finish_campaigns", "in_quiet_hours", "pause_campaign",
           "profile", "progress", "resume_campaign", "start_campaign", "start_due_campaigns"]
