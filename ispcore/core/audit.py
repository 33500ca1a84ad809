"""Writing audit events from services."""
from __future__ import annotations

from typing import Any

from django.db import models

from .models import AuditEvent


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
