"""Writing audit events from services."""
from __future__ import annotations

from typing import Any

from django.db import models, transaction

from .models import AuditEvent, OutboxEvent


def record(action: str, obj: models.Model, *, actor=None, tenant_id: int | None = None, **data: Any) -> AuditEvent:
    """Record that `actor` did `action` to `obj`. Call inside the service's transaction."""
    if tenant_id is None:
        tenant_id = getattr(obj, "tenant_id", None)
    return AuditEvent.objects.create(
        tenant_id=tenant_id,
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        object_type=obj._meta.label_lower,
        object_id=str(obj.pk),
        data={k: (str(v) if not isinstance(v, (int, bool, str, type(None), list, dict)) else v) for k, v in data.items()},
    )


#: Callables run after the commit of a transaction that emitted an event (a consumer
#: registers one in its AppConfig.ready, so core imports no other app).
OUTBOX_LISTENERS: list = []


def emit(kind: str, *, tenant_id: int, customer_id: int | None = None, **payload: Any) -> OutboxEvent:
    """Queue a business event (e.g. 'payment.received') for the SMS module. Call inside the
    service's transaction: the event commits or rolls back with the change; listeners run
    only after a commit."""
    for listener in OUTBOX_LISTENERS:
        transaction.on_commit(listener)
    return OutboxEvent.objects.create(
        tenant_id=tenant_id, kind=kind, customer_id=customer_id,
        payload={k: (str(v) if not isinstance(v, (int, bool, str, type(None), list, dict)) else v)
                 for k, v in payload.items()},
    )
