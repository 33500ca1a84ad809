"""Thin Celery tasks over billing services."""
from celery import shared_task
from django.utils import timezone

from ispcore.core.models import JobRun

from .services import ledger_differences


@shared_task(name="billing.check_ledger_consistency")
def check_ledger_consistency() -> int:
    """Nightly proof that every cached balance equals its ledger; the result is a JobRun the panel shows."""
    run = JobRun.objects.create(kind="ledger_check")
    diffs = ledger_differences()
    problems = len(diffs["wallets"]) + len(diffs["transactions"])
    run.status = JobRun.Status.FAILED if problems else JobRun.Status.SUCCEEDED
    run.errors = [{k: str(v) for k, v in d.items()} for d in diffs["wallets"] + diffs["transactions"]][:1000]
    run.result = {"problems": problems}
    run.finished_at = timezone.now()
    run.save()
    return problems


@shared_task(name="billing.monthly_billing_tick")
def monthly_billing_tick() -> list[str]:
    from .invoicing import monthly_billing_tick as tick

    return tick()


@shared_task(name="billing.suspend_overdue")
def suspend_overdue() -> int:
    from .invoicing import suspend_overdue as run

    return run()


@shared_task(name="billing.bill_minutes")
def bill_minutes() -> dict:
    """Every minute: per-minute reseller billing (idempotent through the per-node watermark)."""
    from django.db import connection

    from .minutes import bill_minutes as tick

    if connection.vendor != "postgresql":
        return {"skipped": "per-minute billing needs PostgreSQL"}  # the SQLite first run has none
    return tick().result
