"""Per-minute reseller billing: exact amounts over a simulated day, exactly once when late,
repeated, crashed or run by two workers at once, the chain's commissions, prepaid and
postpaid wallets running out.

Accounting sessions are written as the RADIUS server stores them. Customers are created
through the services (the database trigger opens their service span at the real time,
before the simulated day, which is in the future); a suspension inside the simulated day
is written as the two span rows the trigger would have written at those times (the
trigger itself is tested with the real suspend/reactivate services below)."""
from __future__ import annotations

import hashlib
import threading
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from ispcore.billing import minutes
from ispcore.billing.models import LedgerTransaction, MinuteBillingState, MinuteCharge, ServiceSpan, Wallet
from ispcore.billing.sales import purchase_package
from ispcore.billing.services import ledger_differences, open_wallet, post_transaction, set_credit_limit, system_wallet
from ispcore.catalog import services as catalog
from ispcore.core.models import AuditEvent
from ispcore.subscribers import lifecycle
from ispcore.subscribers.models import Customer
from radius.models import AccountingSession

from .conftest import build_chain

DHAKA = ZoneInfo("Asia/Dhaka")


def first_of_next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


# The simulated day: the 1st of a coming month, always after the real moment at which the
# test creates its customers (their service spans open then).
DAY = datetime.combine(first_of_next_month(timezone.localdate(timezone.now() + timedelta(days=2), DHAKA)),
                       time(0), tzinfo=DHAKA)
RATE_R = Decimal("0.013889")  # R pays the ISP per customer-minute of "Home 10M"
RATE_S = Decimal("0.020000")  # S pays R


@pytest.fixture(autouse=True)
def no_lag(settings):
    settings.MINUTE_BILLING_LAG_SECONDS = 0
    settings.MINUTE_BILLING_CHUNK_MINUTES = 60


def at(minute: int, second: int = 0) -> datetime:
    return DAY + timedelta(minutes=minute, seconds=second)


def session(customer: Customer, start: datetime, stop: datetime | None) -> AccountingSession:
    uid = hashlib.md5(f"{customer.id}{start.isoformat()}".encode()).hexdigest()
    return AccountingSession.objects.create(
        tenant_id=customer.tenant_id, customer=customer, unique_id=uid, acct_session_id=uid[:8],
        username=customer.username, started_at=start, updated_at=stop or start, stopped_at=stop,
    )


def balance(node) -> Decimal:
    return Wallet.objects.get(node=node).balance


def minute_world(**balances):
    w = build_chain(**balances)
    catalog.set_minute_price(actor=w["admin"], node=w["r"], package=w["monthly"], minute_price=RATE_R)
    catalog.set_minute_price(actor=w["admin"], node=w["s"], package=w["monthly"], minute_price=RATE_S)
    minutes.bill_minutes(now=at(0))  # the first tick starts every node's watermark at 00:00
    return w


@pytest.mark.django_db
def test_a_simulated_day_late_twice_and_after_a_crash_charges_minutes_times_rate_exactly(monkeypatch):
    w = minute_world(reseller_balance="1000")
    revenue = system_wallet(w["tenant"], "revenue")
    rev0, r0, s0 = revenue.balance, balance(w["r"]), balance(w["s"])
    always = w["customer"](w["s"], "always", package=w["monthly"])
    session(always, at(-30), None)  # online since before the day: 1,440 minutes
    partial = w["customer"](w["s"], "partial", package=w["monthly"])
    session(partial, at(360, 30), at(495, 10))  # 06:00:30-08:15:10: minutes 06:00..08:15 = 136
    session(partial, at(1200), at(1260))  # 20:00-21:00: 60
    session(partial, at(1230), at(1245))  # overlaps the one above: counted once
    suspended = w["customer"](w["r"], "suspended", package=w["monthly"])
    session(suspended, at(-5), None)
    span = ServiceSpan.objects.get(customer=suspended, ended_at__isnull=True)
    ServiceSpan.objects.filter(pk=span.pk).update(ended_at=at(720))  # suspended 12:00-13:00
    ServiceSpan.objects.create(customer=suspended, node_id=w["r"].id, package_id=w["monthly"].id,
                               started_at=at(780))  # 1,440 - 60 = 1,380 minutes
    expired = w["customer"](w["s"], "expired", package=w["monthly"])
    session(expired, at(0), None)
    Customer.objects.filter(pk=expired.pk).update(status=Customer.Status.EXPIRED)  # trigger closes its span
    elsewhere = w["customer"](w["r"], "no-minute-price")  # the 7-day package has no per-minute rate
    session(elsewhere, at(0), None)

    crashed = {}

    def crash_once(bills, now):
        crashed["minute"] = True
        raise RuntimeError("worker killed after posting, before commit")

    real_advance = minutes._advance
    # Every minute in the morning and the evening, every 7 minutes in between (the day's
    # total does not depend on it); 10:00-10:36 the beat is down: 37 ticks never run.
    ticks = sorted({*range(1, 121), *range(121, 1380, 7), *range(1380, 1441), 300, 900} - set(range(600, 637)))
    for m in ticks:
        if m == 900:
            before = LedgerTransaction.objects.count()
            monkeypatch.setattr(minutes, "_advance", crash_once)
            with pytest.raises(RuntimeError):
                minutes.bill_minutes(now=at(m))
            monkeypatch.setattr(minutes, "_advance", real_advance)
            assert LedgerTransaction.objects.count() == before  # the postings rolled back with the crash
        minutes.bill_minutes(now=at(m))
        if m == 300:
            minutes.bill_minutes(now=at(m))  # the same minute twice
            minutes.bill_minutes(now=at(m, 59))
    assert crashed
    s_minutes, r_minutes = 1440 + 136 + 60, 1380
    charges = MinuteCharge.objects.filter(node=w["s"])
    assert sum(c.minutes for c in charges) == s_minutes
    assert sum(c.minutes for c in MinuteCharge.objects.filter(node=w["r"])) == r_minutes
    # S pays its rate on every minute, to the paisa.
    assert balance(w["s"]) - s0 == -(s_minutes * RATE_S)
    # R earns (S's rate - R's rate) on the same minutes and pays its own rate for its customers;
    # each leg is rounded down and the fraction of a paisa is carried, not lost.
    earned, paid = s_minutes * (RATE_S - RATE_R), r_minutes * RATE_R
    assert earned == Decimal("9.997596") and paid == Decimal("19.16682")
    assert balance(w["r"]) - r0 == Decimal("9.99") - Decimal("19.16")
    r_state = MinuteBillingState.objects.get(node=w["r"])
    s_state = MinuteBillingState.objects.get(node=w["s"])
    assert Decimal(s_state.carry[str(w["r"].id)]) == Decimal("0.007596")
    assert Decimal(r_state.carry["payer"]) == Decimal("0.00682")
    revenue.refresh_from_db()
    assert revenue.balance - rev0 == Decimal("32.72") - Decimal("9.99") + Decimal("19.16")
    # Every minute of the day once, each posting once per node and range.
    assert s_state.billed_until == r_state.billed_until == at(1440)
    keys = list(LedgerTransaction.objects.filter(kind="minutes").values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys))
    assert not ledger_differences()["wallets"]
    call_command("rebuild_balances", "--check")


@pytest.mark.django_db
def test_a_level_without_its_own_rate_passes_the_rate_up_and_a_node_without_one_is_not_billed():
    w = build_chain(reseller_balance="100")
    catalog.set_minute_price(actor=w["admin"], node=w["s"], package=w["monthly"], minute_price="0.05")
    minutes.bill_minutes(now=at(0))
    c = w["customer"](w["s"], "c1", package=w["monthly"])
    session(c, at(0), None)
    rev0, r0, s0 = system_wallet(w["tenant"], "revenue").balance, balance(w["r"]), balance(w["s"])
    minutes.bill_minutes(now=at(10))
    assert balance(w["s"]) - s0 == Decimal("-0.50")
    assert balance(w["r"]) - r0 == 0  # R has no rate: it earns nothing, S's rate goes to the ISP
    assert system_wallet(w["tenant"], "revenue").balance - rev0 == Decimal("0.50")


@pytest.mark.django_db
def test_prepaid_reseller_at_zero_gets_its_customers_suspended_and_not_otherwise(settings):
    w = build_chain(reseller_balance="1.00")
    catalog.set_minute_price(actor=w["admin"], node=w["r"], package=w["monthly"], minute_price="0.05")
    catalog.set_minute_price(actor=w["admin"], node=w["s"], package=w["monthly"], minute_price="0.05")
    minutes.bill_minutes(now=at(0))
    mine = w["customer"](w["r"], "mine", package=w["monthly"])
    idle = w["customer"](w["r"], "idle", package=w["monthly"])
    theirs = w["customer"](w["s"], "theirs", package=w["monthly"])
    session(mine, at(0), None)
    session(theirs, at(0), None)
    minutes.bill_minutes(now=at(10))  # 10 x 0.05 = 0.50 of 1.00: still something left
    assert balance(w["r"]) == Decimal("0.50")
    assert Customer.objects.filter(node=w["r"], status="suspended").count() == 0
    minutes.bill_minutes(now=at(20))  # another 0.50: exactly zero
    assert balance(w["r"]) == Decimal("0.00")
    assert set(Customer.objects.filter(status="suspended").values_list("username", flat=True)) == {"mine", "idle"}
    assert Customer.objects.get(pk=theirs.pk).status == "active"  # S's customers: S still has money
    assert not ServiceSpan.objects.filter(customer__in=[mine, idle], ended_at__isnull=True).exists()
    # Suspended customers cost nothing afterwards, even with a session left open.
    minutes.bill_minutes(now=at(40))
    assert balance(w["r"]) == Decimal("0.00")
    assert MinuteBillingState.objects.get(node=w["r"]).billed_until == at(40)


@pytest.mark.django_db
def test_with_suspension_off_an_uncovered_tick_stays_owed_and_is_billed_once_after_a_top_up():
    w = build_chain(reseller_balance="1.00")
    catalog.set_minute_price(actor=w["admin"], node=w["r"], package=w["monthly"], minute_price="0.05")
    minutes.bill_minutes(now=at(0))
    minutes.set_suspend_at_zero(w["r"], False, actor=w["admin"])
    mine = w["customer"](w["r"], "mine", package=w["monthly"])
    session(mine, at(0), None)
    minutes.bill_minutes(now=at(30))  # 1.50 needed, 1.00 available: refused, nothing posted
    state = MinuteBillingState.objects.get(node=w["r"])
    assert balance(w["r"]) == Decimal("1.00")
    assert state.billed_until == at(0) and state.refused_at is not None
    assert Customer.objects.get(pk=mine.pk).status == "active"
    post_transaction(legs=[(system_wallet(w["tenant"], "adjustment"), Decimal("-10")),
                           (open_wallet(tenant=w["tenant"], node=w["r"]), Decimal("10"))],
                     kind="topup", idempotency_key="topup-r")
    minutes.bill_minutes(now=at(40))  # the 40 owed minutes, once
    assert balance(w["r"]) == Decimal("11.00") - 40 * Decimal("0.05")
    state.refresh_from_db()
    assert state.billed_until == at(40) and state.refused_at is None


@pytest.mark.django_db
def test_postpaid_reseller_accrues_debt_to_its_credit_limit_then_is_suspended():
    w = build_chain()
    p = w["p"]
    catalog.set_minute_price(actor=w["admin"], node=p, package=w["week"], minute_price="0.05")
    set_credit_limit(open_wallet(tenant=w["tenant"], node=p), "1.00", actor=w["admin"])
    minutes.bill_minutes(now=at(0))
    c = w["customer"](p, "post1")
    session(c, at(0), None)
    minutes.bill_minutes(now=at(10))
    assert balance(p) == Decimal("-0.50")  # debt, not refused
    assert Customer.objects.get(pk=c.pk).status == "active"
    minutes.bill_minutes(now=at(30))  # 20 more minutes = 1.00 > 0.50 left under the limit: refused
    assert balance(p) == Decimal("-0.50")
    assert Customer.objects.get(pk=c.pk).status == "suspended"
    assert MinuteBillingState.objects.get(node=p).billed_until == at(10)
    # Raise the limit and reactivate (the spans are at real time, before this simulated
    # day, so reactivating covers minutes 10-30 again): the owed minutes go through, once.
    set_credit_limit(Wallet.objects.get(node=p), "100", actor=w["admin"])
    lifecycle.reactivate(c, reason="limit raised")
    minutes.bill_minutes(now=at(30))
    minutes.bill_minutes(now=at(30))
    assert balance(p) == Decimal("-1.50")


@pytest.mark.django_db(transaction=True)
def test_two_workers_running_the_tick_at_once_charge_once():
    w = minute_world(reseller_balance="1000")
    customers = [w["customer"](w["s" if i % 2 else "r"], f"c{i}", package=w["monthly"]) for i in range(10)]
    for c in customers:
        session(c, at(-1), None)
    r0, s0 = balance(w["r"]), balance(w["s"])
    barrier = threading.Barrier(2)
    errors = []

    def tick():
        try:
            barrier.wait()
            minutes.bill_minutes(now=at(150))  # 150 minutes late: three chunks per node
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert balance(w["s"]) - s0 == -(5 * 150 * RATE_S)
    assert sum(c.minutes for c in MinuteCharge.objects.all()) == 10 * 150
    assert balance(w["r"]) - r0 == Decimal("4.58") - Decimal("10.41")  # floor(750 x 0.006111), floor(750 x RATE_R)
    assert not ledger_differences()["wallets"]


@pytest.mark.django_db
def test_the_trigger_records_status_and_package_changes_made_by_the_services():
    w = build_chain(sub_balance="5000")
    c = w["customer"](w["s"], "spans", package=w["monthly"])
    spans = ServiceSpan.objects.filter(customer=c)
    assert list(spans.values_list("package_id", "ended_at")) == [(w["monthly"].id, None)]
    lifecycle.suspend(c, reason="test")
    assert spans.filter(ended_at__isnull=True).count() == 0
    lifecycle.reactivate(c, reason="test")
    assert spans.filter(ended_at__isnull=True).count() == 1
    catalog.set_price(actor=w["admin"], node=w["r"], package=w["fast"], node_price="900", customer_price="1500")
    catalog.set_price(actor=w["admin"], node=w["s"], package=w["fast"], node_price="1000", customer_price="1500")
    purchase_package(c, w["fast"], actor=w["admin"], payer="node", idempotency_key="fast-1")
    assert list(spans.filter(ended_at__isnull=True).values_list("package_id", flat=True)) == [w["fast"].id]
    assert spans.count() == 3
    assert all(s.ended_at is None or s.ended_at >= s.started_at for s in spans)
    assert spans.order_by("started_at").last().started_at <= timezone.now()


@pytest.mark.django_db
def test_minute_price_is_validated_against_the_chain():
    from django.core.exceptions import ValidationError

    w = build_chain()
    catalog.set_minute_price(actor=w["admin"], node=w["r"], package=w["monthly"], minute_price="0.02")
    with pytest.raises(ValidationError):
        catalog.set_minute_price(actor=w["admin"], node=w["s"], package=w["monthly"], minute_price="0.01")
    with pytest.raises(ValidationError):
        catalog.set_minute_price(actor=w["admin"], node=w["s"], package=w["monthly"], minute_price="0.0200001")
    with pytest.raises(ValidationError):
        catalog.set_minute_price(actor=w["admin"], node=w["s"], package=w["hours"], minute_price="0.03")
    assert catalog.minute_price_from("600", 30 * 24 * 60) == Decimal("0.013889")


@pytest.mark.django_db
def test_postpaid_reseller_gets_one_monthly_statement_of_its_minutes_and_debt():
    from ispcore.billing.invoicing import monthly_billing_tick
    from ispcore.billing.models import ResellerStatement

    w = build_chain()
    p = w["p"]
    catalog.set_minute_price(actor=w["admin"], node=p, package=w["week"], minute_price="0.0125")
    minutes.bill_minutes(now=at(0))
    c = w["customer"](p, "post1")
    session(c, at(0), at(100))  # 100 minutes on the 1st
    minutes.bill_minutes(now=at(200))
    assert balance(p) == Decimal("-1.25")
    # The monthly tick on the 1st of the next month issues this month's statement, once.
    next_first = datetime.combine(first_of_next_month(DAY.date()), time(1, 0), tzinfo=DHAKA)
    monthly_billing_tick(now=next_first)
    monthly_billing_tick(now=next_first + timedelta(minutes=5))
    minutes.issue_reseller_statements(w["tenant"], DAY.date())
    statement = ResellerStatement.objects.get(node=p)
    assert (statement.period, statement.minutes, statement.charged, statement.due) == (
        DAY.date(), 100, Decimal("1.25"), Decimal("1.25"))
    assert statement.credit_limit == Decimal("1500.00")
    assert ResellerStatement.objects.count() == 1


@pytest.mark.django_db
def test_the_beat_runs_the_tick_every_minute_through_the_celery_task(settings):
    from ispcore.billing.tasks import bill_minutes as task

    assert settings.CELERY_BEAT_SCHEDULE["minute-billing"] == {"task": "billing.bill_minutes", "schedule": 60.0}
    w = build_chain()
    result = task.apply().get()
    assert result["nodes"] == 0  # the first tick only starts the watermarks
    assert MinuteBillingState.objects.filter(node__in=[w["r"], w["s"], w["p"]]).count() == 3
    run = minutes.JobRun.objects.filter(kind="minute_billing").latest("id")
    assert run.status == "succeeded"


@pytest.mark.django_db
def test_a_refused_node_is_retried_only_once_its_wallet_changed():
    w = build_chain(reseller_balance="0.10")
    catalog.set_minute_price(actor=w["admin"], node=w["r"], package=w["monthly"], minute_price="0.05")
    minutes.bill_minutes(now=at(0))
    minutes.set_suspend_at_zero(w["r"], False, actor=w["admin"])
    session(w["customer"](w["r"], "mine", package=w["monthly"]), at(0), None)
    minutes.bill_minutes(now=at(10))  # 0.50 needed, 0.10 there: refused
    state = MinuteBillingState.objects.get(node=w["r"])
    refused_at = state.refused_at
    assert refused_at is not None
    minutes.bill_minutes(now=at(11))  # wallet unchanged: not even tried
    state.refresh_from_db()
    assert state.refused_at == refused_at and state.billed_until == at(0)
    assert AuditEvent.objects.filter(action="minute_billing.refused").count() == 1
    post_transaction(legs=[(system_wallet(w["tenant"], "adjustment"), Decimal("-1")),
                           (open_wallet(tenant=w["tenant"], node=w["r"]), Decimal("1"))],
                     kind="topup", idempotency_key="topup-small")
    minutes.bill_minutes(now=at(12))  # 12 x 0.05 = 0.60 of 1.10
    state.refresh_from_db()
    assert state.billed_until == at(12) and state.refused_at is None
    assert balance(w["r"]) == Decimal("0.50")


@pytest.mark.django_db
def test_the_statement_exports_one_row_per_day_with_exact_amounts():
    import io

    from openpyxl import load_workbook

    from ispcore.billing.models import ResellerStatement

    w = build_chain()
    p = w["p"]
    catalog.set_minute_price(actor=w["admin"], node=p, package=w["week"], minute_price="0.0125")
    minutes.bill_minutes(now=at(0))
    c = w["customer"](p, "post1")
    session(c, at(0), at(30))  # 30 minutes on the 1st
    session(c, at(1440 + 60), at(1440 + 100))  # 40 minutes on the 2nd
    minutes.bill_minutes(now=at(1440 + 200))
    minutes.issue_reseller_statements(w["tenant"], DAY.date())
    statement = ResellerStatement.objects.get(node=p)
    sheet = load_workbook(io.BytesIO(minutes.reseller_statement_xlsx(statement))).active
    rows = [tuple(cell.value for cell in row) for row in sheet.iter_rows(min_row=2, max_col=3)]
    assert [(r[0].date() if hasattr(r[0], "date") else r[0], r[1], Decimal(str(r[2]))) for r in rows] == [
        (DAY.date(), 30, Decimal("0.37")), ((DAY + timedelta(days=1)).date(), 40, Decimal("0.50")),
        ("Total", 70, Decimal("0.87"))]


@pytest.mark.django_db
def test_posting_every_five_minutes_counts_the_same_minutes_in_fewer_ledger_rows(settings):
    w = build_chain()
    catalog.set_minute_price(actor=w["admin"], node=w["s"], package=w["monthly"], minute_price="0.05")
    minutes.bill_minutes(now=at(0))
    session(w["customer"](w["s"], "c1", package=w["monthly"]), at(0), None)
    s0 = balance(w["s"])
    settings.MINUTE_BILLING_POST_EVERY_MINUTES = 5
    for m in range(1, 13):
        minutes.bill_minutes(now=at(m))
    assert MinuteBillingState.objects.get(node=w["s"]).billed_until == at(10)
    assert list(MinuteCharge.objects.filter(node=w["s"]).order_by("period_start").values_list("minutes", flat=True)) \
        == [5, 5]
    assert balance(w["s"]) - s0 == Decimal("-0.50")
