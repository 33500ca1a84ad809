"""Thin Celery tasks over RADIUS services."""

import logging

from celery import shared_task

from . import services

logger = logging.getLogger(__name__)


@shared_task(name="radius.close_stale_sessions")
def close_stale_sessions() -> int:
    """Close sessions with no accounting for 3 interim intervals; trim the auth log."""
    closed = services.close_stale_sessions()
    trimmed = services.trim_auth_log()
    if closed or trimmed:
        logger.info("closed %d stale RADIUS sessions, trimmed %d auth log rows", closed, trimmed)
    return closed


@shared_task(name="radius.disconnect_customer")
def disconnect_customer(customer_id: int, reason: str) -> int:
    """Disconnect every open session of a customer; returns how many were ACKed."""
    from ispcore.subscribers.models import Customer

    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        return 0
    return sum(1 for r in services.disconnect_customer(customer, reason) if r.result == "ack")


@shared_task(name="radius.change_rate")
def change_rate(customer_id: int) -> int:
    """Push the customer's current rate limit to the NAS by CoA; returns how many were ACKed."""
    from ispcore.subscribers.models import Customer

    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        return 0
    return sum(1 for r in services.change_rate(customer) if r.result == "ack")
