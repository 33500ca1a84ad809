"""Receipts by group commit: stored in batches on the writer thread, acknowledged to the
SMSC only after their batch committed (durably by default), the I/O thread never waiting
for the database; and the send path's statement count does not grow with the batch."""
from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications import reports
from notifications.campaigns import create_campaign, start_campaign
from notifications.models import DeliveryReport, Message, MessagePart
from notifications.smpp import Outcome, SubmitResult
from notifications.worker import build_route_providers, claim, record_results
from tests.notifications.smscore_support import make_super, make_tenant
from tests.peers.smsc import SMSCSimulator

ESME_RX_T_APPN = 0x64
M = Message.State
P = MessagePart.State


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _other_connection() -> psycopg.Connection:
    s = connection.settings_dict
    return psycopg.connect(host=s["HOST"] or "127.0.0.1", port=s["PORT"] or 5432, user=s["USER"],
                           dbname=s["NAME"], password=s.get("PASSWORD") or None)


def _lock_receipts(other: psycopg.Connection) -> None:
    """Make every INSERT into the receipts table wait (until ``other`` rolls back)."""
    other.execute(f"LOCK TABLE {DeliveryReport._meta.db_table} IN SHARE ROW EXCLUSIVE MODE")


def _started_provider(route):
    provider = build_route_providers([route])[route.name]
    provider.start()
    return provider


@pytest.mark.django_db(transaction=True)
def test_receipts_are_acknowledged_only_after_their_batch_commits_and_the_io_thread_keeps_reading():
    su = make_super()
    with SMSCSimulator("ispsms", "secret") as sim:
        tenant, route = make_tenant(su, "isp-gc", port=sim.port)
        provider = _started_provider(route)
        writer = reports.receipt_writer()
        batches0, stored0 = writer.batches, writer.stored
        other = _other_connection()
        try:
            _lock_receipts(other)
            for i in range(6):
                sim.send_receipt(f"gc{i}", source=f"88017110000{i:02d}")
            assert _wait(lambda: provider.client.counters["receipts"] == 6)
            # while the receipts wait for the database, nothing is acknowledged ...
            time.sleep(0.3)
            assert sim.deliver_resps == []
            assert DeliveryReport.objects.count() == 0
            # ... and the I/O thread still reads: a submit gets its response meanwhile
            futures = provider.submit("8801711000099", "DhakaFiber", "hello", ref=1, timeout=5)
            result = futures[0].result(timeout=5)
            assert result.outcome is Outcome.ACCEPTED
            other.rollback()
            assert _wait(lambda: len(sim.deliver_resps) == 6)
        finally:
            other.close()
            provider.stop()
            writer.stop()
        assert {status for _, status in sim.deliver_resps} == {0}
        assert sorted(DeliveryReport.objects.values_list("message_id", flat=True)) == [f"gc{i}" for i in range(6)]
        assert writer.stored - stored0 == 6
        # the first INSERT waited on the lock; the five behind it went in one statement
        assert writer.batches - batches0 <= 2


@pytest.mark.django_db(transaction=True)
def test_a_failed_batch_is_answered_with_an_error_and_the_smsc_redelivers_it():
    su = make_super()
    with SMSCSimulator("ispsms", "secret", redeliver=True, redeliver_delay=0.2) as sim:
        tenant, route = make_tenant(su, "isp-gcfail", port=sim.port)
        provider = _started_provider(route)
        writer = reports.receipt_writer()
        other = _other_connection()
        try:
            _lock_receipts(other)
            for i in range(3):
                sim.send_receipt(f"rd{i}", source=f"88017120000{i:02d}")

            def writer_pid():
                other.execute("SELECT pg_stat_clear_snapshot()")  # a fresh view inside the locking transaction
                row = other.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                    [f"INSERT INTO {DeliveryReport._meta.db_table}%"]).fetchone()
                return row[0] if row else None

            assert _wait(lambda: writer_pid() is not None)
            other.execute("SELECT pg_terminate_backend(%s)", [writer_pid()])  # the database "fails"
            assert _wait(lambda: any(status == ESME_RX_T_APPN for _, status in sim.deliver_resps))
            other.rollback()
            assert _wait(lambda: DeliveryReport.objects.count() == 3 and sim.counters["redelivered"] >= 1)
            assert _wait(lambda: sum(1 for _, status in sim.deliver_resps if status == 0) == 3)
        finally:
            other.close()
            provider.stop()
            writer.stop()
        # nothing lost, nothing stored twice
        assert sorted(DeliveryReport.objects.values_list("message_id", flat=True)) == ["rd0", "rd1", "rd2"]
        assert provider.client.counters["receipts_not_stored"] >= 1


@pytest.mark.django_db(transaction=True)
def test_receipts_are_durable_by_default(settings):
    from types import SimpleNamespace

    receipt = SimpleNamespace(message_id="d1", message_key="d1", stat="DELIVRD", err="000", message_state=2,
                              source_addr="8801711000001", done_date=None, received_at=timezone.now(), raw="")
    assert reports.store_receipts([("p", receipt)]) == 1
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
    settings.SMS_RECEIPT_ASYNC_COMMIT = True  # the documented opt-out
    reports.store_receipts([("p", receipt)])
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "off"
    assert DeliveryReport.objects.filter(message_id="d1").count() == 2


def _claimed_and_accepted(tenant, su, n: int, tag: str):
    numbers = [f"017{tag}{i:07d}" for i in range(n)]
    start_campaign(create_campaign(tenant=tenant, actor=su, name=tag, body="নোটিশ: bill due",
                                   audience={"kind": "numbers", "numbers": numbers}, promotional=False), actor=su)
    batch = claim(f"w{tag}", n)
    assert len(batch) == n
    return f"w{tag}", {m.pk: ("sim-isp-stmts", [SubmitResult(m.pk, 0, 1, Outcome.ACCEPTED, 1, 0, f"{tag}-{m.pk}",
                                                              f"{tag}-{m.pk}")], "") for m in batch}


@pytest.mark.django_db
def test_recording_and_matching_take_the_same_statements_for_10_or_120_messages(settings):
    settings.SMS_DISPATCH_ON_COMMIT = False
    su = make_super()
    tenant, route = make_tenant(su, "isp-stmts", route_name="sim-isp-stmts", credit_amount="5000")
    statements = {}
    for n, tag in ((10, "1"), (120, "2")):
        worker, results = _claimed_and_accepted(tenant, su, n, tag)
        with CaptureQueriesContext(connection) as recorded:
            assert record_results(worker, results) == {"submitted": n}
        statements[("record", n)] = len(recorded)
        now = timezone.now()
        DeliveryReport.objects.bulk_create([
            DeliveryReport(provider="sim-isp-stmts", message_id=key, message_key=key, stat="DELIVRD",
                           state=P.DELIVERED, recipient="x", received_at=now - timedelta(seconds=1))
            for _, (_, parts, _) in results.items() for key in [parts[0].message_key]])
        with CaptureQueriesContext(connection) as recorded:
            assert reports.apply_reports() == n
        statements[("match", n)] = len(recorded)
        ids = list(results)
        assert Message.objects.filter(pk__in=ids, state=M.DELIVERED).count() == n
        assert MessagePart.objects.filter(message_id__in=ids, state=P.DELIVERED).count() == n
    assert statements[("record", 10)] == statements[("record", 120)]
    assert statements[("match", 10)] == statements[("match", 120)]
    assert statements[("record", 120)] <= 25 and statements[("match", 120)] <= 10, statements


@pytest.mark.django_db
def test_route_balances_are_refreshed_from_the_providers_that_offer_one():
    from decimal import Decimal

    from notifications.models import ProviderRoute
    from notifications.tasks import refresh_balances_task
    from tests.peers.sms_http import HttpSmsSimulator

    su = make_super()
    tenant, smpp_route = make_tenant(su, "isp-bal", port=1)
    with HttpSmsSimulator("bal-token", balance="1234.50") as api:
        http = ProviderRoute.objects.create(
            tenant=tenant, name="bd-http", kind="http", priority=2,
            settings={"profile": "bd_bulk", "base_url": api.base_url, "credentials": {"api_token": "bal-token"}})
        down = ProviderRoute.objects.create(
            tenant=tenant, name="bd-down", kind="http", priority=3, balance=Decimal("5.00"),
            settings={"profile": "bd_bulk", "base_url": "http://127.0.0.1:1", "credentials": {"api_token": "x"}})
        refresh_balances_task()  # the beat task body
        http.refresh_from_db()
        assert http.balance == Decimal("1234.50") and http.balance_checked_at is not None
        api.balance = Decimal("1000.00")
        from notifications.worker import refresh_balances

        out = refresh_balances()
    http.refresh_from_db()
    down.refresh_from_db()
    smpp_route.refresh_from_db()
    assert http.balance == Decimal("1000.00") and out["bd-http"] == Decimal("1000.00")
    assert down.balance == Decimal("5.00") and down.balance_checked_at is None and isinstance(out["bd-down"], str)
    assert smpp_route.balance is None and out[smpp_route.name] is None  # SMPP: no balance call


@pytest.mark.django_db
def test_receipts_stored_before_the_submit_result_are_applied_as_the_parts_are_written(settings):
    """One message delivered, one undelivered (charged and refunded in the same
    transaction), one with no receipt yet: each message row is written once, final."""
    from decimal import Decimal

    from notifications import credit

    settings.SMS_DISPATCH_ON_COMMIT = False
    su = make_super()
    tenant, route = make_tenant(su, "isp-early2", route_name="sim-isp-stmts")
    worker, results = _claimed_and_accepted(tenant, su, 3, "3")
    ok, bad, later = sorted(results)
    now = timezone.now()
    for mid, stat, state in ((ok, "DELIVRD", P.DELIVERED), (bad, "UNDELIV", P.UNDELIVERED)):
        key = results[mid][1][0].message_key
        DeliveryReport.objects.create(provider="sim-isp-stmts", message_id=key, message_key=key, stat=stat,
                                      err="001" if stat == "UNDELIV" else "000", state=state, recipient="x",
                                      received_at=now)
    counts = record_results(worker, results)
    assert counts == {"submitted": 3, "early_receipts": 2}
    states = dict(Message.objects.filter(pk__in=results).values_list("id", "state"))
    assert states == {ok: M.DELIVERED, bad: M.UNDELIVERED, later: M.SUBMITTED}
    assert MessagePart.objects.get(message_id=bad).state == P.UNDELIVERED
    assert MessagePart.objects.get(message_id=bad).error == "001"
    assert all(r.part_id for r in DeliveryReport.objects.all()) and not DeliveryReport.objects.filter(
        processed=False).exists()
    m_bad = Message.objects.get(pk=bad)
    assert m_bad.charged_at and m_bad.refunded_at and m_bad.finished_at
    assert Message.objects.get(pk=later).refunded_at is None
    # 3 messages at 0.35 held; 2 charged for good, 1 charged then refunded
    assert credit.held(tenant.pk) == Decimal("0.00")
    assert credit.sms_wallet(tenant.pk, credit.SPENT).balance == Decimal("0.70")
    assert credit.balance(tenant.pk) == Decimal("999.30")


@pytest.mark.django_db
def test_array_literals_round_trip_any_text():
    from datetime import UTC, datetime

    texts = ['a"b', "back\\slash", "{braces}", "com,ma", "", "NULL", None, "প্রিয় গ্রাহক", "sp ace", "x'y\n"]
    with connection.cursor() as cursor:
        reports.execute_arrays(cursor, "SELECT unnest(%s::text[])", [texts])
        assert [row[0] for row in cursor.fetchall()] == texts
        reports.execute_arrays(cursor, "SELECT unnest(%s::bigint[]), unnest(%s::boolean[]), unnest(%s::timestamptz[])",
                               [[1, 2**40, None], [True, False, None],
                                [datetime(2026, 11, 22, 7, 0, tzinfo=UTC), None, None]])
        rows = cursor.fetchall()
    assert [r[0] for r in rows] == [1, 2**40, None] and [r[1] for r in rows] == [True, False, None]
    assert rows[0][2] == datetime(2026, 11, 22, 7, 0, tzinfo=UTC) and rows[1][2] is None
