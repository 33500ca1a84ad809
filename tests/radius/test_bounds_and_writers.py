"""Memory bounds and the writer threads: the duplicate cache (RFC 5080 window,
bounded size), the authentication log written from its own thread with its own
connection (COPY), bounded when the database cannot keep up."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from radius import crypto
from radius.authlog import AuthLogWriter
from radius.models import AccountingSession, AuthLog
from radius.packet import decode
from radius.runner import ThreadedServer
from radius.testing import PASSWORD, SECRET, UdpClient, access_request, accounting_request, table_locked, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

PPP = [("Service-Type", 2), ("Framed-Protocol", 1)]


# -- duplicate cache -------------------------------------------------------


def test_duplicate_cache_is_bounded_and_keeps_the_newest(world, tmp_path):
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False, auth_log="none") as server, \
            UdpClient(server.auth_port) as client:
        radius = server.worker.server
        radius.dedup_max = 10
        packets = [access_request("alice", SECRET, password=PASSWORD, extra=PPP)[0] for _ in range(30)]
        replies = [client.ask(raw) for raw in packets]
        assert all(decode(r).code == crypto.ACCESS_ACCEPT for r in replies)
        assert radius.dedup_size() <= 10
        # the newest request is still remembered: its retransmission gets the same reply, not a new decision
        assert client.ask(packets[-1]) == replies[-1]
        counters = server.worker.metrics.counters
        assert counters["duplicates"] == 1
        assert counters["accepts"] == 30
        # the oldest was forgotten early (flood): a retransmission is decided again
        assert decode(client.ask(packets[0])).code == crypto.ACCESS_ACCEPT
        assert counters["accepts"] == 31


def test_duplicate_cache_forgets_after_the_retransmit_window(world, tmp_path):
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False, auth_log="none", dedup_ttl=0.5) as server, \
            UdpClient(server.auth_port) as client:
        radius = server.worker.server
        raw, _ = access_request("alice", SECRET, password=PASSWORD, extra=PPP)
        first = client.ask(raw)
        assert client.ask(raw) == first  # within the window: from the cache
        counters = server.worker.metrics.counters
        assert counters["duplicates"] == 1
        # the sweeper rotates once a second: after two rotations the entry is gone
        assert wait_for(lambda: radius.dedup_size() == 0, timeout=4)
        again = client.ask(raw)
        assert decode(again).code == crypto.ACCESS_ACCEPT
        assert counters["accepts"] == 2 and counters["duplicates"] == 1


def test_duplicate_key_includes_the_source_port(world, tmp_path):
    """The same packet from another source port is another request (RFC 5080 2.2.2)."""
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False, auth_log="none") as server, \
            UdpClient(server.auth_port) as one, UdpClient(server.auth_port) as two:
        raw, _ = access_request("alice", SECRET, password=PASSWORD, extra=PPP)
        assert decode(one.ask(raw)).code == crypto.ACCESS_ACCEPT
        assert decode(two.ask(raw)).code == crypto.ACCESS_ACCEPT
        assert server.worker.metrics.counters["accepts"] == 2
        assert "duplicates" not in server.worker.metrics.counters


# -- authentication log writer ----------------------------------------------


def test_auth_log_rows_written_by_copy_with_every_field(world):
    writer = AuthLogWriter(interval=0.05)
    now = time.time()
    nas = world["nas"]
    writer.log((nas.tenant_id, nas.ip_address, "alice", 42, True, "ok", "pap", "AA:BB", now))
    writer.log((nas.tenant_id, nas.ip_address, "nobody", None, False, "unknown_user", "chap", "", now + 1))
    writer.start()
    try:
        assert wait_for(lambda: AuthLog.objects.count() == 2)
    finally:
        writer.stop()
    rows = {r.username: r for r in AuthLog.objects.all()}
    alice = rows["alice"]
    assert (alice.tenant_id, alice.nas_ip_address, alice.customer_id, alice.accepted, alice.reason, alice.method,
            alice.calling_station_id) == (nas.tenant_id, nas.ip_address, 42, True, "ok", "pap", "AA:BB")
    assert abs(alice.created_at.timestamp() - now) < 1e-3
    assert rows["nobody"].customer_id is None and rows["nobody"].reason == "unknown_user"
    assert writer.written == 2 and writer.pending() == 0


def test_auth_log_buffer_is_bounded_and_drops_the_oldest(world):
    writer = AuthLogWriter(max_buffer=5)  # not started: nothing drains the buffer
    for i in range(12):
        writer.log((None, None, f"u{i}", None, True, "ok", "pap", "", time.time()))
    assert writer.pending() == 5
    assert writer.dropped == 7
    assert writer.flush() == 5
    assert sorted(AuthLog.objects.values_list("username", flat=True)) == sorted(f"u{i}" for i in range(7, 12))


def test_auth_log_long_or_nul_text_is_cut_not_refused(world):
    writer = AuthLogWriter()
    writer.log((None, None, "x" * 300, None, False, "wrong_password", "pap", "a\x00b" + "c" * 100, time.time()))
    writer.log((None, None, "nul\x00name", None, True, "ok", "pap", "", time.time()))
    assert writer.flush() == 2
    assert sorted(AuthLog.objects.values_list("username", "calling_station_id")) == [
        ("nulname", ""), ("x" * 253, "ab" + "c" * 62)]


def test_auth_log_text_with_copy_special_characters_is_stored_exactly(world):
    """Rows go to COPY as text lines formatted on the event loop: tabs, newlines,
    backslashes (and a literal \\N or \\.) in what a NAS sent must arrive unchanged."""
    writer = AuthLogWriter()
    assert writer.copy  # PostgreSQL: COPY text lines
    names = ["tab\there", "new\nline", "back\\slash\\N", "cr\rx", "বাংলা-গ্রাহক", "\\.", "\\N", "end\\"]
    now = time.time()
    for name in names:
        writer.log((None, None, name, None, True, "ok", "pap", name[:10], now))
    assert writer.flush() == len(names)
    rows = sorted(AuthLog.objects.values_list("username", "calling_station_id", "customer_id", "nas_ip_address"))
    assert rows == sorted((name, name[:10], None, None) for name in names)
    assert {abs(t.timestamp() - now) < 1e-5 for t in AuthLog.objects.values_list("created_at", flat=True)} == {True}


def test_auth_log_write_failure_keeps_the_rows_for_the_next_flush(world):
    writer = AuthLogWriter(max_buffer=100)
    writer._stopping.set()  # no 1 s back-off after a failure in this test
    for name in ("first", "second"):
        writer.log((None, None, name, None, True, "ok", "pap", "", time.time()))
    with connection.cursor() as cursor:  # a real failure: the table is not there
        cursor.execute("ALTER TABLE radius_authlog RENAME TO radius_authlog_away")
    try:
        assert writer.flush() == 0
        writer.log((None, None, "third", None, True, "ok", "pap", "", time.time()))
        assert writer.pending() == 3
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE radius_authlog_away RENAME TO radius_authlog")
    assert writer.flush() == 3
    assert list(AuthLog.objects.order_by("id").values_list("username", flat=True)) == ["first", "second", "third"]


def test_auth_log_blocked_does_not_delay_replies_or_accounting(world, tmp_path):
    """With radius_authlog locked by another transaction, Access-Requests are still
    answered at once and accounting still commits; the log rows arrive afterwards."""
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False) as server, \
            UdpClient(server.auth_port) as auth, UdpClient(server.acct_port) as acct:
        server.worker.auth_log.interval = 0.05
        with table_locked("radius_authlog"):
            started = time.monotonic()
            for _ in range(20):
                raw, _ = access_request("alice", SECRET, password=PASSWORD, extra=PPP)
                assert decode(auth.ask(raw, timeout=2)).code == crypto.ACCESS_ACCEPT
            assert time.monotonic() - started < 2
            reply = acct.ask(accounting_request(SECRET, "start", username="alice", session_id="while-locked"),
                             timeout=3)
            assert reply is not None and reply[0] == crypto.ACCOUNTING_RESPONSE
            assert AccountingSession.objects.filter(acct_session_id="while-locked").exists()
            time.sleep(0.3)
            assert server.worker.auth_log.written == 0  # its COPY still waits for the lock
        assert wait_for(lambda: AuthLog.objects.filter(username="alice").count() == 20)
