"""The authentication log's copier: a small process of its own that reads COPY text
lines from its standard input and writes them to ``radius_authlog``.

radiusd starts one per worker (:class:`radius.authlog.PipedAuthLogWriter`) so that
no part of writing the log runs in the server's own process: psycopg's COPY
protocol is Python code, and in a thread of the server it took the interpreter
lock from the event loop for about half a millisecond per flush, which is what
the 99th percentile of Access-Request latency was made of.

Only the standard library is imported, and libpq through ctypes (the copy that
psycopg's binary wheel ships, or the system's): importing psycopg alone would
cost this process 25 MB of its ~15. The connection string comes from the
environment (``RADIUS_AUTHLOG_CONNINFO``, never the command line, which other
users can read). Protocol:

* in (stdin): COPY text lines for ``COPY radius_authlog (...) FROM STDIN``, each
  ending in a newline; a line may arrive in pieces, only whole lines are copied;
* out (stdout), one line per event: ``w <rows> <seconds>`` rows written by one
  COPY; ``e`` a COPY failed (kept, retried a second later); ``d <rows>`` rows
  dropped (the buffer bound, or rows the table refuses, which are isolated by
  halving the batch so that the others are still written).

End of input means the worker is stopping (or died): what is buffered is written
(retried for up to ``--final-seconds``) and the copier exits.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import importlib.util
import logging
import os
import select
import signal
import sys
import time
from pathlib import Path

logger = logging.getLogger("radius.authlog_copier")

CONNINFO_ENV = "RADIUS_AUTHLOG_CONNINFO"
NL = b"\n"

# libpq constants (libpq-fe.h)
CONNECTION_OK = 0
PGRES_COMMAND_OK = 1
PGRES_COPY_IN = 4
PG_DIAG_SQLSTATE = ord("C")


def find_libpq() -> str | None:
    """Path of a libpq: the one psycopg's binary wheel carries, else the system's."""
    spec = importlib.util.find_spec("psycopg_binary")
    if spec is not None and spec.origin:
        found = sorted(glob.glob(str(Path(spec.origin).parent.parent / "psycopg_binary.libs" / "libpq-*.so*")))
        if found:
            return found[0]
    return ctypes.util.find_library("pq")


class CopyFailed(Exception):
    def __init__(self, message: str, sqlstate: str = "", connection_lost: bool = False) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.connection_lost = connection_lost

    @property
    def refused_data(self) -> bool:
        """The rows themselves are refused (data exception, constraint): retrying won't help."""
        return self.sqlstate[:2] in ("22", "23")


class LibPQ:
    """The few libpq calls a COPY needs."""

    def __init__(self, path: str) -> None:
        lib = self.lib = ctypes.CDLL(path)
        ptr, text = ctypes.c_void_p, ctypes.c_char_p
        for name, restype, argtypes in (
                ("PQconnectdb", ptr, [text]), ("PQstatus", ctypes.c_int, [ptr]), ("PQfinish", None, [ptr]),
                ("PQerrorMessage", text, [ptr]), ("PQexec", ptr, [ptr, text]),
                ("PQresultStatus", ctypes.c_int, [ptr]), ("PQresultErrorMessage", text, [ptr]),
                ("PQresultErrorField", text, [ptr, ctypes.c_int]), ("PQclear", None, [ptr]),
                ("PQputCopyData", ctypes.c_int, [ptr, text, ctypes.c_int]),
                ("PQputCopyEnd", ctypes.c_int, [ptr, text]), ("PQgetResult", ptr, [ptr])):
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
        self.conn = None

    def _error(self, result=None) -> CopyFailed:
        lib = self.lib
        if result:
            message = (lib.PQresultErrorMessage(result) or b"").decode("utf-8", "replace")
            sqlstate = (lib.PQresultErrorField(result, PG_DIAG_SQLSTATE) or b"").decode()
        else:
            message, sqlstate = (lib.PQerrorMessage(self.conn) or b"").decode("utf-8", "replace"), ""
        lost = lib.PQstatus(self.conn) != CONNECTION_OK
        return CopyFailed(message.strip() or "unknown libpq error", sqlstate, lost)

    def connect(self, conninfo: str) -> None:
        self.conn = self.lib.PQconnectdb(conninfo.encode())
        if self.lib.PQstatus(self.conn) != CONNECTION_OK:
            error = self._error()
            self.close()
            raise CopyFailed(str(error), connection_lost=True)

    def close(self) -> None:
        if self.conn:
            self.lib.PQfinish(self.conn)
        self.conn = None

    def copy(self, sql: bytes, data: bytes) -> None:
        """One ``COPY ... FROM STDIN`` of ``data`` (a transaction of its own)."""
        lib, conn = self.lib, self.conn
        result = lib.PQexec(conn, sql)
        try:
            if lib.PQresultStatus(result) != PGRES_COPY_IN:
                raise self._error(result)
        finally:
            lib.PQclear(result)
        if lib.PQputCopyData(conn, data, len(data)) != 1 or lib.PQputCopyEnd(conn, None) != 1:
            error = self._error()
            self._drain()
            raise error
        error = None
        while result := lib.PQgetResult(conn):
            if error is None and lib.PQresultStatus(result) != PGRES_COMMAND_OK:
                error = self._error(result)
            lib.PQclear(result)
        if error is not None:
            raise error

    def _drain(self) -> None:
        while result := self.lib.PQgetResult(self.conn):
            self.lib.PQclear(result)


class Copier:
    def __init__(self, conninfo: str, copy_sql: str, *, max_bytes: int, libpq: LibPQ, out=None) -> None:
        self.conninfo = (f"{conninfo} client_encoding=UTF8 connect_timeout=5 application_name=radiusd-authlog "
                         "keepalives=1 keepalives_idle=30 keepalives_interval=10 keepalives_count=3")
        self.copy_sql = copy_sql.encode()
        self.max_bytes = max_bytes
        self.pq = libpq
        self.out = out if out is not None else sys.stdout
        self.buf = bytearray()

    def report(self, line: str) -> None:
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError):  # the worker is gone: nobody to tell
            pass

    def add(self, chunk: bytes) -> None:
        self.buf += chunk
        if len(self.buf) > self.max_bytes:  # the database has been away for long: oldest lines go
            cut = self.buf.find(NL, len(self.buf) - self.max_bytes)
            if cut >= 0:
                self.report(f"d {self.buf.count(NL, 0, cut + 1)}")
                del self.buf[:cut + 1]

    def flush(self) -> bool:
        """COPY every whole line buffered. False: the database failed (lines kept)."""
        end = self.buf.rfind(NL) + 1
        if not end:
            return True
        data = bytes(self.buf[:end])
        started = time.perf_counter()
        try:
            written, dropped = self._copy(data)
        except CopyFailed as exc:
            logger.warning("authentication log COPY failed (%s); retrying in 1 s", exc)
            if exc.connection_lost:
                self.pq.close()
            self.report("e")
            return False
        del self.buf[:end]
        if written:
            self.report(f"w {written} {time.perf_counter() - started:.6f}")
        if dropped:
            self.report(f"d {dropped}")
        return True

    def _copy(self, data: bytes) -> tuple[int, int]:
        """(written, dropped). A failure of the connection or the table raises (all is
        retried); rows the table refuses are found by halving and dropped, the rest written."""
        if not self.pq.conn:
            self.pq.connect(self.conninfo)
        try:
            self.pq.copy(self.copy_sql, data)
            return data.count(NL), 0
        except CopyFailed as exc:
            if not exc.refused_data:
                raise
            lines = data.split(NL)[:-1]
            if len(lines) == 1:
                logger.error("authentication log row refused and dropped (%s): %r", exc, data[:300])
                return 0, 1
            half = len(lines) // 2
            first = self._copy(NL.join(lines[:half]) + NL)
            second = self._copy(NL.join(lines[half:]) + NL)
            return first[0] + second[0], first[1] + second[1]

    def run(self, fd: int, *, final_seconds: float) -> None:
        retry_at = None  # after a failed COPY: when to try again
        while True:
            timeout = None if retry_at is None else max(0.0, retry_at - time.monotonic())
            readable, _, _ = select.select([fd], [], [], timeout)
            if readable:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                self.add(chunk)
            # (a line still arriving in pieces waits for its end without a wake-up of its own)
            if retry_at is None or time.monotonic() >= retry_at:
                retry_at = None if self.flush() else time.monotonic() + 1.0
        deadline = time.monotonic() + final_seconds
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(0.5)
        lost = self.buf.count(NL)
        if lost:
            logger.error("authentication log: %d rows not written at exit (database unavailable)", lost)
            self.report(f"d {lost}")
        self.pq.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Copy authentication-log lines from stdin to PostgreSQL.")
    parser.add_argument("--copy-sql", required=True)
    parser.add_argument("--max-bytes", type=int, default=16 << 20)
    parser.add_argument("--final-seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    # Ctrl-C in a terminal and a SIGTERM to the process group reach this process too:
    # the worker stops by closing the pipe, whose end of input is what stops this one
    # (after writing what it holds), also when the worker was killed outright
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s radiusd-authlog[%(process)d] %(message)s")
    path = find_libpq()
    if path is None:
        logger.error("no libpq found (install psycopg[binary] or libpq5)")
        return 2
    conninfo = os.environ.pop(CONNINFO_ENV, "")
    Copier(conninfo, args.copy_sql, max_bytes=args.max_bytes, libpq=LibPQ(path)).run(
        sys.stdin.fileno(), final_seconds=args.final_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
