"""RADIUS services: dynamic authorization (Disconnect/CoA) towards the NAS that
holds a session, closing stale sessions, and trimming the authentication log.

Network I/O never happens inside a database transaction: the sessions are
read, the requests sent, then the outcome is written."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ispcore.core import audit

from . import client, crypto
from .auth import MIKROTIK_RATE_LIMIT
from .models import AccountingSession, AuthLog, DynamicAuthRequest
from .packet import ipv4
from .snapshot import publish_usage

logger = logging.getLogger(__name__)

#: Error-Cause 503: the NAS does not know the session.
SESSION_CONTEXT_NOT_FOUND = 503


def open_sessions(customer) -> list[AccountingSession]:
    return list(
        AccountingSession.objects.filter(customer_id=customer.pk, stopped_at__isnull=True)
        .select_related("nas")
        .order_by("started_at")
    )


def _identity(session: AccountingSession) -> list:
    attrs = [(1, session.username.encode()), (44, session.acct_session_id.encode())]
    if session.framed_ip_address and ":" not in session.framed_ip_address:
        attrs.append((8, ipv4(session.framed_ip_address)))
    return attrs


def _send(session: AccountingSession, code: int, extra: list) -> client.DynAuthResult:
    nas = session.nas
    if nas is None:
        return client.DynAuthResult("error", 0, detail="the session's NAS no longer exists")
    return client.send_request(
        nas.ip_address,
        nas.coa_port,
        nas.secret.encode(),
        code,
        _identity(session) + extra,
        timeout=getattr(settings, "RADIUS_COA_TIMEOUT", 2.0),
        retries=getattr(settings, "RADIUS_COA_RETRIES", 3),
    )


def _record(kind: str, customer, session: AccountingSession, result: client.DynAuthResult, reason: str, actor,
            attributes: dict) -> DynamicAuthRequest:
    with transaction.atomic():
        row = DynamicAuthRequest.objects.create(
            tenant_id=session.tenant_id, nas_id=session.nas_id, customer_id=customer.pk, session=session, kind=kind,
            reason=reason[:120], result=result.result, error_cause=result.error_cause, attempts=result.attempts,
            attributes=attributes,
        )
        audit.record(f"radius.{kind}", customer, actor=actor, session=session.acct_session_id, result=result.result,
                     error_cause=result.error_cause, reason=reason)
        if kind == DynamicAuthRequest.Kind.DISCONNECT and result.result == "nak" and (
            result.error_cause == SESSION_CONTEXT_NOT_FOUND
        ):
            # The NAS does not have it: the session is stale, close it (history kept).
            AccountingSession.objects.filter(pk=session.pk, stopped_at__isnull=True).update(
                stopped_at=timezone.now(), terminate_cause="Session-Not-Found"
            )
            transaction.on_commit(lambda: publish_usage([customer.pk]))
    return row


def disconnect_customer(customer, reason: str, *, actor=None) -> list[DynamicAuthRequest]:
    """Send a Disconnect-Request for each open session of ``customer`` to the NAS
    holding it (User-Name, Acct-Session-Id and Framed-IP-Address), and record
    each ACK/NAK/timeout. The sessions close when the NAS sends its Stop; a NAK
    saying the NAS does not know the session closes it here."""
    results = []
    for session in open_sessions(customer):
        result = _send(session, crypto.DISCONNECT_REQUEST, [])
        if not result.ok:
            logger.warning("disconnect of %s session %s: %s %s", session.username, session.acct_session_id,
                           result.result, result.error_cause or result.detail)
        results.append(_record(DynamicAuthRequest.Kind.DISCONNECT, customer, session, result, reason, actor, {}))
    return results


def change_rate(customer, *, actor=None) -> list[DynamicAuthRequest]:
    """Send a CoA-Request with the customer's current Mikrotik-Rate-Limit to each
    open session's NAS, so a package change applies without a reconnect."""
    from ispcore.subscribers.models import Customer

    fresh = Customer.objects.select_related("package").get(pk=customer.pk)
    rate = fresh.package.rate_limit if fresh.package else ""
    if not rate:
        return []
    results = []
    for session in open_sessions(fresh):
        result = _send(session, crypto.COA_REQUEST, [(MIKROTIK_RATE_LIMIT, rate.encode())])
        results.append(_record(DynamicAuthRequest.Kind.COA, fresh, session, result, "rate change", actor,
                               {"Mikrotik-Rate-Limit": rate}))
    return results


def close_stale_sessions(*, now: datetime | None = None, intervals: int | None = None) -> int:
    """Close open sessions with no accounting for ``intervals`` interim intervals
    (their own Acct-Interim-Interval, else ``RADIUS_INTERIM_INTERVAL``, at least
    60 s). They end at their last update; nothing is deleted. Returns how many."""
    now = now or timezone.now()
    intervals = intervals or getattr(settings, "RADIUS_STALE_INTERVALS", 3)
    default = getattr(settings, "RADIUS_INTERIM_INTERVAL", 300)
    open_rows = AccountingSession.objects.filter(stopped_at__isnull=True)
    closed = 0
    customers: set[int] = set()
    for interval in open_rows.values_list("interim_interval", flat=True).distinct():
        seconds = max(interval or default, 60) * intervals
        stale = open_rows.filter(interim_interval=interval, updated_at__lt=now - timedelta(seconds=seconds))
        with transaction.atomic():
            customers.update(c for c in stale.values_list("customer_id", flat=True) if c)
            closed += stale.update(stopped_at=F("updated_at"), terminate_cause="Stale-Session")
    if customers:
        publish_usage(sorted(customers))
    return closed


def trim_auth_log(*, keep: int | None = None) -> int:
    """Keep the newest ``keep`` authentication log rows (``RADIUS_AUTH_LOG_MAX``)."""
    keep = keep or getattr(settings, "RADIUS_AUTH_LOG_MAX", 200_000)
    boundary = AuthLog.objects.order_by("-id").values_list("id", flat=True)[keep : keep + 1]
    ids = list(boundary)
    if not ids:
        return 0
    deleted, _ = AuthLog.objects.filter(id__lte=ids[0]).delete()
    return deleted
