"""Receivables in one call: scoped like everything else, exact amounts, ageing buckets."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from ispcore.billing.models import Invoice
from ispcore.billing.sales import deposit_cash, record_payment
from ispcore.billing.selectors import ageing_bucket
from tests.world import build_world


@pytest.fixture
def world(db):
    return build_world()


def get(world, actor, **params):
    client = APIClient()
    client.force_authenticate(world[f"u:{actor}"])
    return client.get("/api/v1/reports/receivables/", params)


@pytest.mark.parametrize("days,bucket", [(0, "0-30"), (30, "0-30"), (31, "31-60"), (60, "31-60"), (61, "61-90"),
                                         (90, "61-90"), (91, "90+"), (400, "90+")])
def test_ageing_buckets(days, bucket):
    assert ageing_bucket(days) == bucket


def test_admin_sees_the_tenant_with_ageing(world):
    Invoice.objects.filter(pk=world["inv:rootA"].pk).update(due_date=date(2026, 10, 1))
    body = get(world, "adminA", as_of="2026-12-15").json()
    owing = {row["username"]: row for row in body["customers"]}
    assert set(owing) == {"cust-rootA", "cust-s1"}
    assert Decimal(owing["cust-rootA"]["61-90"]) == Decimal("700.00")  # due 1 Oct, 75 days late on 15 Dec
    assert Decimal(owing["cust-s1"]["0-30"]) == Decimal("500.00")
    assert Decimal(body["customers_total"]) == Decimal("1200.00")
    assert {r["name"] for r in body["resellers"]} >= {"R1", "R2", "S1", "S2"}
    r2 = next(r for r in body["resellers"] if r["name"] == "R2")
    assert r2["billing_mode"] == "postpaid"
    assert Decimal(body["income"]["total"]) > 0


def test_reseller_report_covers_only_its_subtree(world):
    body = get(world, "r1").json()
    assert {row["username"] for row in body["customers"]} == {"cust-s1"}
    assert {r["name"] for r in body["resellers"]} == {"R1", "S1", "D1"}
    assert body["income"]["by_source"] == {}  # the ISP's revenue account is not the reseller's
    other = get(world, "rB1").json()
    assert {row["username"] for row in other["customers"]} == {"cust-rB1"}


@pytest.mark.parametrize("actor,status", [("adminA", 200), ("r1", 200), ("s1", 200), ("m1", 200), ("m0", 403),
                                          ("d1", 403), ("c1", 403), ("super", 403)])
def test_who_may_read_reports(world, actor, status):
    assert get(world, actor).status_code == status


def test_undeposited_cash_per_collector(world):
    manager = world["u:m1"]
    p = record_payment(world["cust:r1"], Decimal("300"), method="cash", actor=manager, idempotency_key="cash-1")
    body = get(world, "adminA").json()
    row = next(r for r in body["staff_cash"] if r["username"] == "m1")
    assert Decimal(row["undeposited"]) == Decimal("300.00")
    assert deposit_cash([p.pk], actor=world["u:r1"]) == 0  # not the collector, not the admin
    assert deposit_cash([p.pk], actor=manager) == 1
    body = get(world, "adminA").json()
    assert not any(r["username"] == "m1" for r in body["staff_cash"])
def test_exports(world):
    csv_response = get(world, "adminA", export="csv", section="customers")
    assert csv_response.status_code == 200 and csv_response["Content-Type"].startswith("text/csv")
    assert b"cust-s1" in csv_response.content
    xlsx = get(world, "adminA", export="xlsx", section="resellers")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    assert get(world, "adminA", export="pdf").status_code == 400
