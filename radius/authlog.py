"""The authentication log: every Access-Request decision becomes a
``radius_authlog`` row, written in batches with ``COPY`` away from the event loop,
so neither the replies nor the accounting writer wait for it.

The event loop formats each decision straight into one line of ``COPY`` text
(:meth:`AuthLogWriter.log`: one f-string, text escaped only in the rare case it
needs it, no lock: ``deque.append`` is atomic). What happens next depends on
where the server runs:

* radiusd on PostgreSQL (:class:`PipedAuthLogWriter`): every ``interval`` the
  event loop joins what accumulated and writes it, in one non-blocking ``write``,
  to a pipe read by a copier process of the worker's own
  (:mod:`radius.authlog_copier`, libpq through ctypes), which runs the COPY. The
  server's process runs no database code for the log at all.
* tests, benchmarks' in-process servers and ``RADIUS_AUTH_LOG_PROCESS=false``
  (:class:`AuthLogWriter`): a thread with its own Django connection takes what
  accumulated every ``interval`` seconds (sooner when ``flush_rows`` wait) and
  sends it with one COPY in autocommit. The first-run SQLite database has no
  COPY: there rows stay tuples written with ``executemany``.

Both are bounded (``max_buffer`` rows waiting in the worker): when the database is
slower than the decisions for long enough, or unreachable, the oldest unwritten
rows are dropped and counted (``auth_log_dropped``); authentication itself never
waits for the log. Failed writes are retried a second later. Text is cut to the
column sizes and cleared of NULs before it is sent, so a failure is an outage (or
a lock), never a row the table refuses.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import select
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

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


def conninfo_from_django(alias: str = "default") -> str:
    """libpq connection string of a Django PostgreSQL connection (for the copier process)."""
    from django.db import connections

    params = connections[alias].get_connection_params()
    return psycopg.conninfo.make_conninfo(**{
        key: value for key, value in params.items()
        if type(value) in (str, int) and key != "prepare_threshold"})


class PipedAuthLogWriter(AuthLogWriter):
    """The auth log of a radiusd worker on PostgreSQL: the event loop formats COPY
    lines (as :class:`AuthLogWriter` does), and every ``interval`` joins what has
    accumulated and writes it, in one ``write``, to a pipe read by a copier process
    (:mod:`radius.authlog_copier`) that runs the COPY. No thread of the server's own
    touches the log, so nothing in this process competes with the event loop for
    the interpreter lock: with the COPY in a thread, p99 at 22,000 Access-Requests/s
    was 4.3-5.3 ms against 1.4 ms without the log (docs/BENCHMARKS.md).

    Bounds and failures: the pipe holds ``pipe_size`` bytes (~10,000 rows), the copier
    ``16 MB`` more while the database is away; when both are full a write would block,
    so it is not made (the pipe is non-blocking) and rows wait here, at most
    ``max_buffer`` of them, the oldest dropped first (``auth_log_dropped``). A copier
    that dies is started again (at most once per ``respawn_interval``); the rows it
    had received and not yet reported written are counted as dropped. Its reports
    (``w``/``e``/``d`` lines on its stdout) feed the same metrics as the thread writer
    (``auth_log_written``, ``auth_log_errors``, ``auth_log_flush_seconds``,
    ``auth_log_dropped``) plus ``auth_log_copier_restarts``.
    """

    def __init__(self, *, conninfo: str, pipe_size: int = 1 << 20, respawn_interval: float = 1.0,
                 **kwargs) -> None:
        super().__init__(copy=True, **kwargs)
        self.conninfo = conninfo
        self.pipe_size = pipe_size
        self.respawn_interval = respawn_interval
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._fd = -1
        self._tail = b""  # the part of the current batch the pipe has not taken yet
        self._handed = 0  # rows handed to the current copier (whole or in part)
        self._accounted = 0  # of those, rows it reported written or dropped
        self._reports = b""
        self._spawned_at = float("-inf")
        self._lock = threading.Lock()  # the event loop's flushes vs stop() from another thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._armed = False
        self._closed = False

    # -- event loop side -------------------------------------------------

    def log(self, row: tuple) -> None:
        super().log(row)
        if not self._armed:
            self._arm()

    def _arm(self) -> None:
        loop = self._loop
        if loop is None:
            try:
                loop = self._loop = asyncio.get_running_loop()
            except RuntimeError:  # logged from outside an event loop: flush() sends it
                return
        self._armed = True
        loop.call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self._armed = False
        if self._lock.acquire(blocking=False):  # not while stop() runs in another thread
            try:
                if not self._closed:
                    self._send()
            finally:
                self._lock.release()
        # go on while there are rows to send or reports to read
        if (self._rows or self._tail or self._accounted < self._handed) and not self._closed:
            self._arm()

    # -- lifecycle -------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._closed = False
            self._spawn()

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is buffered, close the pipe and wait for the copier to write it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._alive():
                self._send(deadline=deadline)
            self._retire(deadline)

    def flush(self) -> int:
        """Hand everything buffered now to the copier; returns the number of rows handed."""
        with self._lock:
            if self._closed:
                return 0
            return self._send()

    def copier_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- the pipe --------------------------------------------------------

    def _spawn(self) -> bool:
        now = time.monotonic()
        if now - self._spawned_at < self.respawn_interval:
            return False
        self._spawned_at = now
        read_end, write_end = os.pipe()
        with contextlib.suppress(OSError, AttributeError):  # capped by /proc/sys/fs/pipe-max-size
            fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, self.pipe_size)
        root = str(Path(__file__).resolve().parents[1])
        env = {**os.environ, "RADIUS_AUTHLOG_CONNINFO": self.conninfo,
               "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "radius.authlog_copier", "--copy-sql", _COPY_SQL],
                stdin=read_end, stdout=subprocess.PIPE, env=env, close_fds=True)
        except OSError:
            logger.exception("cannot start the authentication log copier")
            os.close(write_end)
            return False
        finally:
            os.close(read_end)
        os.set_blocking(write_end, False)
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._fd = write_end
        self._tail, self._handed, self._accounted, self._reports = b"", 0, 0, b""
        return True

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _send(self, deadline: float | None = None) -> int:
        """Write the unsent part of the current batch, then (if the pipe took all of it)
        the rows buffered since, as one batch. ``deadline``: wait for the pipe until
        then (stopping); otherwise never wait. Returns the rows handed over."""
        self._read_reports()
        if not self._alive():
            if self._proc is not None:
                self._copier_died()
            if not self._spawn():
                return 0
        handed = 0
        while True:
            if not self._tail:
                rows = self._rows
                count = len(rows)
                if not count:
                    return handed
                batch = []
                with contextlib.suppress(IndexError):  # log() may have dropped some meanwhile
                    for _ in range(count):
                        batch.append(rows.popleft())
                self._tail = "".join(batch).encode()
                self._handed += len(batch)
                handed += len(batch)
            try:
                if deadline is not None:
                    select.select([], [self._fd], [], max(0.0, deadline - time.monotonic()))
                written = os.write(self._fd, self._tail)
            except BlockingIOError:  # the copier is behind (the database is slow or away)
                written = 0
            except BrokenPipeError:
                self._copier_died()
                return handed
            self._tail = self._tail[written:]
            if self._tail and (deadline is None or time.monotonic() >= deadline):
                return handed

    def _read_reports(self) -> bool:
        """Read and apply the copier's reports; True when its stdout is at its end."""
        if self._proc is None:
            return True
        stream = self._proc.stdout.fileno()
        ended = False
        while True:
            try:
                chunk = os.read(stream, 65536)
            except BlockingIOError:
                break
            if not chunk:
                ended = True
                break
            self._reports += chunk
        *lines, self._reports = self._reports.split(b"\n")
        metrics = self.metrics
        for line in lines:
            kind, *values = line.split()
            if kind == b"w":
                rows = int(values[0])
                self.written += rows
                self._accounted += rows
                if metrics is not None:
                    metrics.inc("auth_log_written", rows)
                    metrics.observe("auth_log_flush_seconds", float(values[1]))
            elif kind == b"d":
                rows = int(values[0])
                self.dropped += rows
                self._accounted += rows
                if metrics is not None:
                    metrics.inc("auth_log_dropped", rows)
            elif kind == b"e" and metrics is not None:
                metrics.inc("auth_log_errors")
        return ended

    def _copier_died(self) -> None:
        """The copier exited (killed?): what it took and did not report is lost."""
        proc = self._proc
        self._retire(time.monotonic() + 1.0)
        logger.error("authentication log copier (pid %s) exited with %s; starting another",
                     proc.pid if proc else None, proc.returncode if proc else None)
        self.restarts += 1
        if self.metrics is not None:
            self.metrics.inc("auth_log_copier_restarts")

    def _retire(self, deadline: float) -> None:
        """Close the pipe (end of input: the copier writes what it holds and exits),
        collect its last reports, and count what it never reported as dropped."""
        proc = self._proc
        if proc is None:
            return
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        stream = proc.stdout.fileno()
        while True:  # its stdout reaches its end when it exits
            readable, _, _ = select.select([stream], [], [], max(0.0, deadline - time.monotonic()))
            if not readable or self._read_reports():
                break
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error("authentication log copier (pid %d) did not finish in time; killed", proc.pid)
            proc.kill()
            proc.wait()
        self._read_reports()
        proc.stdout.close()
        lost = self._handed - self._accounted
        if lost > 0:
            self.dropped += lost
            if self.metrics is not None:
                self.metrics.inc("auth_log_dropped", lost)
        self._proc, self._tail, self._handed, self._accounted, self._reports = None, b"", 0, 0, b""
