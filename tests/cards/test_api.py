"""The card API: who sees which batches and cards, who may generate, sell and download,
redemption by a customer (and its 429), and that nothing leaks across branches or tenants."""
from __future__ import annotations

import io
import zipfile
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from ispcore.cards import services as cards
from ispcore.cards.models import CardBatch, RechargeCard

from .conftest import sold_batch

pytestmark = pytest.mark.urls("tests.cards.urls")


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def ids(response) -> set[int]:
    """Ids in a list response, leaving out the shared world's own batches and cards (memo 'world')."""
    assert response.status_code == 200, response.content
    world_batches = set(CardBatch.objects.filter(memo="world").values_list("pk", flat=True))
    return {row["id"] for row in response.json()["results"]
            if (row["batch"] if "serial" in row else row["id"]) not in world_batches}


@pytest.fixture
def batches(world):
    """b_r1: r1's batch sold to d1; b_r2: r2's batch sold to d2; b_root: the ISP's, sold to d0;
    b_s1: s1's batch, unissued; b_B: tenant B's."""
    out = {}
    out["b_r1"], out["pins_r1"] = sold_batch(world, issuer="r1", distributor="d1", count=2, value="50")
    world["wallet:r2"].refresh_from_db()
    out["b_r2"], _ = sold_batch(world, issuer="r2", distributor="d2", count=2, value="20", pct="0")
    out["b_root"], _ = sold_batch(world, issuer="rootA", distributor="d0", count=2, value="100")
    out["b_s1"] = cards.generate_batch(actor=world["u:s1"], issuer=world["node:s1"], count=1, face_value=Decimal("5"),
                                       validity_days=5)
    out["b_B"] = cards.generate_batch(actor=world["u:adminB"], issuer=world["node:rootB"], count=1,
                                      face_value=Decimal("5"), validity_days=5)
    return out


def test_batch_visibility(world, batches):
    b = {k: v.pk for k, v in batches.items() if k.startswith("b_")}
    expected = {
        "adminA": {b["b_r1"], b["b_r2"], b["b_root"], b["b_s1"]},
        "adminB": {b["b_B"]},
        "r1": {b["b_r1"], b["b_s1"]},
        "r2": {b["b_r2"]},
        "s1": {b["b_s1"]},
        "s2": set(),
        "rB1": set(),  # another tenant's reseller
        "d1": {b["b_r1"]},  # a distributor sees only the batches sold to it
        "d2": {b["b_r2"]},
        "d0": {b["b_root"]},
        "m1": {b["b_r1"], b["b_s1"]},
        "m0": set(),  # a manager without the ledger permission
        "c1": set(),
    }
    for actor, want in expected.items():
        assert ids(client_for(world[f"u:{actor}"]).get("/api/v1/cards/batches/")) == want, actor
    assert client_for(None).get("/api/v1/cards/batches/").status_code in (401, 403)
    # a detail outside scope is a 404, never a 403
    assert client_for(world["u:r2"]).get(f"/api/v1/cards/batches/{b['b_r1']}/").status_code == 404
    assert client_for(world["u:d2"]).get(f"/api/v1/cards/batches/{b['b_r1']}/").status_code == 404
    assert client_for(world["u:d1"]).get(f"/api/v1/cards/batches/{b['b_r1']}/").status_code == 200


def test_card_visibility_never_shows_pins(world, batches):
    r1_cards = set(RechargeCard.objects.filter(batch=batches["b_r1"]).values_list("pk", flat=True))
    assert ids(client_for(world["u:d1"]).get("/api/v1/cards/")) == r1_cards
    assert ids(client_for(world["u:r2"]).get(f"/api/v1/cards/?batch={batches['b_r1'].pk}")) == set()
    assert ids(client_for(world["u:rB1"]).get("/api/v1/cards/")) == set()
    row = client_for(world["u:r1"]).get("/api/v1/cards/").json()["results"][0]
    assert set(row) == {"id", "batch", "serial", "status", "used_by", "used_at", "voided_at"}
    # a customer sees the cards it redeemed, and only those
    client = client_for(world["u:c1"])
    assert ids(client.get("/api/v1/cards/")) == set()
    assert client.post("/api/v1/cards/redeem/", {"pin": batches["pins_r1"][0][1]}, format="json").status_code == 200
    assert ids(client.get("/api/v1/cards/")) == {RechargeCard.objects.get(serial=batches["pins_r1"][0][0]).pk}


def test_generate_sell_and_download_through_the_api(world):
    client = client_for(world["u:r1"])
    response = client.post("/api/v1/cards/batches/", {"count": 4, "face_value": "25.00", "validity_days": 10},
                           format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["issuer"] == world["node:r1"].pk and body["status"] == "unissued" and body["download_available"]
    batch_id = body["id"]
    # another branch cannot touch it (404: it is invisible to them)
    for actor in ("r2", "rB1", "d1"):
        other = client_for(world[f"u:{actor}"])
        assert other.post(f"/api/v1/cards/batches/{batch_id}/sell/", {"distributor": world["node:d1"].pk},
                          format="json").status_code in (403, 404), actor
        assert other.post(f"/api/v1/cards/batches/{batch_id}/download/").status_code in (403, 404), actor
    # a distributor may not generate
    assert client_for(world["u:d1"]).post("/api/v1/cards/batches/", {"count": 1, "face_value": "1", "validity_days": 1},
                                          format="json").status_code == 403
    # a distributor of another branch is not a valid choice
    bad = client.post(f"/api/v1/cards/batches/{batch_id}/sell/", {"distributor": world["node:d2"].pk}, format="json")
    assert bad.status_code == 400 and "distributor" in bad.json()["error"]["fields"]
    sold = client.post(f"/api/v1/cards/batches/{batch_id}/sell/",
                       {"distributor": world["node:d1"].pk, "commission_percent": "10"}, format="json")
    assert sold.status_code == 200, sold.content
    assert sold.json()["status"] == "sold" and sold.json()["commission"] == "10.00"
    again = client.post(f"/api/v1/cards/batches/{batch_id}/sell/", {}, format="json")
    assert again.status_code == 400 and again.json()["error"]["fields"]["status"]

    first = client.post(f"/api/v1/cards/batches/{batch_id}/download/")
    assert first.status_code == 200 and first["Content-Type"] == "application/zip"
    assert first["Cache-Control"] == "no-store"
    names = zipfile.ZipFile(io.BytesIO(first.content)).namelist()
    assert len(names) == 3
    second = client.post(f"/api/v1/cards/batches/{batch_id}/download/")
    assert second.status_code == 400 and second.json()["error"]["fields"]["batch"]
    assert client.get(f"/api/v1/cards/batches/{batch_id}/").json()["download_available"] is False
    summary = client.get(f"/api/v1/cards/batches/{batch_id}/summary/").json()
    assert summary["counts"] == {"sold": 4}


def test_redeem_through_the_api(world, batches):
    client = client_for(world["u:c1"])
    pin = batches["pins_r1"][1][1]
    ok = client.post("/api/v1/cards/redeem/", {"pin": pin}, format="json")
    assert ok.status_code == 200, ok.content
    assert ok.json()["amount"] == "50.00" and ok.json()["kind"] == "value"
    used = client.post("/api/v1/cards/redeem/", {"pin": pin}, format="json")
    assert used.status_code == 400 and used.json()["error"]["fields"]["pin"]
    # a distributor cannot redeem; a reseller cannot redeem for another branch's customer
    assert client_for(world["u:d1"]).post("/api/v1/cards/redeem/", {"pin": pin}, format="json").status_code == 403
    foreign = client_for(world["u:r1"]).post("/api/v1/cards/redeem/", {"pin": pin, "customer": world["cust:r2"].pk},
                                             format="json")
    assert foreign.status_code == 400 and "customer" in foreign.json()["error"]["fields"]


def test_wrong_pins_through_the_api_end_in_429(world, batches):
    client = client_for(world["u:c2"])
    for _ in range(cards.PIN_MAX_FAILURES):
        assert client.post("/api/v1/cards/redeem/", {"pin": "9999999999999999"}, format="json").status_code == 400
    limited = client.post("/api/v1/cards/redeem/", {"pin": "9999999999999999"}, format="json")
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "throttled" and "Retry-After" in limited


def test_void_card_through_the_api(world, batches):
    card = RechargeCard.objects.filter(batch=batches["b_r1"]).first()
    assert client_for(world["u:d1"]).post(f"/api/v1/cards/{card.pk}/void/").status_code == 403
    assert client_for(world["u:r2"]).post(f"/api/v1/cards/{card.pk}/void/").status_code == 404
    response = client_for(world["u:r1"]).post(f"/api/v1/cards/{card.pk}/void/", {"reason": "lost"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "void"
    assert CardBatch.objects.get(pk=batches["b_r1"].pk).status == "sold"
