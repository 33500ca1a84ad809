"""Network side effects of a customer's state, behind one pair of functions so billing
does not care whether the RADIUS or the MikroTik side is installed.

Both are queued as Celery tasks from `transaction.on_commit`, so a rolled-back change never
disconnects anyone and a slow router never holds a database transaction open."""
from __future__ import annotations

import logging

from django.db import transaction

log = logging.getLogger(__name__)


def cut_off_on_commit(customer_id: int, reason: str) -> None:
    """After commit: end the customer's live sessions (Disconnect-Request, router API fallback)."""
    from .tasks import cut_off_access

    transaction.on_commit(lambda: cut_off_access.delay(customer_id, reason))


def refresh_speed_on_commit(customer_id: int) -> None:
    """After commit: push the customer's new rate limit to its live sessions (CoA)."""
    from .tasks import refresh_speed

    transaction.on_commit(lambda: refresh_speed.delay(customer_id))


def cut_off(customer, reason: str) -> dict:
    """Disconnect every open session of `customer`. Returns what was attempted, per channel."""
    try:
        from radius.services import disconnect_customer
    except ImportError:
        log.warning("no RADIUS disconnect service installed; %s stays online until its session ends", customer)
        return {"radius": "unavailable"}
    return {"radius": disconnect_customer(customer, reason)}


def refresh_speed(customer) -> dict:
    try:
        from radius.services import change_rate
    except ImportError:
        log.warning("no RADIUS CoA service installed; %s keeps its old speed until it reconnects", customer)
        return {"radius": "unavailable"}
    return {"radius": change_rate(customer)}
