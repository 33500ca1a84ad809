"""Accounting over real UDP into PostgreSQL: transitions, 64-bit counters, daily
usage, NAS reboots, the reply-after-commit rule, the spool, stale sessions and
the authorization rules that depend on accounting."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from ispcore.subscribers import services as subscribers
from radius import crypto
from radius.accounting import session_unique_id
from radius.models import AccountingSession, DailyUsage
from radius.packet import decode
from radius.runner import ThreadedServer
from radius.testing import PASSWORD, SECRET, UdpClient, access_request, accounting_request

pytestmark = pytest.mark.django_db(transaction=True)

GB = 1 << 32
PPP = [("Service-Type", 2), ("Framed-Protocol", 1)]


@pytest.fixture
def server(world, tmp_path):
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False) as srv:
        yield srv


@pytest.fixture
def acct(server):
    with UdpClient(server.acct_port) as c:
        yield c


@pytest.fixture
def auth(server):
    with UdpClient(server.auth_port) as c:
        yield c


def send(client, status, **kw):
    raw = accounting_request(SECRET, status, **kw)
    reply = client.ask(raw)
    assert reply is not None, "no Accounting-Response"
    assert reply[0] == crypto.ACCOUNTING_RESPONSE
    assert crypto.verify_response_authenticator(reply, raw[4:20], SECRET)
    return reply


def session(world, sid, user="alice", nas="nas"):
    return AccountingSession.objects.get(unique_id=session_unique_id(world[nas].id, sid, user))


def login(auth, user="alice"):
    raw, _ = access_request(user, SECRET, password=PASSWORD, extra=PPP)
    return decode(auth.ask(raw))


def test_start_interim_stop(acct, world):
    send(acct, "start", username="alice", session_id="81000001",
         extra=[("Framed-IP-Address", "10.0.0.5"), ("Calling-Station-Id", "AA:BB:CC:00:00:01"),
                ("Acct-Interim-Interval", 300), ("NAS-Port-Id", "ether2")])
    s = session(world, "81000001")
    assert s.customer_id == world["alice"].id and s.stopped_at is None and s.tenant_id == world["tenant"].id
    assert (s.framed_ip_address, s.calling_station_id, s.interim_interval, s.nas_port_id) == (
        "10.0.0.5", "AA:BB:CC:00:00:01", 300, "ether2")

    send(acct, "interim", username="alice", session_id="81000001", input_octets=5 * GB + 7,
         output_octets=GB + 3, session_time=300)
    s.refresh_from_db()
    assert (s.input_octets, s.output_octets, s.session_time) == (5 * GB + 7, GB + 3, 300)

    send(acct, "stop", username="alice", session_id="81000001", input_octets=6 * GB, output_octets=2 * GB,
         session_time=600, extra=[("Acct-Terminate-Cause", 1)])
    s.refresh_from_db()
    assert s.stopped_at is not None and s.terminate_cause == "User-Request"
    assert (s.input_octets, s.output_octets, s.session_time) == (6 * GB, 2 * GB, 600)
    usage = DailyUsage.objects.get(customer=world["alice"])
    assert (usage.input_octets, usage.output_octets, usage.session_time) == (6 * GB, 2 * GB, 600)


def test_interim_fills_in_the_address_and_interval_of_an_existing_session(acct, world):
    """The UPDATE path for existing sessions (text sent as binary arrays, numbers and times
    as array literals): an address first reported in an interim, NULL stopped_at kept."""
    send(acct, "start", username="alice", session_id="addr-later")
    assert session(world, "addr-later").framed_ip_address is None
    send(acct, "interim", username="alice", session_id="addr-later", input_octets=3 * GB + 1, output_octets=2,
         session_time=90, extra=[("Framed-IP-Address", "10.1.2.3"), ("Acct-Interim-Interval", 120)])
    s = session(world, "addr-later")
    assert (s.framed_ip_address, s.interim_interval, s.input_octets, s.session_time) == ("10.1.2.3", 120, 3 * GB + 1, 90)
    assert s.stopped_at is None and s.terminate_cause == "" and s.updated_at >= s.started_at


def test_duplicate_stop_and_late_interim_change_nothing(acct, world):
    send(acct, "start", username="alice", session_id="s2")
    send(acct, "stop", username="alice", session_id="s2", input_octets=1000, output_octets=2000, session_time=60)
    send(acct, "stop", username="alice", session_id="s2", input_octets=1000, output_octets=2000, session_time=60,
         ident=77)
    send(acct, "interim", username="alice", session_id="s2", input_octets=9000, output_octets=9000,
         session_time=120)
    s = session(world, "s2")
    assert (s.input_octets, s.output_octets, s.session_time) == (1000, 2000, 60)
    usage = DailyUsage.objects.get(customer=world["alice"])
    assert (usage.input_octets, usage.output_octets) == (1000, 2000)


def test_missing_start_interim_creates_session(acct, world):
    before = timezone.now()
    send(acct, "interim", username="alice", session_id="late-1", input_octets=10, output_octets=20,
         session_time=3600)
    s = session(world, "late-1")
    assert s.stopped_at is None and s.input_octets == 10
    assert abs((s.started_at - (before - timedelta(seconds=3600))).total_seconds()) < 5


def test_out_of_order_interims(acct, world):
    send(acct, "start", username="alice", session_id="ooo")
    send(acct, "interim", username="alice", session_id="ooo", input_octets=500, output_octets=800, session_time=600)
    send(acct, "interim", username="alice", session_id="ooo", input_octets=200, output_octets=300, session_time=300)
    s = session(world, "ooo")
    assert (s.input_octets, s.output_octets, s.session_time) == (500, 800, 600)
    assert DailyUsage.objects.get(customer=world["alice"]).output_octets == 800


def test_retransmitted_accounting_answered_from_cache_and_applied_once(acct, server, world):
    send(acct, "start", username="alice", session_id="dup")
    raw = accounting_request(SECRET, "interim", username="alice", session_id="dup", input_octets=100,
                             output_octets=100, session_time=60)
    assert acct.ask(raw) == acct.ask(raw)
    assert server.worker.metrics.counters["duplicates"] == 1
    assert DailyUsage.objects.get(customer=world["alice"]).input_octets == 100


def test_unknown_user_still_recorded(acct, world):
    send(acct, "start", username="ghost", session_id="g1")
    s = session(world, "g1", user="ghost")
    assert s.customer_id is None


def test_wrong_secret_accounting_dropped(acct, server):
    raw = accounting_request(b"other-secret", "start", username="alice", session_id="x")
    assert acct.ask(raw, timeout=0.5) is None
    assert server.worker.metrics.counters["drops{bad_authenticator}"] == 1
    assert not AccountingSession.objects.exists()


def test_accounting_on_off_closes_only_that_nas(server, world):
    other = subscribers.create_nas(actor=world["super"], tenant=world["tenant"], name="NAS 2",
                                   ip_address="127.0.0.3", secret=SECRET.decode())
    world["nas2"] = other
    server.worker.snapshot.load_all()
    with UdpClient(server.acct_port) as one, UdpClient(server.acct_port, source="127.0.0.3") as two:
        send(one, "start", username="alice", session_id="a1")
        send(one, "start", username="dual", session_id="a2")
        send(two, "start", username="burst", session_id="b1")
        time.sleep(0.01)
        send(one, "on")
        assert session(world, "a1").stopped_at is not None
        assert session(world, "a1").terminate_cause == "NAS-Reboot"
        assert session(world, "a2", user="dual").stopped_at is not None
        assert session(world, "b1", user="burst", nas="nas2").stopped_at is None
        # a session started after the reboot stays open
        send(one, "start", username="alice", session_id="a3")
        send(two, "off")
        assert session(world, "b1", user="burst", nas="nas2").terminate_cause == "NAS-Request"
        assert session(world, "a3").stopped_at is None
    assert AccountingSession.objects.count() == 4  # history kept


def test_reply_only_after_commit(acct, world):
    """Hold a lock on the sessions table: the server cannot commit, so it must not answer."""
    got: list = []
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("LOCK TABLE radius_accountingsession IN ACCESS EXCLUSIVE MODE")
        raw = accounting_request(SECRET, "start", username="alice", session_id="held")

        def ask():
            got.append(acct.ask(raw, timeout=5))

        t = threading.Thread(target=ask)
        t.start()
        time.sleep(0.6)
        assert not got, "answered before the record was committed"
    t.join(6)
    assert got and got[0] is not None
    assert session(world, "held").stopped_at is None


def test_database_down_spools_then_replays(acct, server, world, monkeypatch, tmp_path):
    import radius.accounting as accounting

    down = {"on": True}

    def flaky(real):
        def write(records):
            if down["on"]:
                raise OperationalError("server closed the connection unexpectedly")
            return real(records)
        return write

    # both paths: the pipelined batch write and the one used for replays
    monkeypatch.setattr(accounting, "apply_batch", flaky(accounting.apply_batch))
    monkeypatch.setattr(accounting, "write_batch_pipelined", flaky(accounting.write_batch_pipelined))
    send(acct, "start", username="alice", session_id="sp1")
    send(acct, "interim", username="alice", session_id="sp1", input_octets=10, output_octets=20, session_time=60)
    spool = tmp_path / "spool-0.jsonl"
    assert spool.exists() and len(spool.read_text().splitlines()) == 2
    assert not AccountingSession.objects.exists()
    # authentication goes on from the snapshot meanwhile
    with UdpClient(server.auth_port) as auth:
        assert login(auth, "burst").code == crypto.ACCESS_ACCEPT
    down["on"] = False
    deadline = time.monotonic() + 5
    while spool.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not spool.exists()
    s = session(world, "sp1")
    assert (s.input_octets, s.output_octets) == (10, 20)
    assert server.worker.metrics.counters["acct_spooled"] == 2


# -- authorization that depends on accounting ------------------------------


def test_simultaneous_use_limit(acct, auth):
    assert login(auth).code == crypto.ACCESS_ACCEPT
    send(acct, "start", username="alice", session_id="su1")
    reply = login(auth)
    assert reply.code == crypto.ACCESS_REJECT and reply.text(18) == "Simultaneous-use limit reached"
    send(acct, "stop", username="alice", session_id="su1", session_time=10)
    assert login(auth).code == crypto.ACCESS_ACCEPT


def test_simultaneous_use_two(acct, auth):
    send(acct, "start", username="dual", session_id="d1")
    assert login(auth, "dual").code == crypto.ACCESS_ACCEPT
    send(acct, "start", username="dual", session_id="d2")
    assert login(auth, "dual").code == crypto.ACCESS_REJECT


def test_data_quota(acct, auth):
    assert login(auth, "quota_data").code == crypto.ACCESS_ACCEPT
    send(acct, "start", username="quota_data", session_id="q1")
    send(acct, "stop", username="quota_data", session_id="q1", input_octets=600_000, output_octets=600_000,
         session_time=30)
    reply = login(auth, "quota_data")
    assert reply.code == crypto.ACCESS_REJECT and reply.text(18) == "Data quota exhausted"


def test_time_quota_and_session_timeout(acct, auth):
    reply = login(auth, "quota_time")
    assert reply.integer(27) == 600
    send(acct, "start", username="quota_time", session_id="t1")
    send(acct, "stop", username="quota_time", session_id="t1", session_time=400)
    assert login(auth, "quota_time").integer(27) == 200
    send(acct, "start", username="quota_time", session_id="t2")
    send(acct, "stop", username="quota_time", session_id="t2", session_time=200)
    reply = login(auth, "quota_time")
    assert reply.code == crypto.ACCESS_REJECT and reply.text(18) == "Time quota exhausted"


def test_stale_sessions_closed_without_deleting(world):
    from radius.services import close_stale_sessions

    now = timezone.now()
    common = {"tenant_id": world["tenant"].id, "nas_id": world["nas"].id, "customer_id": world["alice"].id,
              "username": "alice"}
    fresh = AccountingSession.objects.create(unique_id="f" * 32, acct_session_id="f", started_at=now,
                                             updated_at=now - timedelta(seconds=800), interim_interval=300, **common)
    stale = AccountingSession.objects.create(unique_id="s" * 32, acct_session_id="s", started_at=now,
                                             updated_at=now - timedelta(seconds=901), interim_interval=300, **common)
    default = AccountingSession.objects.create(unique_id="d" * 32, acct_session_id="d", started_at=now,
                                               updated_at=now - timedelta(seconds=1000), **common)
    assert close_stale_sessions(now=now) == 2
    fresh.refresh_from_db()
    stale.refresh_from_db()
    default.refresh_from_db()
    assert fresh.stopped_at is None
    assert stale.stopped_at == stale.updated_at and stale.terminate_cause == "Stale-Session"
    assert default.stopped_at is not None
    assert AccountingSession.objects.count() == 3


def test_record_refused_by_the_database_does_not_block_the_batch(acct, world, monkeypatch, tmp_path):
    from django.db import DataError

    import radius.accounting as accounting

    def picky(real):
        def write(records):
            if any(r.username == "burst" for r in records):
                raise DataError("value refused")
            return real(records)
        return write

    monkeypatch.setattr(accounting, "apply_batch", picky(accounting.apply_batch))
    monkeypatch.setattr(accounting, "write_batch_pipelined", picky(accounting.write_batch_pipelined))
    raws = [accounting_request(SECRET, "start", username=user, session_id=f"r-{user}") for user in ("alice", "burst")]
    for raw in raws:
        acct.send(raw)
    assert acct.recv(2) is not None and acct.recv(2) is not None
    assert AccountingSession.objects.filter(username="alice").exists()
    assert not AccountingSession.objects.filter(username="burst").exists()
    refused = (tmp_path / "spool-0.refused.jsonl").read_text().splitlines()
    assert len(refused) == 1 and '"burst"' in refused[0]


def test_value_out_of_range_refused_by_postgresql_alone(acct, world, tmp_path):
    """A real refusal (Acct-Interim-Interval beyond PostgreSQL's integer) in a pipelined
    batch: the batch is rolled back, the good record written on its own, both answered."""
    raws = [
        accounting_request(SECRET, "start", username="alice", session_id="fine"),
        accounting_request(SECRET, "start", username="burst", session_id="huge", extra=[("Acct-Interim-Interval", 3_000_000_000)]),
    ]
    for raw in raws:
        acct.send(raw)
    assert acct.recv(3) is not None and acct.recv(3) is not None
    assert session(world, "fine").stopped_at is None
    assert not AccountingSession.objects.filter(acct_session_id="huge").exists()
    refused = (tmp_path / "spool-0.refused.jsonl").read_text().splitlines()
    assert len(refused) == 1 and '"huge"' in refused[0]
    # the writer's connection is usable afterwards
    send(acct, "interim", username="alice", session_id="fine", input_octets=5, output_octets=6, session_time=60)
    assert (session(world, "fine").input_octets, session(world, "fine").output_octets) == (5, 6)


def test_session_table_has_no_index_an_interim_changes(world):
    """Interim-Updates stay heap-only (HOT) updates: no index, and no partial-index
    predicate besides stopped_at, covers a column an interim changes."""
    from django.db import connection

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "radius_accountingsession")
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'radius_accountingsession'")
        options = cursor.fetchone()[0]
    indexed = {col for c in constraints.values() if c["index"] or c["unique"] for col in c["columns"]}
    changed_by_interim = {"updated_at", "session_time", "input_octets", "output_octets", "input_packets",
                          "output_packets", "framed_ip_address", "interim_interval"}
    assert not indexed & changed_by_interim
    assert "fillfactor=85" in options
    # and no redundant single-column twins of composite indexes
    singles = [c["columns"] for c in constraints.values() if c["index"] and len(c["columns"]) == 1]
    assert ["tenant_id"] not in singles


def test_nul_characters_are_dropped(acct, world):
    send(acct, "start", username="alice", session_id="a\x00b")
    assert session(world, "ab").acct_session_id == "ab"


def test_auth_log_trimmed_to_the_newest(world):
    from radius.models import AuthLog
    from radius.services import trim_auth_log

    now = timezone.now()
    AuthLog.objects.bulk_create([AuthLog(username=f"u{i}", accepted=True, reason="ok", created_at=now)
                                 for i in range(30)])
    assert trim_auth_log(keep=10) == 20
    assert sorted(AuthLog.objects.values_list("username", flat=True)) == sorted(f"u{i}" for i in range(20, 30))
    assert trim_auth_log(keep=10) == 0
