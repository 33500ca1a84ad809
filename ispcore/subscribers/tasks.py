"""Thin Celery tasks for the customer lifecycle."""
from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from . import access, lifecycle
from .models import Customer


@shared_task(name="subscribers.cut_off_access", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def cut_off_access(customer_id: int, reason: str):
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        return None
    return access.cut_off(customer, reason)


@shared_task(name="subscribers.refresh_speed", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def refresh_speed(customer_id: int):
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        return None
    return access.refresh_speed(customer)


@shared_task(name="subscribers.expire_due")
def expire_due() -> int:
    return lifecycle.expire_due(timezone.now())


@shared_task(name="subscribers.send_expiry_warnings")
def send_expiry_warnings() -> int:
    return lifecycle.send_expiry_warnings(timezone.now())


@shared_task(name="subscribers.verify_cut_off", autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def verify_cut_off(customer_id: int):
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        return None
    return access.verify_cut_off(customer)
