"""Celery tasks for MikroTik routers.

``mikrotik.sync_router(nas_id)`` guarantees that two syncs of the same router
never run at the same time: it holds the Redis lock
``isp:mikrotik-sync:<nas_id>`` (auto-expiring after :data:`LOCK_TIMEOUT`
seconds) while it runs and returns quietly, doing nothing, if another holder has
it. Transient router failures that survive :func:`mikrotik.sync.sync_router`'s
own retries are retried by Celery with exponential backoff (lock released first);
permanent ones (refused login, TLS) are not. Every attempt leaves a
:class:`~mikrotik.models.RouterSyncRun` with its outcome.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import redis
from celery import shared_task
from django.conf import settings
from redis.exceptions import LockError

from .client import RouterConnectionLost, RouterUnreachable
from .sync import sync_router as run_sync

logger = logging.getLogger(__name__)

LOCK_TIMEOUT = 600
#: Quick in-task retries of a transient failure (a blip); longer outages are Celery's retries.
SYNC_ATTEMPTS = 3
SYNC_BACKOFF = 0.5


def lock_name(nas_id: int) -> str:
    return f"isp:mikrotik-sync:{nas_id}"


def router_lock(nas_id: int) -> Any:
    """The per-router non-blocking Redis lock the sync task takes."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    return client.lock(lock_name(nas_id), timeout=LOCK_TIMEOUT, blocking=False)


@shared_task(
    name="mikrotik.sync_router",
    autoretry_for=(RouterUnreachable, RouterConnectionLost),
    retry_backoff=True,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
)
def sync_router(nas_id: int, trigger: str = "manual") -> dict[str, Any] | None:
    """Sync one router; see :func:`mikrotik.sync.sync_router` (``trigger``: manual, beat, repair).

    Returns the result as a dict, or ``None`` if the NAS is gone, inactive, not
    a MikroTik, has no API user, or another sync of it holds the lock.
    """
    from ispcore.subscribers.models import Nas

    nas = Nas.objects.filter(pk=nas_id).first()
    if nas is None or not nas.is_active or nas.nas_type != Nas.NasType.MIKROTIK or not nas.api_username:
        logger.info("Skipping MikroTik sync of NAS %s: missing, inactive, not a MikroTik or no API user", nas_id)
        return None
    lock = router_lock(nas_id)
    if not lock.acquire():
        logger.info("Skipping MikroTik sync of NAS %s: another sync holds the lock", nas_id)
        return None
    try:
        return run_sync(nas, trigger=trigger, attempts=SYNC_ATTEMPTS, backoff=SYNC_BACKOFF).as_dict()
    finally:
        with contextlib.suppress(LockError):  # expired and possibly taken over: not ours to release
            lock.release()


@shared_task(name="mikrotik.sync_all_routers")
def sync_all_routers() -> int:
    """Queue a sync of every active MikroTik that has API credentials (beat, every 15 minutes):
    drift made by hand on a router is repaired without anyone asking. Also prunes sync runs
    older than ``MIKROTIK_SYNC_RUN_DAYS`` (30), keeping each router's latest."""
    from ispcore.subscribers.models import Nas

    ids = list(Nas.objects.filter(is_active=True, nas_type=Nas.NasType.MIKROTIK).exclude(api_username="")
               .values_list("id", flat=True))
    for nas_id in ids:
        sync_router.delay(nas_id, "beat")
    from .services import prune_sync_runs

    prune_sync_runs(keep_days=getattr(settings, "MIKROTIK_SYNC_RUN_DAYS", 30))
    return len(ids)
