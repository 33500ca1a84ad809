"""The authentication log written by a copier process (radiusd on PostgreSQL): the
event loop hands COPY lines through a pipe to ``radius.authlog_copier``, which runs
the COPY with libpq. Rows arrive exactly; a copier that dies is replaced; a database
outage keeps the rows; a stuck copier leaves the worker's buffer bounded; stopping
writes everything; a worker killed outright leaves its copier to finish and exit."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radius import crypto
from radius.authlog import _COPY_SQL, PipedAuthLogWriter, conninfo_from_django
from radius.authlog_copier import Copier, LibPQ, find_libpq
from radius.metrics import Metrics
from radius.models import AuthLog
from radius.packet import decode
from radius.runner import ThreadedServer
from radius.testing import PASSWORD, SECRET, UdpClient, access_request, table_locked, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PPP = [("Service-Type", 2), ("Framed-Protocol", 1)]
BASE = Path(__file__).resolve().parents[2]


def row(name: str, ts: float | None = None, accepted: bool = True, calling: str = "") -> tuple:
    return (None, None, name, None, accepted, "ok" if accepted else "wrong_password", "pap", calling,
            time.time() if ts is None else ts)


@pytest.fixture
def piped():
    writers = []

    def make(**kwargs) -> PipedAuthLogWriter:
        kwargs.setdefault("metrics", Metrics())
        writer = PipedAuthLogWriter(conninfo=conninfo_from_django(), **kwargs)
        writers.append(writer)
        writer.start()
        return writer

    yield make
    for writer in writers:
        writer.stop()


def names() -> list[str]:
    return list(AuthLog.objects.order_by("id").values_list("username", flat=True))


def test_rows_reach_the_table_through_the_copier_process_exactly(world, piped):
    writer = piped()
    nas = world["nas"]
    now = time.time()
    special = ["tab\there", "new\nline", "back\\slash\\N", "cr\rx", "বাংলা-গ্রাহক", "\\.", "\\N", "end\\"]
    writer.log((nas.tenant_id, nas.ip_address, "alice", 42, True, "ok", "pap", "AA:BB", now))
    for name in special:
        writer.log((None, None, name, None, False, "wrong_password", "chap", name[:10], now))
    assert writer.pending() == 1 + len(special)
    assert writer.flush() == 1 + len(special)
    assert writer.pending() == 0
    assert wait_for(lambda: AuthLog.objects.count() == 1 + len(special))
    alice = AuthLog.objects.get(username="alice")
    assert (alice.tenant_id, alice.nas_ip_address, alice.customer_id, alice.accepted, alice.reason, alice.method,
            alice.calling_station_id) == (nas.tenant_id, nas.ip_address, 42, True, "ok", "pap", "AA:BB")
    assert abs(alice.created_at.timestamp() - now) < 1e-5
    assert sorted(AuthLog.objects.exclude(username="alice").values_list("username", "calling_station_id")) == sorted(
        (name, name[:10]) for name in special)
    # the copier is another process, and it reports what it wrote back to the worker
    assert writer.copier_pid() not in (None, os.getpid())
    assert wait_for(lambda: (writer.flush(), writer.written)[1] == 1 + len(special))
    assert writer.metrics.counters["auth_log_written"] == 1 + len(special)


def test_stop_writes_everything_buffered_and_the_copier_exits(world, piped):
    writer = piped()
    pid = writer.copier_pid()
    for i in range(500):
        writer.log(row(f"u{i:03d}"))
    writer.stop()  # nothing flushed before: stop hands it over and waits for the COPY
    assert names() == [f"u{i:03d}" for i in range(500)]
    assert writer.written == 500 and writer.dropped == 0
    assert writer.copier_pid() is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_killed_copier_is_replaced_and_what_it_lost_is_counted(world, piped):
    writer = piped(respawn_interval=0)
    writer.log(row("before"))
    writer.flush()
    assert wait_for(lambda: names() == ["before"])
    first = writer.copier_pid()
    with table_locked("radius_authlog"):  # the copier holds the next rows, its COPY waiting for the lock
        writer.log(row("held-by-the-dead-copier"))
        writer.flush()
        time.sleep(0.3)
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: writer._proc.poll() is not None)
    writer.log(row("after"))
    writer.flush()  # finds the copier dead, starts another, hands it the new row
    assert writer.copier_pid() not in (None, first)
    assert writer.restarts == 1 and writer.metrics.counters["auth_log_copier_restarts"] == 1
    assert wait_for(lambda: names() == ["before", "after"])
    assert writer.dropped == 1  # the row the killed copier had taken and never wrote
    assert writer.metrics.counters["auth_log_dropped"] == 1


def test_database_outage_keeps_the_rows_until_the_table_is_back(world, piped):
    from django.db import connection

    writer = piped()
    writer.log(row("first"))
    writer.flush()
    assert wait_for(lambda: names() == ["first"])
    with connection.cursor() as cursor:  # a real failure of the COPY: the table is not there
        cursor.execute("ALTER TABLE radius_authlog RENAME TO radius_authlog_away")
    try:
        for name in ("second", "third"):
            writer.log(row(name))
        writer.flush()
        assert wait_for(lambda: (writer.flush(), writer.metrics.counters.get("auth_log_errors", 0))[1] >= 1)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE radius_authlog_away RENAME TO radius_authlog")
    assert wait_for(lambda: names() == ["first", "second", "third"])  # retried a second later
    assert writer.dropped == 0


def test_a_stuck_copier_leaves_the_worker_buffer_bounded(world, piped):
    """The copier stopped (SIGSTOP, as if its database hung): the pipe fills, writes to
    it are not made (never blocking the event loop), rows wait in the worker up to
    max_buffer with the oldest dropped; once it resumes the newest rows arrive."""
    writer = piped(max_buffer=300, pipe_size=4096)
    os.kill(writer.copier_pid(), signal.SIGSTOP)
    try:
        for i in range(3000):
            writer.log(row(f"n{i:04d}", calling="x" * 60))
            if i % 100 == 99:
                started = time.monotonic()
                writer.flush()
                assert time.monotonic() - started < 0.1  # never waits for the pipe
        assert writer.pending() <= 300
        assert writer.dropped > 0
    finally:
        os.kill(writer.copier_pid(), signal.SIGCONT)
    writer.stop()
    stored = names()
    assert stored[-1] == "n2999"  # the newest survived
    assert len(stored) + writer.dropped == 3000  # every row is either stored or counted as dropped
    assert stored == sorted(stored)  # in order


def test_a_worker_killed_outright_leaves_its_copier_to_finish(world):
    """SIGKILL to the worker: the kernel closes its end of the pipe; the copier writes
    what it had received (here waiting on a lock meanwhile) and exits."""
    env = {**os.environ, "RADIUS_AUTHLOG_CONNINFO": conninfo_from_django()}
    copier = subprocess.Popen([sys.executable, "-m", "radius.authlog_copier", "--copy-sql", _COPY_SQL],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=BASE)
    lines = "".join(f"\\N\t\\N\tk{i}\t\\N\tt\tok\tpap\t\t2026-12-04 10:00:00.{i:06d}+00\n" for i in range(100))
    with table_locked("radius_authlog"):
        copier.stdin.write(lines.encode())
        copier.stdin.flush()
        copier.stdin.close()  # as the kernel does for a worker killed by SIGKILL
        time.sleep(0.3)
        assert copier.poll() is None  # still waiting to write
    assert copier.wait(10) == 0
    assert sorted(names()) == sorted(f"k{i}" for i in range(100))
    assert copier.stdout.read().decode().startswith("w 100 ")


def test_rows_the_table_refuses_are_dropped_alone(world):
    """A line COPY refuses (here a broken one) is found by halving the batch: the
    others are written, it alone is dropped and reported."""
    out = io.StringIO()
    copier = Copier(conninfo_from_django(), _COPY_SQL, max_bytes=1 << 20, libpq=LibPQ(find_libpq()), out=out)
    good = [f"\\N\t\\N\tg{i}\t\\N\tt\tok\tpap\t\t2026-12-04 10:00:00+00\n" for i in range(7)]
    bad = "\\N\t\\N\tbad\tnot-a-number\tt\tok\tpap\t\t2026-12-04 10:00:00+00\n"
    copier.add("".join(good[:3] + [bad] + good[3:]).encode())
    assert copier.flush()
    assert sorted(names()) == sorted(f"g{i}" for i in range(7))
    reports = out.getvalue().split("\n")
    assert sum(int(r.split()[1]) for r in reports if r.startswith("w ")) == 7
    assert "d 1" in reports
    copier.pq.close()


def test_copier_memory_bound_drops_the_oldest_whole_lines():
    out = io.StringIO()
    copier = Copier("", _COPY_SQL, max_bytes=100, libpq=None, out=out)
    for i in range(10):
        copier.add(f"line-{i:02d}-{'x' * 20}\n".encode())  # 29 bytes each
    assert len(copier.buf) <= 100
    assert bytes(copier.buf).split(b"\n")[:-1] == [f"line-{i:02d}-{'x' * 20}".encode() for i in range(7, 10)]
    assert sum(int(r.split()[1]) for r in out.getvalue().split("\n") if r.startswith("d ")) == 7


def test_threaded_server_with_the_copier_logs_every_decision(world, tmp_path):
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False, auth_log_process=True) as server, \
            UdpClient(server.auth_port) as auth:
        assert isinstance(server.worker.auth_log, PipedAuthLogWriter)
        for password in (PASSWORD, "wrong", PASSWORD):
            raw, _ = access_request("alice", SECRET, password=password, extra=PPP)
            assert decode(auth.ask(raw, timeout=2)).code in (crypto.ACCESS_ACCEPT, crypto.ACCESS_REJECT)
        # handed over by the event loop's own timer, no flush() from here
        assert wait_for(lambda: AuthLog.objects.filter(username="alice").count() == 3)
        assert wait_for(lambda: server.worker.metrics.counters.get("auth_log_written") == 3)
    assert sorted(AuthLog.objects.values_list("accepted", flat=True)) == [False, True, True]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_line_arriving_in_pieces_is_written_whole_without_spinning(world):
    env = {**os.environ, "RADIUS_AUTHLOG_CONNINFO": conninfo_from_django()}
    copier = subprocess.Popen([sys.executable, "-m", "radius.authlog_copier", "--copy-sql", _COPY_SQL],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=BASE)
    try:
        line = b"\\N\t\\N\tpieces\t\\N\tt\tok\tpap\t\t2026-12-04 10:00:00+00\n"
        copier.stdin.write(line[:15])
        copier.stdin.flush()
        time.sleep(0.5)  # started and waiting
        before = _cpu_ticks(copier.pid)
        time.sleep(1.0)
        assert _cpu_ticks(copier.pid) - before <= 2  # asleep, not polling for the rest of the line
        assert AuthLog.objects.count() == 0
        copier.stdin.write(line[15:])
        copier.stdin.flush()
        assert wait_for(lambda: names() == ["pieces"])
    finally:
        copier.stdin.close()
        copier.wait(10)
