"""The per-minute rate a node pays is set through the price-list API, like its prices."""
from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from ispcore.catalog.models import PriceListEntry
from tests.world import build_world


@pytest.fixture
def world(db):
    return build_world()


def client_for(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_admin_sets_a_reseller_rate_and_the_reseller_sets_its_sub_reseller_rate(world):
    admin, r1 = client_for(world["u:adminA"]), client_for(world["u:r1"])
    entry = world["price:r1"]
    ok = admin.patch(f"/api/v1/price-list/{entry.pk}/", {"minute_price": "0.010000"}, format="json")
    assert ok.status_code == 200, ok.content
    assert ok.json()["minute_price"] == "0.010000"
    entry.refresh_from_db()
    assert entry.minute_price == Decimal("0.010000") and entry.node_price == Decimal("300")  # prices untouched

    sub = world["price:s1"]
    below = r1.patch(f"/api/v1/price-list/{sub.pk}/", {"minute_price": "0.009999"}, format="json")
    assert below.status_code == 400 and "minute_price" in below.json()["error"]["fields"]
    assert PriceListEntry.objects.get(pk=sub.pk).minute_price is None  # nothing saved
    fine = r1.patch(f"/api/v1/price-list/{sub.pk}/", {"minute_price": "0.012500"}, format="json")
    assert fine.status_code == 200 and fine.json()["minute_price"] == "0.012500"

    off = admin.patch(f"/api/v1/price-list/{entry.pk}/", {"minute_price": None}, format="json")
    assert off.status_code == 200 and off.json()["minute_price"] is None


def test_create_with_a_rate_is_all_or_nothing(world):
    admin = client_for(world["u:adminA"])
    body = {"node": world["node:d1"].pk, "package": world["pkg:A1"].pk, "node_price": "320",
            "customer_price": "500", "minute_price": "0.1234567"}  # 7 places
    bad = admin.post("/api/v1/price-list/", body, format="json")
    assert bad.status_code == 400
    assert not PriceListEntry.objects.filter(node=world["node:d1"], package=world["pkg:A1"]).exists()
    body["minute_price"] = "0.012345"
    good = admin.post("/api/v1/price-list/", body, format="json")
    assert good.status_code == 201, good.content
    assert PriceListEntry.objects.get(node=world["node:d1"], package=world["pkg:A1"]).minute_price == Decimal("0.012345")
