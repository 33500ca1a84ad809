"""Network side effects of a customer's state, behind one pair of functions so billing
does not care whether the RADIUS or the MikroTik side is installed.

Both are queued as Celery tasks from `transaction.on_commit`, so a rolled-back change never
disconnects anyone and a slow router never holds a database transaction open.

Cutting a customer off, in order:

1. a RADIUS Disconnect-Request for every open accounting session (``radius.services``);
2. the router-API fallback (``mikrotik.services.kick_session``) on each MikroTik with an API
   user where that request was NAKed (other than "session not found"), timed out or
   could not be sent, and on every router in API-only mode (no RADIUS sessions to
   disconnect there);
3. a check ``CUT_OFF_VERIFY_SECONDS`` later (``verify_cut_off`` task): a session the NAS
   ACKed but that is still open in accounting, while the customer is still not allowed
   online, is kicked through the router API too.

Any change of who may be online (cut-off, reactivation, a renewal) also queues a sync of the
tenant's MikroTik routers that have an API user (``refresh_routers_on_commit``), debounced to
one per router per ``ROUTER_SYNC_DEBOUNCE`` seconds, so the ``expired`` address list and, in
API-only mode, the PPP secrets follow within seconds instead of at the 15-minute beat.
"""
from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

#: Error-Cause 503 (Session-Context-Not-Found): the NAS has no such session; nothing to kick.
SESSION_NOT_FOUND = 503


def cut_off_on_commit(customer_id: int, reason: str) -> None:
    """After commit: end the customer's live sessions (Disconnect-Request, router API fallback)."""
    from .tasks import cut_off_access

    transaction.on_commit(lambda: cut_off_access.delay(customer_id, reason))


#: At most one status-triggered sync per router in this many seconds (a monthly suspension
#: of thousands of customers queues one sync per router, not thousands).
ROUTER_SYNC_DEBOUNCE = 10


def refresh_routers_on_commit(tenant_id: int) -> None:
    """After commit: queue a (debounced) sync of the tenant's API-managed MikroTik routers."""
    transaction.on_commit(lambda: queue_router_syncs(tenant_id))


def queue_router_syncs(tenant_id: int) -> list[int]:
    """Queue ``mikrotik.sync_router`` for each API-managed router of the tenant unless one was
    queued in the last ROUTER_SYNC_DEBOUNCE seconds; returns the router ids queued."""
    try:
        from mikrotik.models import RouterSyncRun
        from mikrotik.tasks import sync_router
    except ImportError:
        return []
    from django.core.cache import cache

    from .models import Nas

    queued = []
    routers = (Nas.objects.filter(tenant_id=tenant_id, is_active=True, nas_type=Nas.NasType.MIKROTIK)
               .exclude(api_username="").values_list("id", flat=True))
    for nas_id in routers:
        if cache.add(f"isp:router-sync-soon:{nas_id}", 1, timeout=ROUTER_SYNC_DEBOUNCE):
            sync_router.apply_async((nas_id, RouterSyncRun.Trigger.CUSTOMER), countdown=ROUTER_SYNC_DEBOUNCE)
            queued.append(nas_id)
    return queued


def refresh_speed_on_commit(customer_id: int) -> None:
    """After commit: push the customer's new rate limit to its live sessions (CoA)."""
    from .tasks import refresh_speed

    transaction.on_commit(lambda: refresh_speed.delay(customer_id))


def _api_capable(nas: Any) -> bool:
    from .models import Nas

    return bool(nas is not None and nas.is_active and nas.nas_type == Nas.NasType.MIKROTIK and nas.api_username)


def _needs_kick(request: Any) -> bool:
    """A Disconnect-Request that did not end the session on the NAS."""
    if request.result == "ack":
        return False
    return not (request.result == "nak" and request.error_cause == SESSION_NOT_FOUND)


def _api_only_routers(customer: Any) -> list[Any]:
    try:
        from mikrotik.models import RouterSettings
    except ImportError:
        return []
    from .models import Nas

    return list(
        Nas.objects.filter(
            tenant_id=customer.tenant_id, is_active=True, nas_type=Nas.NasType.MIKROTIK,
            mikrotik_settings__access_mode=RouterSettings.AccessMode.API_ONLY,
        ).exclude(api_username="")
    )


def kick(nas: Any, username: str) -> str:
    """Remove ``username``'s live sessions through the router API: 'kicked', 'none', 'error: ...'
    or 'unavailable' (no MikroTik module / no API user). Never raises: a router that cannot be
    reached is logged and reported, the RADIUS side has already done what it could."""
    if not _api_capable(nas):
        return "unavailable"
    try:
        from mikrotik.client import RouterError
        from mikrotik.services import kick_session
    except ImportError:
        return "unavailable"
    try:
        return "kicked" if kick_session(nas, username) else "none"
    except (RouterError, OSError) as exc:
        log.warning("router-API kick of %s on NAS %s failed: %s", username, nas.pk, exc)
        return f"error: {exc}"


def cut_off(customer, reason: str) -> dict:
    """End every live session of `customer`. Returns what was attempted, per channel:
    ``{"radius": [results], "router_api": {nas_id: outcome}, "verify_in": seconds}``."""
    outcome: dict[str, Any] = {}
    kicks: dict[int, tuple[Any, str]] = {}
    acked = False
    try:
        from radius.services import disconnect_customer
    except ImportError:
        log.warning("no RADIUS disconnect service installed; %s stays online until its session ends", customer)
        outcome["radius"] = "unavailable"
    else:
        requests = disconnect_customer(customer, reason)
        outcome["radius"] = [request.result for request in requests]
        for request in requests:
            if request.result == "ack":
                acked = True
            if _needs_kick(request) and request.session is not None:
                kicks.setdefault(request.nas_id, (request.nas, request.session.username))
    for nas in _api_only_routers(customer):
        kicks.setdefault(nas.pk, (nas, customer.username))
    queue_router_syncs(customer.tenant_id)
    if kicks:
        outcome["router_api"] = {nas_id: kick(nas, username) for nas_id, (nas, username) in kicks.items()}
    if acked:
        from .tasks import verify_cut_off

        delay = getattr(settings, "CUT_OFF_VERIFY_SECONDS", 30)
        verify_cut_off.apply_async((customer.pk,), countdown=delay)
        outcome["verify_in"] = delay
    return outcome


def verify_cut_off(customer) -> dict:
    """Kick, through the router API, sessions that survived an ACKed Disconnect-Request.

    Runs ``CUT_OFF_VERIFY_SECONDS`` after :func:`cut_off`. Does nothing if the customer
    is allowed online again meanwhile (paid, reactivated) or every session has ended."""
    from radius.models import AccountingSession

    from .models import Customer

    if customer.status == Customer.Status.ACTIVE:
        return {}
    survivors = (
        AccountingSession.objects.filter(customer_id=customer.pk, stopped_at__isnull=True)
        .select_related("nas").order_by("started_at")
    )
    result: dict[int, str] = {}
    for session in survivors:
        if session.nas_id not in result:
            result[session.nas_id] = kick(session.nas, session.username)
    return result


def refresh_speed(customer) -> dict:
    try:
        from radius.services import change_rate
    except ImportError:
        log.warning("no RADIUS CoA service installed; %s keeps its old speed until it reconnects", customer)
        return {"radius": "unavailable"}
    return {"radius": change_rate(customer)}
