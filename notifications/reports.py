"""Delivery-report storage: receipts in, part states updated, messages rolled up,
failed messages refunded.

``store_receipt`` is what a provider's ``on_receipt`` calls (from its I/O thread): one
INSERT, committed before the provider acknowledges the receipt. Matching is batched by
the workers (:func:`apply_reports`), and also done when parts are written
(:func:`match_parts`, for receipts that beat the submit_sm_resp).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from ispcore.core.bulk import bulk_set

from . import credit
from .models import DeliveryReport, Message, MessagePart

log = logging.getLogger(__name__)

P = MessagePart.State
M = Message.State

#: receipt ``stat`` -> part state. DELETED counts as undelivered (never reached the handset).
STAT_STATES = {
    "DELIVRD": P.DELIVERED, "DELIVERED": P.DELIVERED, "UNDELIV": P.UNDELIVERED, "UNDELIVERABLE": P.UNDELIVERED,
    "EXPIRED": P.EXPIRED, "REJECTD": P.REJECTED, "REJECTED": P.REJECTED, "DELETED": P.UNDELIVERED,
    "ENROUTE": P.SENT, "ACCEPTD": P.SENT, "ACCEPTED": P.SENT, "UNKNOWN": P.UNKNOWN,
}
#: SMPP 3.4 message_state TLV values (5.2.28), preferred over the text when present.
MESSAGE_STATES = {1: P.SENT, 2: P.DELIVERED, 3: P.EXPIRED, 4: P.UNDELIVERED, 5: P.UNDELIVERED, 6: P.SENT,
                  7: P.UNKNOWN, 8: P.REJECTED}

FINAL_PART = {P.DELIVERED, P.UNDELIVERED, P.EXPIRED, P.REJECTED, P.UNKNOWN}
FAILED_PART = (P.REJECTED, P.UNDELIVERED, P.EXPIRED)  # severity order for the roll-up
_PROGRESS = {P.QUEUED: 0, P.SUBMITTED: 1, P.SENT: 2, P.UNKNOWN: 3, P.EXPIRED: 3, P.UNDELIVERED: 3, P.REJECTED: 3,
             P.DELIVERED: 3}
FAILED_MESSAGE = {M.UNDELIVERED, M.EXPIRED, M.REJECTED, M.FAILED, M.BLOCKED, M.CANCELLED}
FINAL_MESSAGE = FAILED_MESSAGE | {M.DELIVERED, M.UNKNOWN}


def match_window() -> timedelta:
    """How far back a receipt may match a part (provider ids are recycled)."""
    return timedelta(days=float(getattr(settings, "SMS_DLR_MATCH_DAYS", 3)))


def receipt_state(stat: str | None, message_state: int | None) -> str:
    if message_state in MESSAGE_STATES:
        return MESSAGE_STATES[message_state]
    return STAT_STATES.get((stat or "").strip().upper(), P.UNKNOWN)


def store_receipt(provider: str, receipt) -> DeliveryReport:
    """Persist one receipt (a ``notifications.smpp.DeliveryReceipt``) as received.

    Committed before it returns (the provider acknowledges the receipt only then); raises
    on a database error, so the SMPP client answers the deliver_sm with an error and the
    SMSC redelivers it: a receipt is never acknowledged and then lost by a worker crash.
    With ``SMS_RECEIPT_ASYNC_COMMIT`` (default on) the commit does not wait for the WAL
    flush: a crash of PostgreSQL itself (not of the worker) could lose the last fraction
    of a second of receipts; the cost per receipt drops from a disk flush to a round trip.
    """
    fields = dict(
        provider=provider, message_id=(receipt.message_id or "")[:80], message_key=(receipt.message_key or "")[:80],
        stat=(receipt.stat or "")[:16], err=(receipt.err or "")[:16],
        state=receipt_state(receipt.stat, receipt.message_state),
        recipient=(receipt.source_addr or "")[:21], done_at=receipt.done_date, received_at=receipt.received_at,
        raw=(receipt.raw or "")[:1000],
    )
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return DeliveryReport.objects.create(**fields)
    # One autocommit INSERT: a single round trip on the I/O thread's own connection.
    connection.ensure_connection()
    raw = connection.connection
    with connection.cursor() as cursor:
        if getattr(settings, "SMS_RECEIPT_ASYNC_COMMIT", True) and _ASYNC_SESSIONS.get(id(raw)) is not raw:
            cursor.execute("SET synchronous_commit TO off")
            _ASYNC_SESSIONS[id(raw)] = raw
        cursor.execute(_INSERT_SQL, [fields[c] for c in _INSERT_COLUMNS])
        pk = cursor.fetchone()[0]
    return DeliveryReport(pk=pk, **fields)


_INSERT_COLUMNS = ("provider", "message_id", "message_key", "stat", "err", "state", "recipient", "done_at",
                   "received_at", "raw")
_INSERT_SQL = (f"INSERT INTO {DeliveryReport._meta.db_table} ({', '.join(_INSERT_COLUMNS)}, processed) "
               f"VALUES ({', '.join(['%s'] * len(_INSERT_COLUMNS))}, false) RETURNING id")
_ASYNC_SESSIONS: dict[int, object] = {}


def _advance(current: str, new: str) -> bool:
    """A receipt moves a part forward only (a late ENROUTE never undoes DELIVRD)."""
    return _PROGRESS.get(new, 0) > _PROGRESS.get(current, 0) or (current == new == P.SENT)


#: an unmatched receipt is retried this long: its part may be in a transaction that has
#: not committed yet (it raced the submit result), after that it waits for recovery.
RETRY_UNMATCHED = timedelta(seconds=30)


def apply_reports(limit: int = 2000) -> int:
    """Match a batch of unprocessed receipts to parts; returns how many were matched."""
    now = timezone.now()
    with transaction.atomic():
        reports = list(DeliveryReport.objects.select_for_update(skip_locked=True)
                       .filter(processed=False).order_by("id")[:limit])
        if not reports:
            return 0
        matched = _match(reports)
        done = [r.pk for r in reports if r.pk in matched or r.received_at < now - RETRY_UNMATCHED]
        DeliveryReport.objects.filter(pk__in=done).update(processed=True)
    return len(matched)


def match_parts(parts: Iterable[MessagePart]) -> int:
    """Apply receipts that arrived before these parts were written (early DLRs)."""
    by_provider: dict[str, list[str]] = defaultdict(list)
    for part in parts:
        if part.message_key:
            by_provider[part.provider].append(part.message_key)
    found: list[DeliveryReport] = []
    since = timezone.now() - match_window()
    for provider, keys in by_provider.items():
        found.extend(DeliveryReport.objects.select_for_update()
                     .filter(provider=provider, message_key__in=keys, part__isnull=True, received_at__gte=since)
                     .order_by("id"))
    if found:
        _match(found)
    return len(found)


def _match(reports: list[DeliveryReport]) -> set[int]:
    keys: dict[str, set[str]] = defaultdict(set)
    for r in reports:
        if r.message_key and r.part_id is None:
            keys[r.provider].add(r.message_key)
    # Providers recycle ids: only parts of the last SMS_DLR_MATCH_DAYS count, the newest wins.
    parts: dict[tuple[str, str], MessagePart] = {}
    since = timezone.now() - match_window()
    for provider, ks in keys.items():
        for part in (MessagePart.objects.select_for_update()
                     .filter(provider=provider, message_key__in=ks, submitted_at__gte=since).order_by("id")):
            parts[(provider, part.message_key)] = part
    now = timezone.now()
    changed: dict[int, MessagePart] = {}
    matched: list[DeliveryReport] = []
    for r in reports:
        part = parts.get((r.provider, r.message_key))
        if part is None:
            continue
        r.part_id, r.matched_at, r.processed = part.pk, now, True
        matched.append(r)
        if _advance(part.state, r.state):
            part.state = r.state
            part.error = r.err
            changed[part.pk] = part
    if matched:
        bulk_set(matched, ["part", "matched_at", "processed"])
    if changed:
        for part in changed.values():
            part.updated_at = now
        bulk_set(list(changed.values()), ["state", "error", "updated_at"])
        rollup({p.message_id for p in changed.values()})
    return {r.pk for r in matched}


def rollup_state(part_states: list[str], expected_parts: int) -> str:
    """One message's state from its parts' states."""
    if not part_states:
        return M.SUBMITTED
    if len(part_states) == expected_parts and all(s == P.DELIVERED for s in part_states):
        return M.DELIVERED
    pending = [s for s in part_states if s not in FINAL_PART]
    if not pending and len(part_states) == expected_parts:
        for failed in FAILED_PART:
            if failed in part_states:
                return failed
        return M.UNKNOWN
    if any(s in (P.SENT, P.DELIVERED) for s in part_states):
        return M.SENT
    return M.SUBMITTED


def rollup(message_ids: Iterable[int]) -> None:
    """Recompute the state of these (already submitted) messages from their parts and
    refund those that failed with no part delivered. Runs in the caller's transaction."""
    ids = sorted(set(message_ids))
    if not ids:
        return
    states: dict[int, list[str]] = defaultdict(list)
    for mid, state in MessagePart.objects.filter(message_id__in=ids).values_list("message_id", "state"):
        states[mid].append(state)
    now = timezone.now()
    messages = list(Message.objects.select_for_update().filter(pk__in=ids)
                    .exclude(state__in=[M.QUEUED, M.SUBMITTING, M.CANCELLED, M.BLOCKED, M.FAILED]))
    updated: list[Message] = []
    refund_held: dict[int, list] = defaultdict(list)
    refund_spent: dict[int, list] = defaultdict(list)
    for m in messages:
        new = rollup_state(states.get(m.pk, []), m.parts)
        if new == m.state:
            continue
        m.state = new
        if new in FINAL_MESSAGE:
            m.finished_at = now
        if new in FAILED_MESSAGE and m.refunded_at is None and P.DELIVERED not in states.get(m.pk, []) and m.cost:
            m.refunded_at = now
            (refund_spent if m.charged_at else refund_held)[m.tenant_id].append((m.pk, m.cost))
        updated.append(m)
    if updated:
        bulk_set(updated, ["state", "finished_at", "refunded_at"])
    for tenant_id in set(refund_held) | set(refund_spent):
        credit.settle(tenant_id, refund_held=refund_held.get(tenant_id, []),
                      refund_spent=refund_spent.get(tenant_id, []))
