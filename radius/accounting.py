"""Durable accounting with group commit, and the local spool for database outages.

The event loop hands each Accounting-Request to :class:`AccountingWriter`
(:meth:`~AccountingWriter.submit`); a writer thread takes everything queued
(up to ``batch_max``), writes it in one transaction and only then calls each
request's callback, which sends the Accounting-Response. So a response never
leaves before its record is committed, and one commit covers hundreds of
requests.

If the database is unreachable, the batch is appended to a spool file (JSON
lines, fsync'd) and acknowledged; spooled records are replayed in order,
before anything new, as soon as the database answers again.

Session rules (:func:`apply_batch`):

* one row per ``unique_id`` (MD5 of NAS id, Acct-Session-Id, User-Name);
* an Interim-Update or Stop without a Start creates the session;
* counters only move forward (an out-of-order interim changes nothing), and
  what they moved is added to the customer's :class:`~radius.models.DailyUsage`;
* a Stop closes the session; anything after it (a duplicate Stop, a late
  interim) is ignored, so usage is never counted twice;
* Accounting-On/Off closes the open sessions of that NAS started before it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path

import psycopg
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from .models import AccountingSession

logger = logging.getLogger(__name__)

START, INTERIM, STOP, ON, OFF = "start", "interim", "stop", "on", "off"
STATUS_TYPES = {1: START, 2: STOP, 3: INTERIM, 7: ON, 8: OFF}

_SESSION_FIELDS = [
    "tenant_id", "nas_id", "customer_id", "acct_session_id", "username", "nas_ip_address", "nas_port_id",
    "framed_ip_address", "calling_station_id", "called_station_id", "started_at", "updated_at", "stopped_at",
    "session_time", "input_octets", "output_octets", "input_packets", "output_packets", "interim_interval",
    "terminate_cause",
]
_PG_TYPES = {
    "unique_id": "text", "tenant_id": "bigint", "nas_id": "bigint", "customer_id": "bigint", "acct_session_id": "text",
    "username": "text", "nas_ip_address": "inet", "nas_port_id": "text", "framed_ip_address": "inet",
    "calling_station_id": "text", "called_station_id": "text", "started_at": "timestamptz",
    "updated_at": "timestamptz", "stopped_at": "timestamptz", "session_time": "bigint", "input_octets": "bigint",
    "output_octets": "bigint", "input_packets": "bigint", "output_packets": "bigint", "interim_interval": "integer",
    "terminate_cause": "text",
}
_COUNTERS = ("session_time", "input_octets", "output_octets", "input_packets", "output_packets")


def session_unique_id(nas_id: int, acct_session_id: str, username: str) -> str:
    return hashlib.md5(f"{nas_id}\x00{acct_session_id}\x00{username}".encode(), usedforsecurity=False).hexdigest()


@dataclass(slots=True)
class AcctRecord:
    """One Accounting-Request, reduced to what is stored (JSON-serialisable)."""

    status: str
    tenant_id: int
    nas_id: int
    event_ts: float
    customer_id: int | None = None
    unique_id: str = ""
    acct_session_id: str = ""
    username: str = ""
    nas_ip_address: str | None = None
    nas_port_id: str = ""
    framed_ip_address: str | None = None
    calling_station_id: str = ""
    called_station_id: str = ""
    session_time: int = 0
    input_octets: int = 0
    output_octets: int = 0
    input_packets: int = 0
    output_packets: int = 0
    interim_interval: int = 0
    terminate_cause: str = ""


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _new_session(r: AcctRecord) -> dict:
    started = _dt(r.event_ts - r.session_time)
    return {
        "tenant_id": r.tenant_id, "nas_id": r.nas_id, "customer_id": r.customer_id,
        "acct_session_id": r.acct_session_id[:253], "username": r.username[:253], "nas_ip_address": r.nas_ip_address,
        "nas_port_id": r.nas_port_id[:253], "framed_ip_address": r.framed_ip_address,
        "calling_station_id": r.calling_station_id[:64], "called_station_id": r.called_station_id[:253],
        "started_at": started, "updated_at": started, "stopped_at": None, "session_time": 0, "input_octets": 0,
        "output_octets": 0, "input_packets": 0, "output_packets": 0, "interim_interval": r.interim_interval,
        "terminate_cause": "",
    }


def apply_batch(records: list[AcctRecord]) -> Touched:
    """Write records in one transaction (call inside ``transaction.atomic``).

    Returns the customer ids whose open sessions or usage changed."""
    touched = Touched()
    segment: list[AcctRecord] = []
    for record in records:
        if record.status in (ON, OFF):
            touched |= _apply_sessions(segment)
            segment = []
            touched |= _close_nas_sessions(record)
        else:
            segment.append(record)
    touched |= _apply_sessions(segment)
    return touched


def _apply_sessions(records: list[AcctRecord]) -> Touched:
    if not records:
        return Touched()
    uids = sorted({r.unique_id for r in records})
    states: dict[str, dict] = {
        row["unique_id"]: row
        for row in AccountingSession.objects.select_for_update()
        .filter(unique_id__in=uids)
        .order_by("unique_id")
        .values("unique_id", *_SESSION_FIELDS)
    }
    rows, usage, touched = _plan(records, states)
    if rows:
        _upsert_sessions(rows)
    if usage:
        _add_daily_usage(usage)
    return touched


class Touched(set):
    """The customers a batch touched (a set of ids), and among them ``sessions``: those
    whose number of open sessions may have changed (a session opened or closed). An
    Interim-Update only moves usage, so it needs no open-session count afterwards."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.sessions: set[int] = set()

    def __ior__(self, other):
        super().__ior__(other)
        self.sessions |= getattr(other, "sessions", other)
        return self


_ZONES: dict[int, tuple[float, tzinfo]] = {}
_ZONE_TTL = 300.0


def tenant_zone(tenant_id: int) -> tzinfo:
    """The tenant's time zone (it decides which day usage counts for), cached for
    five minutes; the server's zone if the tenant is unknown."""
    cached = _ZONES.get(tenant_id)
    now = time.monotonic()
    if cached is not None and cached[0] > now:
        return cached[1]
    from ispcore.accounts.models import Tenant

    tenant = Tenant.objects.only("timezone").filter(pk=tenant_id).first()
    zone = tenant.tzinfo if tenant is not None else timezone.get_default_timezone()
    _ZONES[tenant_id] = (now + _ZONE_TTL, zone)
    return zone


def _plan(records: list[AcctRecord], states: dict[str, dict]) -> tuple[list[dict], dict, Touched]:
    """Apply the session rules to the locked rows ``states`` (unique_id -> row dict, updated
    in place): returns the rows to upsert, the daily usage deltas (by the day in the
    tenant's time zone) and the customers touched."""
    changed: set[str] = set()
    usage: dict[tuple[int, int, date], list[int]] = {}
    touched = Touched()
    opened_or_closed = touched.sessions
    zones: dict[int, tzinfo] = {}
    for r in records:
        state = states.get(r.unique_id)
        if state is None:
            state = _new_session(r)
            state["unique_id"] = r.unique_id
            states[r.unique_id] = state
            changed.add(r.unique_id)
            if r.customer_id:
                touched.add(r.customer_id)
                opened_or_closed.add(r.customer_id)
        if state["stopped_at"] is not None:
            continue  # a duplicate Stop or a late interim: history is final
        event = _dt(r.event_ts)
        deltas = []
        for name in _COUNTERS:
            new = getattr(r, name)
            old = state[name]
            if new > old:
                state[name] = new
                deltas.append(new - old)
            else:
                deltas.append(0)
        if event > state["updated_at"]:
            state["updated_at"] = event
        if r.framed_ip_address and not state["framed_ip_address"]:
            state["framed_ip_address"] = r.framed_ip_address
        if r.interim_interval:
            state["interim_interval"] = r.interim_interval
        if r.customer_id and not state["customer_id"]:
            state["customer_id"] = r.customer_id
        if r.status == STOP:
            state["stopped_at"] = max(event, state["started_at"])
            state["terminate_cause"] = r.terminate_cause[:64]
            if state["customer_id"]:
                touched.add(state["customer_id"])
                opened_or_closed.add(state["customer_id"])
        changed.add(r.unique_id)
        customer_id = state["customer_id"]
        if customer_id and (deltas[0] or deltas[1] or deltas[2]):
            tenant_id = state["tenant_id"]
            zone = zones.get(tenant_id)
            if zone is None:
                zone = zones[tenant_id] = tenant_zone(tenant_id)
            key = (customer_id, tenant_id, event.astimezone(zone).date())
            acc = usage.setdefault(key, [0, 0, 0])
            acc[0] += deltas[1]
            acc[1] += deltas[2]
            acc[2] += deltas[0]
            touched.add(customer_id)
    return [states[uid] for uid in sorted(changed)], usage, touched


_TABLE = "radius_accountingsession"
# %b: arrays go in binary format (text-format arrays cost a regex per element to quote)
_UPSERT_SQL = (
    f"INSERT INTO {_TABLE} (unique_id, {', '.join(_SESSION_FIELDS)}) SELECT * FROM unnest("
    + ", ".join(f"%b::{_PG_TYPES[c]}[]" for c in ["unique_id", *_SESSION_FIELDS])
    + ") ON CONFLICT (unique_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _SESSION_FIELDS)
)
_USAGE_SQL = (
    "INSERT INTO radius_dailyusage (customer_id, tenant_id, day, input_octets, output_octets, session_time) "
    "SELECT * FROM unnest(%b::bigint[], %b::bigint[], %b::date[], %b::bigint[], %b::bigint[], %b::bigint[]) "
    "ON CONFLICT (customer_id, day) DO UPDATE SET "
    "input_octets = radius_dailyusage.input_octets + EXCLUDED.input_octets, "
    "output_octets = radius_dailyusage.output_octets + EXCLUDED.output_octets, "
    "session_time = radius_dailyusage.session_time + EXCLUDED.session_time"
)
_SELECT_SQL = (
    "SELECT s.unique_id, "
    + ", ".join(f"host(s.{c})" if c in ("nas_ip_address", "framed_ip_address") else f"s.{c}" for c in _SESSION_FIELDS)
    # a join on the unnested ids: one unique-index probe each (a filter "= ANY(array)"
    # made the planner scan the whole table, comparing each row with every id)
    + f" FROM unnest(%b::varchar[]) AS u(id) JOIN {_TABLE} s ON s.unique_id = u.id"
    + " ORDER BY s.unique_id FOR UPDATE OF s"
)
_OPEN_COUNTS_SQL = (
    f"SELECT s.customer_id, count(*) FROM unnest(%b::bigint[]) AS u(id) JOIN {_TABLE} s "
    "ON s.customer_id = u.id AND s.stopped_at IS NULL GROUP BY s.customer_id"
)


# Sessions that already exist get an UPDATE of only what the session rules may change
# (an Interim-Update is most of the traffic). Its numeric and timestamp arrays are sent
# as ready-made array literals ("{1,2,NULL}"): str.join is far cheaper than psycopg
# dumping each element; the text columns go as binary arrays.
_UPDATE_NUMERIC = ("session_time", "input_octets", "output_octets", "input_packets", "output_packets",
                   "interim_interval", "customer_id")
_UPDATE_TIMES = ("updated_at", "stopped_at")
_UPDATE_TEXT = ("framed_ip_address", "terminate_cause")
_UPDATE_SQL = (
    f"UPDATE {_TABLE} s SET "
    + ", ".join(f"{c} = u.{c}" for c in (*_UPDATE_NUMERIC, *_UPDATE_TIMES, *_UPDATE_TEXT))
    + " FROM unnest(%b::varchar[], "
    + ", ".join(f"%s::{_PG_TYPES[c]}[]" for c in (*_UPDATE_NUMERIC, *_UPDATE_TIMES))
    + ", %b::inet[], %b::text[]) AS u(unique_id, "
    + ", ".join((*_UPDATE_NUMERIC, *_UPDATE_TIMES, *_UPDATE_TEXT))
    + ") WHERE s.unique_id = u.unique_id"
)


def _array_literal(values) -> str:
    """PostgreSQL array literal of ints or tz-aware datetimes (None -> NULL); their text
    forms never need quoting (isoformat: no spaces, commas, braces or quotes)."""
    return "{" + ",".join("NULL" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v))
                          for v in values) + "}"


def _update_params(rows: list[dict]) -> list:
    params: list = [[row["unique_id"] for row in rows]]
    params += [_array_literal([row[c] for row in rows]) for c in (*_UPDATE_NUMERIC, *_UPDATE_TIMES)]
    params += [[row[c] for row in rows] for c in _UPDATE_TEXT]
    return params


def _session_arrays(rows: list[dict]) -> list[list]:
    return [[row[c] for row in rows] for c in ("unique_id", *_SESSION_FIELDS)]


def _usage_arrays(usage: dict[tuple[int, int, date], list[int]]) -> list[list]:
    rows = sorted(usage.items())
    return [list(col) for col in zip(*[(c, t, d, i, o, t2) for (c, t, d), (i, o, t2) in rows], strict=True)]


def write_batch_pipelined(records: list[AcctRecord]) -> Touched:
    """Write a batch of session records (no Accounting-On/Off) in one transaction with
    two round trips to PostgreSQL, using psycopg's pipeline mode on the writer's own
    connection: (1) BEGIN + lock and read the sessions; (2) upsert the sessions, add
    the daily usage, COMMIT.

    Returns the customers touched. Raises psycopg errors (the transaction is rolled
    back first)."""
    connection.ensure_connection()
    raw = connection.connection
    uids = sorted({r.unique_id for r in records})
    columns = ("unique_id", *_SESSION_FIELDS)
    cursor = psycopg.Cursor(raw)  # server-side binding, so the statements can be prepared
    try:
        with raw.pipeline():
            cursor.execute("BEGIN")
            cursor.execute(_SELECT_SQL, [uids], prepare=True, binary=True)
            states = {row[0]: dict(zip(columns, row, strict=True)) for row in cursor.fetchall()}
            existing = set(states)  # locked: nobody else can insert or change them now
            rows, usage, touched = _plan(records, states)
            updates = [row for row in rows if row["unique_id"] in existing]
            inserts = [row for row in rows if row["unique_id"] not in existing]
            if inserts:  # ON CONFLICT still: another worker may insert the same new session
                cursor.execute(_UPSERT_SQL, _session_arrays(inserts), prepare=True, binary=True)
            if updates:
                cursor.execute(_UPDATE_SQL, _update_params(updates), prepare=True, binary=True)
            if usage:
                cursor.execute(_USAGE_SQL, _usage_arrays(usage), prepare=True, binary=True)
            cursor.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                raw.execute("ROLLBACK")
        raise
    finally:
        cursor.close()
    return touched


def open_session_counts(customer_ids: list[int]) -> dict[int, int]:
    """Open sessions per customer, as committed now (0 for those with none)."""
    if not customer_ids:
        return {}
    counts: dict[int, int] = {}
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(_OPEN_COUNTS_SQL, [customer_ids], prepare=True, binary=True)
            counts = dict(cursor.fetchall())
    else:
        for start in range(0, len(customer_ids), 500):
            counts.update(
                AccountingSession.objects.filter(customer_id__in=customer_ids[start : start + 500],
                                                 stopped_at__isnull=True)
                .values_list("customer_id").annotate(n=Count("id")).values_list("customer_id", "n")
            )
    return {cid: counts.get(cid, 0) for cid in customer_ids}


def _upsert_sessions(rows: list[dict]) -> None:
    """One multi-row INSERT .. ON CONFLICT (unique_id) DO UPDATE (PostgreSQL and SQLite).

    Raw SQL because Django's bulk_create spends more time compiling 1000 rows
    than the database spends writing them."""
    columns = ["unique_id", *_SESSION_FIELDS]
    table = AccountingSession._meta.db_table
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _SESSION_FIELDS)
    if connection.vendor == "postgresql":
        # one array per column: a short statement psycopg parses once, whatever the row count
        arrays = ", ".join(f"%s::{_PG_TYPES[c]}[]" for c in columns)
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT (unique_id) DO UPDATE SET {updates}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [[row[c] for row in rows] for c in columns])
        return
    row_sql = "(" + ", ".join(["%s"] * len(columns)) + ")"
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        params = [row[c] for row in chunk for c in columns]
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row_sql] * len(chunk))} "
            f"ON CONFLICT (unique_id) DO UPDATE SET {updates}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)


def _add_daily_usage(usage: dict[tuple[int, int, date], list[int]]) -> None:
    rows = sorted(usage.items())
    if connection.vendor == "postgresql":
        sql = (
            "INSERT INTO radius_dailyusage (customer_id, tenant_id, day, input_octets, output_octets, session_time) "
            "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::date[], %s::bigint[], %s::bigint[], %s::bigint[]) "
            "ON CONFLICT (customer_id, day) DO UPDATE SET "
            "input_octets = radius_dailyusage.input_octets + EXCLUDED.input_octets, "
            "output_octets = radius_dailyusage.output_octets + EXCLUDED.output_octets, "
            "session_time = radius_dailyusage.session_time + EXCLUDED.session_time"
        )
        columns = list(zip(*[(c, t, d, i, o, t2) for (c, t, d), (i, o, t2) in rows], strict=True))
        with connection.cursor() as cursor:
            cursor.execute(sql, [list(col) for col in columns])
        return
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * len(rows))
    params: list = []
    for (customer_id, tenant_id, day), (inp, out, secs) in rows:
        params.extend([customer_id, tenant_id, day, inp, out, secs])
    sql = (
        "INSERT INTO radius_dailyusage (customer_id, tenant_id, day, input_octets, output_octets, session_time) "
        f"VALUES {placeholders} ON CONFLICT (customer_id, day) DO UPDATE SET "
        "input_octets = radius_dailyusage.input_octets + EXCLUDED.input_octets, "
        "output_octets = radius_dailyusage.output_octets + EXCLUDED.output_octets, "
        "session_time = radius_dailyusage.session_time + EXCLUDED.session_time"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _close_nas_sessions(record: AcctRecord) -> Touched:
    event = _dt(record.event_ts)
    open_sessions = AccountingSession.objects.filter(nas_id=record.nas_id, stopped_at__isnull=True, started_at__lte=event)
    customers = Touched(open_sessions.exclude(customer_id=None).values_list("customer_id", flat=True))
    customers.sessions |= customers
    cause = "NAS-Reboot" if record.status == ON else "NAS-Request"
    open_sessions.update(stopped_at=event, terminate_cause=cause)
    return customers


# ---------------------------------------------------------------------------


Callback = Callable[[bool], None]


def _run_callbacks(callbacks: list[Callback], ok: bool) -> None:
    for callback in callbacks:
        try:
            callback(ok)
        except Exception:
            logger.exception("accounting callback failed")


class AccountingWriter:
    """The group-commit writer threads with their disk spool (see module docstring).

    ``writers`` threads, each with its own database connection, so one batch is
    planned and sent while another waits for PostgreSQL. A record goes to the
    writer chosen by its session (``unique_id``), so the records of one session
    are written by one thread, in order; Accounting-On/Off go to the first."""

    def __init__(
        self,
        *,
        spool_path: Path,
        on_commit: Callable[[Touched, dict[int, int]], None] | None = None,
        batch_max: int = 1000,
        metrics=None,
        writers: int = 2,
    ) -> None:
        self.spool_path = Path(spool_path)
        self.on_commit = on_commit
        self.batch_max = batch_max
        self.metrics = metrics
        self.writers = max(1, int(writers))
        self._queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(self.writers)]
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._next_replay = 0.0
        # the spool file is shared: appends, replays and "is there a spool?" decisions
        # take this lock, so a replay never unlinks a record appended meanwhile
        self._spool_lock = threading.RLock()
        # reading open-session counts and handing them to the snapshot is one step under
        # this lock: the counts applied last are the ones read last
        self._counts_lock = threading.Lock()
        self.db_ok = True

    # -- producer side (event loop thread) -------------------------------

    def submit(self, record: AcctRecord, callback: Callback, loop=None) -> None:
        """Queue a record; ``callback(ok)`` runs after its batch is committed (or
        spooled), on ``loop``'s thread when a loop is given (one wake-up per batch)."""
        queues = self._queues
        if len(queues) == 1 or record.status in (ON, OFF) or not record.unique_id:
            index = 0
        else:
            index = int(record.unique_id[-4:], 16) % len(queues)
        queues[index].put((record, callback, loop))

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._threads = [
            threading.Thread(target=self._run, args=(q,), name=f"radius-acct-writer-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then stop."""
        self._stopping.set()
        for q in self._queues:
            q.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    # -- writer threads --------------------------------------------------

    def _run(self, q: queue.SimpleQueue) -> None:
        try:
            self._loop(q)
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def _loop(self, q: queue.SimpleQueue) -> None:
        while True:
            try:
                first = q.get(timeout=1.0)
            except queue.Empty:
                first = None
                if self.spool_path.exists():
                    self._replay_spool()
                if self._stopping.is_set():
                    return
                continue
            batch = [] if first is None else [first]
            while len(batch) < self.batch_max:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    batch.append(item)
            self._write(batch)
            if self._stopping.is_set() and q.empty():
                self._write([])
                return

    def _write(self, batch: list) -> None:
        if not batch and not self.spool_path.exists():
            return
        records = [item[0] for item in batch]
        if self.spool_path.exists():
            with self._spool_lock:
                if not self._replay_spool():
                    self._spool(records)
                    self._finish(batch, True)
                    return
        started = time.perf_counter()
        try:
            touched = self._write_records(records)
        except (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError) as exc:
            logger.warning("accounting database unavailable (%s); spooling %d records", exc, len(records))
            self._db_down()
            self._spool(records)
            self._finish(batch, True)
            return
        except (DatabaseError, psycopg.Error):
            # Not an outage but a record the database refuses: write the others one
            # by one and keep the refused ones on disk for a person to look at.
            logger.exception("accounting batch of %d records failed; retrying them one by one", len(records))
            with contextlib.suppress(Exception):
                connection.close()
            touched = self._write_one_by_one(records)
        self.db_ok = True
        if self.metrics is not None and records:
            self.metrics.inc("acct_commits")
            self.metrics.inc("acct_records", len(records))
            self.metrics.observe("acct_commit_seconds", time.perf_counter() - started)
        self._after_commit(touched)
        self._finish(batch, True)

    @staticmethod
    def _write_records(records: list[AcctRecord], attempts: int = 3) -> Touched:
        """One transaction. A deadlock is retried: the writers of this process never share
        a session and lock daily-usage rows in order, but another radiusd worker or host
        on the same database, or an Accounting-On closing a NAS's sessions, may not."""
        for attempt in range(1, attempts + 1):
            try:
                if connection.vendor == "postgresql" and not any(r.status in (ON, OFF) for r in records):
                    return write_batch_pipelined(records)
                with transaction.atomic():
                    return apply_batch(records)
            except (psycopg.OperationalError, OperationalError) as exc:
                cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
                retry = isinstance(cause, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure))
                if not retry or attempt == attempts:
                    raise
                logger.info("accounting batch hit a deadlock; retrying it")
        raise AssertionError("unreachable")

    def _write_one_by_one(self, records: list[AcctRecord]) -> Touched:
        touched = Touched()
        refused = []
        for record in records:
            try:
                with transaction.atomic():
                    touched |= apply_batch([record])
            except (OperationalError, InterfaceError):
                self._db_down()
                self._spool([record])
            except DatabaseError:
                logger.exception("accounting record refused by the database: %r", record)
                refused.append(record)
        if refused:
            self._spool(refused, path=self.spool_path.with_suffix(".refused.jsonl"))
            if self.metrics is not None:
                self.metrics.inc("acct_refused", len(refused))
        return touched

    def _after_commit(self, touched: Touched) -> None:
        """Before the replies go out: the snapshot learns the open-session counts of the
        customers whose sessions opened or closed (read now, after the commit) and which
        customers' usage moved."""
        if not touched or self.on_commit is None:
            return
        sessions = touched.sessions
        try:
            with self._counts_lock:
                counts = open_session_counts(sorted(sessions)) if sessions else {}
                self.on_commit(touched, counts)
        except Exception:
            logger.warning("after-commit usage refresh failed", exc_info=True)

    def _db_down(self) -> None:
        self.db_ok = False
        if self.metrics is not None:
            self.metrics.inc("acct_db_errors")
        with contextlib.suppress(Exception):
            connection.close()

    def _finish(self, batch: list, ok: bool) -> None:
        by_loop: dict = {}
        for _, callback, loop in batch:
            if loop is None:
                _run_callbacks([callback], ok)
            else:
                by_loop.setdefault(loop, []).append(callback)
        for loop, callbacks in by_loop.items():
            try:
                loop.call_soon_threadsafe(_run_callbacks, callbacks, ok)
            except RuntimeError:  # the loop is closed: nobody is left to answer
                pass

    def _spool(self, records: list[AcctRecord], path: Path | None = None) -> None:
        if not records:
            return
        with self._spool_lock:
            self._append(records, path or self.spool_path)

    def _append(self, records: list[AcctRecord], path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(asdict(record)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.metrics is not None and path == self.spool_path:
            self.metrics.inc("acct_spooled", len(records))

    def _replay_spool(self) -> bool:
        with self._spool_lock:
            return self._replay()

    def _replay(self) -> bool:
        """Replay the spool in order; True when it is empty afterwards.

        After a failure the next attempt waits a second, so a long outage under
        load does not re-read the growing spool for every batch."""
        if not self.spool_path.exists():
            return True
        if time.monotonic() < self._next_replay:
            return False
        self._next_replay = time.monotonic() + 1.0
        try:
            lines = self.spool_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return True
        records = []
        for line in lines:
            try:
                records.append(AcctRecord(**json.loads(line)))
            except (ValueError, TypeError):
                logger.error("skipping an unreadable spool line: %r", line[:200])
        try:
            touched = Touched()
            with transaction.atomic():
                for start in range(0, len(records), self.batch_max):
                    touched |= apply_batch(records[start : start + self.batch_max])
        except (OperationalError, InterfaceError):
            self._db_down()
            return False
        except DatabaseError:
            logger.exception("spool replay failed on a data error; replaying record by record")
            with contextlib.suppress(Exception):
                connection.close()
            self.spool_path.unlink(missing_ok=True)
            touched = self._write_one_by_one(records)
            if self.spool_path.exists():  # the database went away meanwhile
                return False
        self.spool_path.unlink(missing_ok=True)
        self.db_ok = True
        self._next_replay = 0.0
        logger.info("replayed %d spooled accounting records", len(records))
        if self.metrics is not None:
            self.metrics.inc("acct_replayed", len(records))
        self._after_commit(touched)
        return True
