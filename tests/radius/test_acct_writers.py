"""The accounting writer threads: records of one session stay on one thread, several
threads write a mixed load exactly (real threads, real PostgreSQL), open-session
counts are read only when sessions open or close, usage counts on the tenant's own
day, a deadlock is retried instead of spooled; and the latency guards around them
(garbage-collection pauses timed and exported, the expired duplicate cache freed in
chunks)."""

from __future__ import annotations

import gc
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.utils import timezone

from ispcore.accounts.models import Tenant
from radius import accounting
from radius.accounting import AccountingWriter, AcctRecord, apply_batch, session_unique_id
from radius.metrics import Metrics, prometheus_text, watch_gc
from radius.models import AccountingSession, DailyUsage
from radius.packet import decode
from radius.runner import ThreadedServer
from radius.testing import PASSWORD, SECRET, UdpClient, access_request

pytestmark = pytest.mark.django_db(transaction=True)

PPP = [("Service-Type", 2), ("Framed-Protocol", 1)]


def record(world, status, sid, user="alice", *, at=None, octets=0, seconds=0):
    customer = world[user]
    return AcctRecord(
        status=status, tenant_id=customer.tenant_id, nas_id=world["nas"].id,
        event_ts=at if at is not None else time.time(), customer_id=customer.id,
        unique_id=session_unique_id(world["nas"].id, sid, user), acct_session_id=sid, username=user,
        session_time=seconds, input_octets=octets, output_octets=2 * octets,
    )


class Recorder:
    """on_commit hook: what the writers told the snapshot, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[set[int], dict[int, int]]] = []
        self.lock = threading.Lock()

    def __call__(self, touched, counts) -> None:
        with self.lock:
            self.calls.append((set(touched), dict(counts)))


def write_all(writer: AccountingWriter, records: list[AcctRecord], timeout: float = 30.0) -> None:
    done = threading.Semaphore(0)
    results = []

    def callback(ok: bool) -> None:
        results.append(ok)
        done.release()

    for r in records:
        writer.submit(r, callback)
    deadline = time.monotonic() + timeout
    for _ in records:
        assert done.acquire(timeout=max(0.0, deadline - time.monotonic())), "a record was never acknowledged"
    assert all(results)


def test_records_of_one_session_always_go_to_the_same_writer(tmp_path):
    writer = AccountingWriter(spool_path=tmp_path / "spool.jsonl", writers=4)
    seen: dict[str, set[int]] = {}
    for n in range(400):
        uid = session_unique_id(1, f"{n:08X}", f"user{n % 7}")
        for _ in range(3):
            writer.submit(AcctRecord(status="interim", tenant_id=1, nas_id=1, event_ts=0.0, unique_id=uid),
                          lambda ok: None)
        seen[uid] = {i for i, q in enumerate(writer._queues) if any(item[0].unique_id == uid for item in _drain(q))}
    assert all(len(queues) == 1 for queues in seen.values())
    # and the sessions spread over every writer
    assert {next(iter(q)) for q in seen.values()} == {0, 1, 2, 3}
    # Accounting-On/Off (a whole NAS) always go to the first writer
    for n in range(20):
        uid = session_unique_id(1, "", f"nas-reboot-{n}")
        writer.submit(AcctRecord(status="on", tenant_id=1, nas_id=1, event_ts=0.0, unique_id=uid), lambda ok: None)
    assert [item[0].status for item in _drain(writer._queues[0])].count("on") == 20


def _drain(q):
    items = []
    while not q.empty():
        items.append(q.get_nowait())
    for item in items:
        q.put(item)
    return items


def test_two_writers_write_a_mixed_load_exactly(world, tmp_path):
    """200 sessions of four customers, each Start, five Interim-Updates and a Stop,
    through two writer threads in batches of 25: every session ends closed with its
    last counters, and each customer's daily usage is the sum of its sessions."""
    users = ["alice", "burst", "dual", "forever"]
    recorder = Recorder()
    writer = AccountingWriter(spool_path=tmp_path / "spool.jsonl", on_commit=recorder, batch_max=25, writers=2)
    writer.start()
    try:
        now = time.time()
        records = []
        for step in range(7):
            for n in range(200):
                user = users[n % len(users)]
                sid = f"mix-{n:04d}"
                if step == 0:
                    records.append(record(world, "start", sid, user, at=now - 600))
                elif step < 6:
                    records.append(record(world, "interim", sid, user, at=now - 600 + 60 * step,
                                          octets=1000 * step + n, seconds=60 * step))
                else:
                    records.append(record(world, "stop", sid, user, at=now - 200, octets=7000 + n, seconds=400))
        write_all(writer, records)
    finally:
        writer.stop()
    sessions = AccountingSession.objects.filter(acct_session_id__startswith="mix-")
    assert sessions.count() == 200
    assert not sessions.filter(stopped_at=None).exists()
    for s in sessions:
        n = int(s.acct_session_id[4:])
        assert (s.input_octets, s.output_octets, s.session_time) == (7000 + n, 2 * (7000 + n), 400)
    for user in users:
        expected_in = sum(7000 + n for n in range(200) if users[n % len(users)] == user)
        usage = DailyUsage.objects.filter(customer=world[user])
        assert sum(u.input_octets for u in usage) == expected_in
        assert sum(u.output_octets for u in usage) == 2 * expected_in
    # the last open-session count the snapshot heard for each customer is 0
    last: dict[int, int] = {}
    for _, counts in recorder.calls:
        last.update(counts)
    assert {last[world[u].id] for u in users} == {0}


def test_open_session_counts_are_read_only_when_sessions_open_or_close(world, tmp_path):
    recorder = Recorder()
    writer = AccountingWriter(spool_path=tmp_path / "spool.jsonl", on_commit=recorder, writers=2)
    writer.start()
    alice = world["alice"].id
    try:
        write_all(writer, [record(world, "start", "cnt-1")])
        write_all(writer, [record(world, "interim", "cnt-1", octets=500, seconds=60)])
        write_all(writer, [record(world, "stop", "cnt-1", octets=900, seconds=120)])
    finally:
        writer.stop()
    assert recorder.calls == [({alice}, {alice: 1}), ({alice}, {}), ({alice}, {alice: 0})]


def test_daily_usage_counts_on_the_tenants_own_day(world):
    """20:30 UTC is already the next day in Dhaka (UTC+6) but not in London in winter."""
    day = timezone.now().astimezone(UTC).date() - timedelta(days=1)
    late_evening = datetime(day.year, day.month, day.day, 20, 30, tzinfo=UTC).timestamp()
    tenant = world["tenant"]
    assert tenant.timezone == "Asia/Dhaka"
    accounting._ZONES.clear()
    from django.db import transaction

    with transaction.atomic():
        apply_batch([record(world, "start", "day-1", at=late_evening - 60),
                     record(world, "interim", "day-1", at=late_evening, octets=100, seconds=60)])
    assert DailyUsage.objects.get(customer=world["alice"]).day == day + timedelta(days=1)

    Tenant.objects.filter(pk=tenant.pk).update(timezone="Europe/London")
    accounting._ZONES.clear()
    with transaction.atomic():
        apply_batch([record(world, "interim", "day-1", at=late_evening + 60, octets=300, seconds=120)])
    rows = {u.day: u.input_octets for u in DailyUsage.objects.filter(customer=world["alice"])}
    assert rows == {day + timedelta(days=1): 100, day: 200}
    accounting._ZONES.clear()


def test_a_deadlock_is_retried_not_spooled(world, tmp_path, monkeypatch):
    calls = []
    real = accounting.write_batch_pipelined

    def deadlock_once(records):
        calls.append(len(records))
        if len(calls) == 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        return real(records)

    monkeypatch.setattr(accounting, "write_batch_pipelined", deadlock_once)
    writer = AccountingWriter(spool_path=tmp_path / "spool.jsonl", writers=1)
    writer.start()
    try:
        write_all(writer, [record(world, "start", "dl-1")])
    finally:
        writer.stop()
    assert calls == [1, 1]
    assert AccountingSession.objects.filter(acct_session_id="dl-1").exists()
    assert not (tmp_path / "spool.jsonl").exists()
    assert writer.db_ok


def test_garbage_collection_pauses_are_timed_and_exported():
    metrics = Metrics()
    callback = watch_gc(metrics)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    buckets, total, count = metrics.histograms["gc_pause_seconds{gen2}"]
    assert count >= 1 and sum(buckets) == count and total >= 0
    text = prometheus_text({"workers": 1, "counters": {}, "histograms": metrics.as_dict()["histograms"]})
    assert "# TYPE radius_gc_pause_seconds histogram" in text
    assert f'radius_gc_pause_seconds_bucket{{generation="gen2",le="+Inf"}} {count}' in text
    assert f'radius_gc_pause_seconds_count{{generation="gen2"}} {count}' in text


def test_latency_histogram_buckets_are_upper_bounds():
    metrics = Metrics()
    for seconds in (0.0001, 0.0005, 0.0006, 0.003, 99.0):
        metrics.observe("auth_latency_seconds", seconds)
    buckets = metrics.histograms["auth_latency_seconds"][0]
    # <= 0.5 ms twice, <= 1 ms once, <= 5 ms once, above the last bound once
    assert buckets[0] == 2 and buckets[1] == 1 and buckets[3] == 1 and buckets[-1] == 1


def test_the_expired_duplicate_generation_is_freed_in_chunks(world, tmp_path):
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False, auth_log="none") as server, \
            UdpClient(server.auth_port) as client:
        radius = server.worker.server
        expired = {i.to_bytes(4, "big") * 6: None for i in range(10_000)}
        steps = []
        real_drain = radius._drain

        def counting_drain(d):
            steps.append(len(d))
            real_drain(d)

        radius._drain = counting_drain
        radius._dedup_old = expired
        server.worker.loop.call_soon_threadsafe(radius._rotate)
        raw, _ = access_request("alice", SECRET, password=PASSWORD, extra=PPP)
        assert decode(client.ask(raw)).code == 2  # answering goes on meanwhile
        deadline = time.monotonic() + 5
        while expired and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not expired
        assert len(steps) == 5 and steps[0] == 10_000  # 2,000 entries a step, between datagrams


def test_snapshot_loads_are_kept_out_of_the_collectors_reach(world):
    """radiusd's snapshot: no collection walks the entries while they are built, and
    afterwards they are frozen (in no generation), with the collector enabled again."""
    from radius.snapshot import Snapshot

    snapshot = Snapshot()
    snapshot.freeze_gc = True
    started = []

    def callback(phase, info):
        if phase == "start":
            started.append(info["generation"])

    gc.callbacks.append(callback)
    try:
        snapshot.load_all()
        snapshot.reload_customers([world["alice"].id])
        entry = snapshot.customers[(world["tenant"].id, "alice")]
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0
        assert not any(obj is entry for obj in gc.get_objects())
    finally:
        gc.callbacks.remove(callback)
        gc.unfreeze()
    assert started == []
