"""Delivery-report storage: receipts in, part states updated, messages rolled up,
failed messages refunded.

Receipts are stored before they are acknowledged. On an SMPP bind the worker's
:class:`ReceiptWriter` does it by group commit: the I/O thread hands each receipt over and
goes on reading; the writer thread INSERTs everything that queued up meanwhile in one
statement, commits (durably unless ``SMS_RECEIPT_ASYNC_COMMIT``), and only then are the
deliver_sm_resps written. HTTP webhooks call :func:`store_receipt` (one INSERT, committed
before it returns). Matching is batched by the workers (:func:`apply_reports`), and also
done when parts are written (:func:`match_parts`, for receipts that beat the
submit_sm_resp).
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

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
    Durable by default; with ``SMS_RECEIPT_ASYNC_COMMIT`` the commit does not wait for the
    WAL flush (a crash of PostgreSQL itself could then lose the last fraction of a second
    of acknowledged receipts).
    """
    fields = _fields(provider, receipt)
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return DeliveryReport.objects.create(**fields)
    # One autocommit INSERT: a single round trip on the I/O thread's own connection.
    connection.ensure_connection()
    with connection.cursor() as cursor:
        _set_commit_mode(cursor)
        cursor.execute(_INSERT_SQL, [fields[c] for c in _INSERT_COLUMNS])
        pk = cursor.fetchone()[0]
    return DeliveryReport(pk=pk, **fields)


def pg_array(values) -> str:
    """A PostgreSQL array literal for ints, strings, bools, datetimes and None, built with
    str methods: psycopg's client-side adaptation of big lists (Django binds on the
    client) was the workers' largest single CPU cost (sampled). Every element is quoted
    and escaped, so any text is safe; the SQL casts the literal (``%s::varchar[]``)."""
    out = []
    for v in values:
        if v is None:
            out.append("NULL")
        elif v is True or v is False:
            out.append("t" if v else "f")
        elif isinstance(v, int):
            out.append(str(v))
        else:
            text = v.isoformat() if hasattr(v, "isoformat") else str(v)
            out.append('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(out) + "}"


def execute_arrays(cursor, sql: str, params: Sequence = ()) -> None:
    """``cursor.execute`` with every list/tuple parameter sent as one array literal."""
    cursor.execute(sql, [pg_array(p) if isinstance(p, list | tuple) else p for p in params])


def async_commit() -> bool:
    return bool(getattr(settings, "SMS_RECEIPT_ASYNC_COMMIT", False))


def _set_commit_mode(cursor) -> None:
    """Set the session's synchronous_commit to what SMS_RECEIPT_ASYNC_COMMIT asks, once per
    database session (the setting is read each time, so tests can flip it)."""
    raw = connection.connection
    wanted = "off" if async_commit() else "on"
    if _SESSION_MODE.get(id(raw)) != (raw, wanted):
        cursor.execute(f"SET synchronous_commit TO {wanted}")
        _SESSION_MODE[id(raw)] = (raw, wanted)


def _fields(provider: str, receipt) -> dict:
    return dict(
        provider=provider, message_id=(receipt.message_id or "")[:80], message_key=(receipt.message_key or "")[:80],
        stat=(receipt.stat or "")[:16], err=(receipt.err or "")[:16],
        state=receipt_state(receipt.stat, receipt.message_state),
        recipient=(receipt.source_addr or "")[:21], done_at=receipt.done_date, received_at=receipt.received_at,
        raw=(receipt.raw or "")[:1000],
    )


_INSERT_COLUMNS = ("provider", "message_id", "message_key", "stat", "err", "state", "recipient", "done_at",
                   "received_at", "raw")
_INSERT_TYPES = ("varchar", "varchar", "varchar", "varchar", "varchar", "varchar", "varchar", "timestamptz",
                 "timestamptz", "text")
_INSERT_SQL = (f"INSERT INTO {DeliveryReport._meta.db_table} ({', '.join(_INSERT_COLUMNS)}, processed) "
               f"VALUES ({', '.join(['%s'] * len(_INSERT_COLUMNS))}, false) RETURNING id")
_INSERT_MANY_SQL = (f"INSERT INTO {DeliveryReport._meta.db_table} ({', '.join(_INSERT_COLUMNS)}, processed) "
                    f"SELECT *, false FROM unnest({', '.join(f'%s::{t}[]' for t in _INSERT_TYPES)})")
_SESSION_MODE: dict[int, tuple[object, str]] = {}


def store_receipts(items: Sequence[tuple[str, object]]) -> int:
    """Persist many (provider name, receipt) pairs in ONE statement, committed (durably
    unless SMS_RECEIPT_ASYNC_COMMIT) before it returns. Raises on a database error, in
    which case none of them is stored."""
    if not items:
        return 0
    rows = [_fields(provider, receipt) for provider, receipt in items]
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        DeliveryReport.objects.bulk_create([DeliveryReport(**r) for r in rows])
        return len(rows)
    connection.ensure_connection()
    with connection.cursor() as cursor:
        _set_commit_mode(cursor)
        execute_arrays(cursor, _INSERT_MANY_SQL, [[r[c] for r in rows] for c in _INSERT_COLUMNS])
    return len(rows)


class ReceiptWriter:
    """Group commit for delivery receipts, one per worker process, on its own thread and
    database connection.

    :meth:`submit` queues a receipt and returns a Future at once; the writer stores
    everything queued so far with :func:`store_receipts` (one INSERT, one commit) and then
    resolves every future of that batch: the SMPP client writes the deliver_sm_resps only
    then (a failed batch resolves them with the error: answered ESME_RX_T_APPN, the SMSC
    redelivers). So a receipt is durable before it is acknowledged, at one commit per
    batch instead of one per receipt, and the I/O thread never waits for the database.
    The batch grows by itself with the load: what arrives during one commit is the next
    batch."""

    def __init__(self, *, max_batch: int = 2000):
        self.max_batch = max_batch
        self._queue: list[tuple[str, object, Future]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches = 0
        self.stored = 0

    def submit(self, provider: str, receipt) -> Future:
        future: Future = Future()
        with self._cond:
            self._queue.append((provider, receipt, future))
            if self._thread is None:
                self._start()
            self._cond.notify()
        return future

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sms-receipt-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Store what is queued, then end the thread (a later :meth:`submit` starts a new one;
        receipts that came in while it was ending are taken by a new one at once)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            if thread is None or not thread.is_alive():
                self._stopping, self._thread = False, None
                if self._queue:
                    self._start()

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if not self._queue:
                        return
                    batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
                self._write(batch)
        finally:
            connection.close()

    def _write(self, batch: list[tuple[str, object, Future]]) -> None:
        try:
            store_receipts([(provider, receipt) for provider, receipt, _ in batch])
        except Exception as exc:
            log.warning("storing %d receipts failed (the SMSC will redeliver them): %s", len(batch), exc)
            connection.close()  # a broken connection is reopened for the next batch
            for _, _, future in batch:
                future.set_exception(exc)
            return
        self.batches += 1
        self.stored += len(batch)
        for _, _, future in batch:
            future.set_result(None)


_WRITER: ReceiptWriter | None = None
_WRITER_LOCK = threading.Lock()


def receipt_writer() -> ReceiptWriter:
    """The process's receipt writer (shared by every SMPP route of every sender in it)."""
    global _WRITER
    with _WRITER_LOCK:
        if _WRITER is None:
            _WRITER = ReceiptWriter()
        return _WRITER


def _advance(current: str, new: str) -> bool:
    """A receipt moves a part forward only (a late ENROUTE never undoes DELIVRD)."""
    return _PROGRESS.get(new, 0) > _PROGRESS.get(current, 0) or (current == new == P.SENT)


#: an unmatched receipt is retried this long: its part may be in a transaction that has
#: not committed yet (it raced the submit result), after that it waits for recovery.
RETRY_UNMATCHED = timedelta(seconds=30)


_DLR = DeliveryReport._meta.db_table
_PART = MessagePart._meta.db_table
_MSG = Message._meta.db_table


def apply_reports(limit: int = 2000) -> int:
    """Match a batch of unprocessed receipts to parts; returns how many were matched.

    A handful of statements per batch, whatever its size: the receipts (SKIP LOCKED, so
    workers share the backlog), their parts, the part states, the receipts' links and
    the roll-up of the messages that changed."""
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        execute_arrays(
            cursor,
            f"""SELECT id, provider, message_key, state, err, received_at FROM {_DLR}
                WHERE processed = false ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""", [limit])
        rows = cursor.fetchall()
        if not rows:
            return 0
        matched = _match_rows(cursor, [r[:5] for r in rows], now)
        stale = now - RETRY_UNMATCHED
        aside = [r[0] for r in rows if r[0] not in matched and r[5] < stale]
        if aside:
            execute_arrays(cursor, f"UPDATE {_DLR} SET processed = true WHERE id = ANY(%s)", [aside])
    return len(matched)


def match_parts(parts: Iterable[MessagePart]) -> int:
    """Apply receipts that arrived before these parts were written (early DLRs)."""
    return match_keys((part.provider, part.message_key) for part in parts)


def match_keys(keys: Iterable[tuple[str, str]]) -> int:
    """Apply the stored, unmatched receipts for these (provider, message_key) pairs
    (receipts that beat the submit result). Runs in the caller's transaction."""
    providers, values = [], []
    for provider, key in keys:
        if key:
            providers.append(provider)
            values.append(key)
    if not values:
        return 0
    since = timezone.now() - match_window()
    with connection.cursor() as cursor:
        # LATERAL: one index probe per key, whatever the planner thinks of the table's size
        # (a join on unnest became a sort of the whole table with stale statistics)
        execute_arrays(
            cursor,
            f"""SELECT d.id FROM unnest(%s::varchar[], %s::varchar[]) AS k(provider, message_key)
                CROSS JOIN LATERAL (SELECT id FROM {_DLR} d WHERE d.provider = k.provider
                                      AND d.message_key = k.message_key AND d.part_id IS NULL
                                      AND d.received_at >= %s) AS d""",
            [providers, values, since])
        ids = [row[0] for row in cursor.fetchall()]
        if not ids:
            return 0
        execute_arrays(cursor, f"""SELECT id, provider, message_key, state, err FROM {_DLR}
                           WHERE id = ANY(%s) AND part_id IS NULL ORDER BY id FOR UPDATE""", [ids])
        found = cursor.fetchall()
        if found:
            _match_rows(cursor, found, timezone.now())
    return len(found)


def stored_receipts(cursor, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[tuple]]:
    """The stored receipts no part owns yet for these (provider, message_key) pairs,
    locked, in id order: ``{(provider, key): [(receipt id, state, err), ...]}`` (for a
    sender writing the parts of a batch: receipts that beat the submit result)."""
    keys = [(p, k) for p, k in keys if k]
    if not keys:
        return {}
    execute_arrays(
        cursor,
        f"""SELECT d.id FROM unnest(%s::varchar[], %s::varchar[]) AS k(provider, message_key)
            CROSS JOIN LATERAL (SELECT id FROM {_DLR} d WHERE d.provider = k.provider
                                  AND d.message_key = k.message_key AND d.part_id IS NULL
                                  AND d.received_at >= %s) AS d""",
        [[p for p, _ in keys], [k for _, k in keys], timezone.now() - match_window()])
    ids = [row[0] for row in cursor.fetchall()]
    found: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    if ids:
        execute_arrays(cursor, f"""SELECT id, provider, message_key, state, err FROM {_DLR}
                           WHERE id = ANY(%s) AND part_id IS NULL ORDER BY id FOR UPDATE""", [ids])
        for rid, provider, key, state, err in cursor.fetchall():
            found[(provider, key)].append((rid, state, err))
    return found


def advance_part(state: str, error: str, receipts: Iterable[tuple]) -> tuple[str, str]:
    """A part's (state, error) after these receipts ``(id, state, err)``, in order."""
    for _, new, err in receipts:
        if _advance(state, new):
            state, error = new, err or ""
    return state, error


_PROGRESS_SQL = "CASE {col} WHEN 'queued' THEN 0 WHEN 'submitted' THEN 1 WHEN 'sent' THEN 2 ELSE 3 END"


def _match_rows(cursor, reports: list[tuple], now) -> set[int]:
    """Link receipts ``(id, provider, message_key, state, err)`` (in id order) to their
    parts: the newest part of the last SMS_DLR_MATCH_DAYS with the key (providers
    recycle ids), locked in id order; each part moves forward only; the messages whose
    parts changed are rolled up. Returns the ids of the receipts matched."""
    providers, keys = [], []
    seen = set()
    for _, provider, key, _, _ in reports:
        if key and (provider, key) not in seen:
            seen.add((provider, key))
            providers.append(provider)
            keys.append(key)
    if not keys:
        return set()
    # the newest part per key (one index probe each, LATERAL), then those parts locked in id order
    execute_arrays(
        cursor,
        f"""SELECT k.provider, k.message_key, p.id FROM unnest(%s::varchar[], %s::varchar[]) AS k(provider, message_key)
            CROSS JOIN LATERAL (SELECT id FROM {_PART} p WHERE p.provider = k.provider
                                  AND p.message_key = k.message_key AND p.submitted_at >= %s
                                ORDER BY id DESC LIMIT 1) AS p""",
        [providers, keys, now - match_window()])
    newest = {row[2]: (row[0], row[1]) for row in cursor.fetchall()}
    if not newest:
        return set()
    execute_arrays(cursor, f"SELECT id, state, message_id FROM {_PART} WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
                   [list(newest)])
    parts: dict[tuple[str, str], list] = {}
    for pid, state, message_id in cursor.fetchall():
        parts[newest[pid]] = [pid, state, message_id, None]
    matched_ids, matched_parts = [], []
    changed: dict[int, list] = {}
    for rid, provider, key, state, err in reports:
        part = parts.get((provider, key))
        if part is None:
            continue
        matched_ids.append(rid)
        matched_parts.append(part[0])
        if _advance(part[1], state):
            part[1], part[3] = state, err or ""
            changed[part[0]] = part
    if matched_ids:
        execute_arrays(
            cursor,
            f"""UPDATE {_DLR} AS d SET part_id = v.part_id, matched_at = %s, processed = true
                FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, part_id) WHERE d.id = v.id""",
            [now, matched_ids, matched_parts])
    if changed:
        rows = sorted(changed.values())
        execute_arrays(
            cursor,
            f"""UPDATE {_PART} AS p SET state = v.state, error = v.error, updated_at = %s
                FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[]) AS v(id, state, error)
                WHERE p.id = v.id AND ({_PROGRESS_SQL.format(col='v.state')} > {_PROGRESS_SQL.format(col='p.state')}
                                       OR (p.state = 'sent' AND v.state = 'sent'))""",
            [now, [r[0] for r in rows], [r[1] for r in rows], [r[3][:120] for r in rows]])
        rollup({r[2] for r in rows})
    return set(matched_ids)


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
    refund those that failed with no part delivered. Runs in the caller's transaction;
    three statements whatever the number of messages."""
    ids = sorted(set(message_ids))
    if not ids:
        return
    now = timezone.now()
    with connection.cursor() as cursor:
        execute_arrays(
            cursor,
            f"""SELECT id, state, parts, cost, charged_at, refunded_at, tenant_id FROM {_MSG}
                WHERE id = ANY(%s) AND state <> ALL(%s) ORDER BY id FOR UPDATE""",
            [ids, [M.QUEUED, M.SUBMITTING, M.CANCELLED, M.BLOCKED, M.FAILED]])
        messages = cursor.fetchall()
        if not messages:
            return
        execute_arrays(cursor, f"""SELECT i.id, p.states FROM unnest(%s::bigint[]) AS i(id)
                           CROSS JOIN LATERAL (SELECT array_agg(state) AS states FROM {_PART}
                                               WHERE message_id = i.id) AS p""", [[m[0] for m in messages]])
        states: dict[int, list[str]] = {mid: found or [] for mid, found in cursor.fetchall()}
        upd_ids, upd_states, upd_finished, upd_refunded = [], [], [], []
        refund_held: dict[int, list] = defaultdict(list)
        refund_spent: dict[int, list] = defaultdict(list)
        for mid, state, parts, cost, charged_at, refunded_at, tenant_id in messages:
            part_states = states.get(mid, [])
            new = rollup_state(part_states, parts)
            if new == state:
                continue
            finished = now if new in FINAL_MESSAGE else None
            if new in FAILED_MESSAGE and refunded_at is None and P.DELIVERED not in part_states and cost:
                refunded_at = now
                (refund_spent if charged_at else refund_held)[tenant_id].append((mid, cost))
            upd_ids.append(mid)
            upd_states.append(new)
            upd_finished.append(finished)
            upd_refunded.append(refunded_at)
        if upd_ids:
            execute_arrays(
                cursor,
                f"""UPDATE {_MSG} AS m SET state = v.state, finished_at = COALESCE(v.finished_at, m.finished_at),
                           refunded_at = v.refunded_at
                    FROM unnest(%s::bigint[], %s::varchar[], %s::timestamptz[], %s::timestamptz[])
                         AS v(id, state, finished_at, refunded_at)
                    WHERE m.id = v.id""", [upd_ids, upd_states, upd_finished, upd_refunded])
    for tenant_id in set(refund_held) | set(refund_spent):
        credit.settle(tenant_id, refund_held=refund_held.get(tenant_id, []),
                      refund_spent=refund_spent.get(tenant_id, []))
