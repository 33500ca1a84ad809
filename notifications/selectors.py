"""Reads spanning SMS models: statistics per campaign, period, user and group."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDay

from .models import Message

M = Message.State
SENT_STATES = [M.SUBMITTED, M.SENT, M.DELIVERED, M.UNDELIVERED, M.EXPIRED, M.UNKNOWN]
UNDELIVERED_STATES = [M.UNDELIVERED, M.EXPIRED, M.REJECTED, M.FAILED]

_AGG = {
    "messages": Count("id"),
    "parts": Sum("parts"),
    "sent": Count("id", filter=Q(state__in=SENT_STATES)),
    "delivered": Count("id", filter=Q(state=M.DELIVERED)),
    "undelivered": Count("id", filter=Q(state__in=UNDELIVERED_STATES)),
    "pending": Count("id", filter=Q(state__in=[M.QUEUED, M.SUBMITTING])),
    "blocked": Count("id", filter=Q(state__in=[M.BLOCKED, M.CANCELLED])),
    "cost": Sum("cost", filter=Q(charged_at__isnull=False, refunded_at__isnull=True)),
}


def _clean(row: dict) -> dict:
    row = dict(row)
    row["parts"] = row.get("parts") or 0
    row["cost"] = row.get("cost") or Decimal("0.00")
    return row


def message_stats(queryset=None, *, tenant_id: int | None = None, campaign_id: int | None = None,
                  since: datetime | None = None, until: datetime | None = None, group_by: str | None = None) -> list[dict]:
    """Sent / delivered / undelivered / pending counts and net cost (charged, not refunded).

    ``queryset`` narrows first (pass ``Message.objects.visible_to(user)`` from views);
    ``group_by``: None (one row), 'campaign', 'user' (created_by), 'group', 'day'."""
    qs = queryset if queryset is not None else Message.objects.all()
    if tenant_id is not None:
        qs = qs.filter(tenant_id=tenant_id)
    if campaign_id is not None:
        qs = qs.filter(campaign_id=campaign_id)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    keys = {None: [], "campaign": ["campaign_id"], "user": ["created_by_id"], "group": ["group_id"], "day": ["day"]}
    if group_by not in keys:
        raise ValueError(f"group_by must be one of {sorted(k for k in keys if k)}")
    if group_by == "day":
        qs = qs.annotate(day=TruncDay("created_at"))
    if not keys[group_by]:
        return [_clean(qs.aggregate(**_AGG))]
    return [_clean(r) for r in qs.values(*keys[group_by]).annotate(**_AGG).order_by(*keys[group_by])]
