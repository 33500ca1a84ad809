"""Delivery-status webhook out: a tenant's URL is told when each message reaches a final
state (delivered, undelivered, expired, rejected, failed, blocked, cancelled, unknown).

* :func:`scan` finds finished messages of tenants with an active endpoint that have no
  :class:`WebhookDelivery` for their current state yet, and queues one (the unique
  ``(message, state)`` constraint makes a repeated or concurrent scan harmless). It
  looks back ``SMS_WEBHOOK_LOOKBACK_HOURS`` over the ``(tenant, finished_at)`` index,
  so it stays cheap as history grows.
* :func:`deliver_due` claims due deliveries (SKIP LOCKED, then a lease written before
  the HTTP call, so two workers never post the same one at once), POSTs the JSON body
  signed with HMAC-SHA256 of the exact body bytes under the endpoint's secret
  (``X-ISP-Signature: sha256=<hex>``), and records the answer: 2xx = delivered;
  anything else (or no answer within the timeout) is retried after
  ``backoff_seconds * 2**(attempt-1)`` until ``max_attempts``, then marked failed.
  Delivery is at-least-once: receivers de-duplicate on ``X-ISP-Delivery``.
* The Celery task ``notifications.deliver_webhooks`` (beat, every 10 s) runs both.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.utils.translation import gettext as _

from ispcore.core import audit

from .models import Message, WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)
M = Message.State
FINAL_STATES = [M.DELIVERED, M.UNDELIVERED, M.EXPIRED, M.REJECTED, M.UNKNOWN, M.FAILED, M.BLOCKED, M.CANCELLED]
D = WebhookDelivery.Status


def lookback() -> timedelta:
    return timedelta(hours=int(getattr(settings, "SMS_WEBHOOK_LOOKBACK_HOURS", 24)))


def timeout() -> float:
    return float(getattr(settings, "SMS_WEBHOOK_TIMEOUT", 5.0))


def sign(secret: str, body: bytes) -> str:
    """The signature header value for ``body``: ``sha256=<hex HMAC-SHA256>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def configure(tenant, *, actor, url: str, secret: str | None = None, is_active: bool = True,
              max_attempts: int | None = None, backoff_seconds: int | None = None) -> WebhookEndpoint:
    """Set the tenant's status webhook (http/https URL; secret kept encrypted; a new
    secret replaces the old one, ``None`` keeps it)."""
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ValidationError({"url": _("Enter an http:// or https:// URL.")}) from None
    with transaction.atomic():
        endpoint, _created = WebhookEndpoint.objects.select_for_update().get_or_create(
            tenant=tenant, defaults={"url": url})
        endpoint.url, endpoint.is_active = url, is_active
        if secret is not None:
            endpoint.secret = secret
        if max_attempts is not None:
            endpoint.max_attempts = max(1, int(max_attempts))
        if backoff_seconds is not None:
            endpoint.backoff_seconds = max(0, int(backoff_seconds))
        endpoint.save()
        audit.record("sms.webhook.configure", endpoint, actor=actor, tenant_id=tenant.pk, url=url,
                     active=is_active, secret_changed=secret is not None)
    return endpoint


def scan(limit: int = 1000, *, now=None) -> int:
    """Queue a delivery for every recently finished message not yet announced in its state."""
    now = now or timezone.now()
    queued = 0
    for endpoint in WebhookEndpoint.objects.filter(is_active=True):
        since = max(endpoint.created_at, now - lookback())
        owed = (Message.objects.filter(tenant_id=endpoint.tenant_id, finished_at__gte=since, state__in=FINAL_STATES)
                .exclude(Exists(WebhookDelivery.objects.filter(message=OuterRef("pk"), state=OuterRef("state"))))
                .values_list("pk", "state")[:limit])
        rows = [WebhookDelivery(endpoint=endpoint, message_id=pk, state=state, next_attempt_at=now)
                for pk, state in owed]
        if rows:
            WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
            queued += len(rows)
    return queued


def payload(delivery: WebhookDelivery, message: Message) -> dict:
    return {
        "event": "sms.status", "delivery_id": delivery.pk, "attempt": delivery.attempts + 1,
        "message": {
            "id": message.pk, "to": message.to_number, "sender": message.sender, "state": delivery.state,
            "parts": message.parts, "cost": str(message.cost), "error": message.error,
            "idempotency_key": message.idempotency_key.removeprefix("api:"), "campaign": message.campaign_id,
            "kind": message.kind,
            "submitted_at": message.submitted_at.isoformat() if message.submitted_at else None,
            "finished_at": message.finished_at.isoformat() if message.finished_at else None,
        },
    }


def _post(url: str, body: bytes, headers: dict) -> tuple[int | None, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout()) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", exc))[:200]


def deliver_due(limit: int = 100, *, now=None) -> dict[str, int]:
    """POST every due delivery (up to ``limit``); returns counts by outcome."""
    now = now or timezone.now()
    lease = timedelta(seconds=timeout() * 2 + 5)
    with transaction.atomic():
        batch = list(WebhookDelivery.objects.select_for_update(skip_locked=True)
                     .filter(status=D.PENDING, next_attempt_at__lte=now).order_by("next_attempt_at", "id")[:limit])
        WebhookDelivery.objects.filter(pk__in=[d.pk for d in batch]).update(next_attempt_at=now + lease)
    counts = {"delivered": 0, "retry": 0, "failed": 0}
    if not batch:
        return counts
    endpoints = WebhookEndpoint.objects.in_bulk({d.endpoint_id for d in batch})
    messages = Message.objects.in_bulk({d.message_id for d in batch})
    for delivery in batch:
        endpoint, message = endpoints[delivery.endpoint_id], messages.get(delivery.message_id)
        if message is None or not endpoint.is_active:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(status=D.FAILED, last_error="gone or switched off")
            counts["failed"] += 1
            continue
        body = json.dumps(payload(delivery, message), separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "isp-sms-webhook/1",
                   "X-ISP-Delivery": str(delivery.pk), "X-ISP-Event": "sms.status",
                   "X-ISP-Signature": sign(endpoint.secret or "", body)}
        status, error = _post(endpoint.url, body, headers)
        attempts = delivery.attempts + 1
        done_at = timezone.now()
        if status is not None and 200 <= status < 300:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                status=D.DELIVERED, attempts=attempts, response_status=status, delivered_at=done_at, last_error="")
            counts["delivered"] += 1
        elif attempts >= endpoint.max_attempts:
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                status=D.FAILED, attempts=attempts, response_status=status, last_error=(error or "")[:255])
            counts["failed"] += 1
            log.warning("SMS webhook %s for message %s gave up after %d attempts: %s", delivery.pk, message.pk,
                        attempts, error)
        else:
            wait = timedelta(seconds=endpoint.backoff_seconds * (2 ** (attempts - 1)))
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                attempts=attempts, response_status=status, last_error=(error or "")[:255],
                next_attempt_at=done_at + wait)
            counts["retry"] += 1
    return counts


@shared_task(name="notifications.deliver_webhooks", ignore_result=True)
def deliver_webhooks_task() -> None:
    scan()
    while sum(deliver_due().values()) >= 100:
        pass
