"""Celery tasks: thin wrappers around the SMS services (see ARCHITECTURE.md)."""
from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)

_SENDER = None


def _sends_here() -> bool:
    """Sending claims rows with PostgreSQL's SKIP LOCKED and array statements. The first-run
    SQLite database (make run without DATABASE_URL) queues messages but does not send them."""
    if connection.vendor == "postgresql":
        return True
    log.info("SMS sending needs PostgreSQL (DATABASE_URL); messages stay queued on %s", connection.vendor)
    return False


def _sender():
    """One Sender per worker process: its SMPP binds stay open between tasks."""
    global _SENDER
    if _SENDER is None:
        from .worker import Sender

        _SENDER = Sender()
        _SENDER.start()
    return _SENDER


@shared_task(name="notifications.dispatch", ignore_result=True)
def dispatch() -> None:
    """Send queued messages until none is left or SMS_DISPATCH_SECONDS pass; any number
    of these run at once on any number of hosts (rows are claimed with SKIP LOCKED)."""
    if not _sends_here():
        return
    sender = _sender()
    deadline = time.monotonic() + float(getattr(settings, "SMS_DISPATCH_SECONDS", 50))
    idle = 0
    while time.monotonic() < deadline:
        if sender.run_once():
            idle = 0
            continue
        idle += 1
        if idle > 3:
            break
        time.sleep(0.2)


@shared_task(name="notifications.process_outbox", ignore_result=True)
def process_outbox_task() -> None:
    from .transactional import process_outbox

    while process_outbox()["sent"]:
        pass


@shared_task(name="notifications.housekeeping", ignore_result=True)
def housekeeping() -> None:
    """Start scheduled campaigns, complete finished ones, recover crashed sends, match receipts."""
    if not _sends_here():
        return
    from . import reports
    from .campaigns import finish_campaigns, start_due_campaigns
    from .worker import recover_stale

    start_due_campaigns()
    recover_stale()
    while reports.apply_reports() >= 2000:
        pass
    finish_campaigns()


@shared_task(name="notifications.refresh_balances", ignore_result=True)
def refresh_balances_task() -> None:
    """Read every route's remaining credit from its provider (where it offers a balance call)."""
    from .worker import refresh_balances

    refresh_balances()
