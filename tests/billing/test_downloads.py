"""Document downloads go through the same visibility as the data they show."""
import pytest
from rest_framework.test import APIClient

from tests.world import build_world


@pytest.fixture
def world(db):
    return build_world()


def client(world, actor):
    c = APIClient()
    c.force_authenticate(world[f"u:{actor}"])
    return c


@pytest.mark.parametrize("actor,status", [("adminA", 200), ("r1", 200), ("s1", 200), ("r2", 404), ("rB1", 404),
                                          ("c1", 404), ("d1", 404)])
def test_invoice_pdf_follows_visibility(world, actor, status):
    response = client(world, actor).get(f"/api/v1/invoices/{world['inv:s1'].pk}/pdf/")
    assert response.status_code == status
    if status == 200:
        assert response["Content-Type"] == "application/pdf" and response.content.startswith(b"%PDF")


def test_receipt_statement_and_invoice_list_downloads(world):
    admin = client(world, "adminA")
    receipt = admin.get(f"/api/v1/payments/{world['pay:r1'].pk}/receipt/")
    assert receipt.status_code == 200 and receipt.content.startswith(b"%PDF")
    statement = admin.get(f"/api/v1/wallets/{world['wallet:r1'].pk}/statement/")
    assert statement.status_code == 200 and statement.content[:2] == b"PK"
    listing = admin.get("/api/v1/invoices/xlsx/")
    assert listing.status_code == 200 and listing.content[:2] == b"PK"
    assert client(world, "r2").get(f"/api/v1/payments/{world['pay:r1'].pk}/receipt/").status_code == 404
    assert client(world, "s1").get(f"/api/v1/wallets/{world['wallet:r1'].pk}/statement/").status_code == 404
