"""The authentication log writer: every Access-Request decision becomes a
``radius_authlog`` row, written by its own thread over its own database
connection, so neither the event loop nor the accounting writer waits for it.

On PostgreSQL the event loop formats each decision straight into one line of
``COPY`` text (:meth:`AuthLogWriter.log`: one f-string, text escaped only in the
rare case it needs it, no lock: ``deque.append`` is atomic), and the writer
thread takes what has accumulated every ``interval`` seconds (or sooner when
``flush_rows`` are waiting), joins it and sends it with one ``COPY`` in one
transaction. The writer thread thus does no per-row Python work: formatting
thousands of rows there held the interpreter lock for milliseconds at a time,
and the event loop waited for it (p99 at 22,000 Access-Requests/s went from
0.9 ms without the log to 7.6 ms with it). The first-run SQLite database has no
COPY: there rows stay tuples written with ``executemany``.

The buffer is bounded (``max_buffer`` rows): when the database is slower than
the decisions for long enough, or unreachable, the oldest unwritten rows are
dropped and counted (``auth_log_dropped``); authentication itself never waits
for the log. Rows of a failed write are put back in front and retried a second
later. Text is cut to the column sizes and cleared of NULs by the writer, so a
failure is an outage (or a lock), never a row the table refuses.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from datetime import UTC, datetime

import psycopg
from django.db import DatabaseError, connection, transaction

logger = logging.getLogger(__name__)

#: Column order of a buffered row (``created_at`` is a POSIX timestamp until written).
COLUMNS = ("tenant_id", "nas_ip_address", "username", "customer_id", "accepted", "reason", "method",
           "calling_station_id", "created_at")


def _clean_rows(batch):
    """Rows for the auth-log table: text bounded and NUL-free, so no row can be refused by its columns."""
    fromts = datetime.fromtimestamp
    for tenant, nas_ip, username, customer, accepted, reason, method, calling, ts in batch:
        if "\x00" in username:
            username = username.replace("\x00", "")
        if "\x00" in calling:
            calling = calling.replace("\x00", "")
        yield (tenant, nas_ip, username[:253], customer, accepted, reason[:32], method[:16], calling[:64],
               fromts(ts, UTC))


def copy_text(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, NULs dropped, escaped for COPY's text format.

    The common case (printable, no backslash) is two C calls and a slice."""
    if value.isprintable() and "\\" not in value:
        return value[:limit]
    value = value.replace("\x00", "")[:limit]
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class _Stamp:
    """POSIX time -> timestamptz text in UTC; the seconds part is formatted once a second."""

    __slots__ = ("prefix", "second")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def __call__(self, ts: float) -> str:
        second = int(ts)
        if second != self.second:
            self.second = second
            self.prefix = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
        return f"{self.prefix}.{int((ts - second) * 1_000_000):06d}+00"


_COPY_SQL = f"COPY radius_authlog ({', '.join(COLUMNS)}) FROM STDIN"


def _null(value) -> str:
    return "\\N" if value is None else str(value)


class AuthLogWriter:
    """Buffer decisions, write them in batches with COPY from a thread of its own."""

    def __init__(self, *, max_buffer: int = 50_000, interval: float = 0.05, flush_rows: int = 2000,
                 metrics=None, copy: bool | None = None) -> None:
        #: True: rows are buffered as COPY text lines (PostgreSQL); False: as tuples.
        self.copy = connection.vendor == "postgresql" if copy is None else copy
        self._stamp = _Stamp()
        self.max_buffer = max_buffer
        self.interval = interval
        self.flush_rows = flush_rows
        self.metrics = metrics
        self._rows: collections.deque = collections.deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.written = 0

    # -- event loop side -------------------------------------------------

    def log(self, row: tuple) -> None:
        """Queue one row (see :data:`COLUMNS`); never blocks."""
        if self.copy:
            tenant, nas_ip, username, customer, accepted, reason, method, calling, ts = row
            row = (f"{_null(tenant)}\t{_null(nas_ip)}\t{copy_text(username, 253)}\t{_null(customer)}\t"
                   f"{'t' if accepted else 'f'}\t{copy_text(reason, 32)}\t{copy_text(method, 16)}\t"
                   f"{copy_text(calling, 64)}\t{self._stamp(ts)}\n")
        rows = self._rows
        if len(rows) >= self.max_buffer:
            with contextlib.suppress(IndexError):  # the writer may have emptied it meanwhile
                rows.popleft()  # the oldest unwritten decision goes first
                self.dropped += 1
                if self.metrics is not None:
                    self.metrics.inc("auth_log_dropped")
        rows.append(row)
        if len(rows) == self.flush_rows:
            self._wake.set()

    def pending(self) -> int:
        return len(self._rows)

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="radius-authlog-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is buffered (one attempt), then stop."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- writer thread ---------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.wait(self.interval)
                self._wake.clear()
                self.flush()
            self.flush()
        finally:
            with contextlib.suppress(Exception):
                connection.close()

    def flush(self) -> int:
        """Write everything buffered now; returns the number of rows written."""
        rows = self._rows
        count = len(rows)
        if not count:
            return 0
        batch = []
        with contextlib.suppress(IndexError):  # log() may have dropped some meanwhile
            for _ in range(count):
                batch.append(rows.popleft())
        count = len(batch)
        started = time.perf_counter()
        try:
            if self.copy:
                # one COPY in autocommit mode is a transaction of its own: no BEGIN and
                # COMMIT round trips, each of which would wake this thread and take the
                # interpreter lock from the event loop once more
                connection.ensure_connection()
                with psycopg.Cursor(connection.connection) as cursor, cursor.copy(_COPY_SQL) as copy:
                    copy.write("".join(batch).encode())
            else:  # the first-run SQLite database (make run without DATABASE_URL) has no COPY
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.executemany(
                        f"INSERT INTO radius_authlog ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})",
                        list(_clean_rows(batch)))
        except (DatabaseError, psycopg.Error) as exc:  # COPY raises psycopg's own errors
            logger.warning("authentication log write of %d rows failed (%s); retrying", count, exc)
            with contextlib.suppress(Exception):
                connection.close()
            rows.extendleft(reversed(batch))  # back in front, in order; log() trims the excess
            while len(rows) > self.max_buffer:
                rows.popleft()
                self.dropped += 1
            if self.metrics is not None:
                self.metrics.inc("auth_log_errors")
            self._stopping.wait(1.0)
            return 0
        self.written += count
        if self.metrics is not None:
            self.metrics.inc("auth_log_written", count)
            self.metrics.observe("auth_log_flush_seconds", time.perf_counter() - started)
        return count
