"""Thin Celery tasks over the card services."""
from celery import shared_task

from .services import expire_due_batches


@shared_task(name="cards.expire_cards")
def expire_cards() -> int:
    """Expire every card past its batch's validity (idempotent: expired cards are skipped,
    and each batch's liability release has its own ledger key). Redemption refuses a card
    past validity on its own, so how often this runs changes only when the float is released.
    Schedule it hourly, e.g. CELERY_BEAT_SCHEDULE["cards-expire"] =
    {"task": "cards.expire_cards", "schedule": crontab(minute=7)}."""
    return expire_due_batches()
