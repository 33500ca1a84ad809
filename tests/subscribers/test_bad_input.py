"""Bad input: a clear 400 naming the field, and nothing saved."""
from __future__ import annotations

import pytest
from django.db import connection
from rest_framework.test import APIClient

from ispcore.accounts.models import AccountNode
from ispcore.catalog.models import Package
from ispcore.core.models import AuditEvent
from ispcore.subscribers.models import Customer
from tests.world import build_world


@pytest.fixture
def world(db):
    return build_world()


@pytest.fixture
def admin_client(world):
    client = APIClient()
    client.force_authenticate(world["u:adminA"])
    return client


def customer_payload(world, **over):
    data = {"node": world["node:r1"].pk, "customer_type": "pppoe", "username": "fresh", "password": "secret1",
            "full_name": "Fresh Customer", "mobile": "01712345678", "package": world["pkg:A1"].pk}
    data.update(over)
    return data


def assert_refused(response, field):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["status"] == 400 and error["code"] == "invalid"
    assert field in error["fields"], error
    assert field in error["message"]


@pytest.mark.parametrize("mobile", ["12345", "0171234567", "+8801012345678", "not a number", "+44 20 7946 0958"])
def test_invalid_mobile_numbers(world, admin_client, mobile):
    before = (Customer.objects.count(), AuditEvent.objects.count())
    response = admin_client.post("/api/v1/customers/", customer_payload(world, mobile=mobile), format="json")
    assert_refused(response, "mobile")
    assert (Customer.objects.count(), AuditEvent.objects.count()) == before


def test_mobile_is_normalised_to_e164(world, admin_client):
    response = admin_client.post("/api/v1/customers/", customer_payload(world, mobile="017-1234 5678"), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["mobile"] == "+8801712345678"


def test_duplicate_username_in_the_tenant(world, admin_client):
    before = Customer.objects.count()
    response = admin_client.post("/api/v1/customers/", customer_payload(world, username="cust-r1"), format="json")
    assert_refused(response, "username")
    assert Customer.objects.count() == before


def test_same_username_in_another_tenant_is_fine(world):
    client = APIClient()
    client.force_authenticate(world["u:adminB"])
    payload = customer_payload(world, username="cust-r1", node=world["node:rB1"].pk, package=world["pkg:B1"].pk)
    assert client.post("/api/v1/customers/", payload, format="json").status_code == 201


def test_negative_price(world, admin_client):
    before = Package.objects.count()
    response = admin_client.post("/api/v1/packages/", {"name": "Bad", "customer_types": ["pppoe"],
                                                       "billing_mode": "monthly", "price": "-1"}, format="json")
    assert_refused(response, "price")
    assert Package.objects.count() == before


def test_customer_on_a_node_of_another_tenant(world, admin_client):
    before = Customer.objects.count()
    response = admin_client.post("/api/v1/customers/", customer_payload(world, node=world["node:rB1"].pk), format="json")
    assert_refused(response, "node")
    assert Customer.objects.count() == before


def test_super_admin_customer_node_must_match_tenant(world):
    client = APIClient()
    client.force_authenticate(world["u:super"])
    payload = customer_payload(world, node=world["node:rB1"].pk, tenant=world["tenant:A"].pk)
    before = Customer.objects.count()
    assert_refused(client.post("/api/v1/customers/", payload, format="json"), "node")
    assert Customer.objects.count() == before


def test_package_of_another_tenant_or_wrong_type(world, admin_client):
    assert_refused(admin_client.post("/api/v1/customers/", customer_payload(world, package=world["pkg:B1"].pk),
                                     format="json"), "package")
    assert_refused(admin_client.post("/api/v1/customers/", customer_payload(world, customer_type="hotspot"),
                                     format="json"), "package")


def test_static_customer_needs_an_address(world, admin_client):
    payload = customer_payload(world, customer_type="static", package=None)
    assert_refused(admin_client.post("/api/v1/customers/", payload, format="json"), "static_ip")


def test_node_kind_must_fit_under_its_parent(world, admin_client):
    before = AccountNode.objects.count()
    response = admin_client.post("/api/v1/nodes/", {"parent": world["node:s1"].pk, "kind": "reseller", "name": "X"},
                                 format="json")
    assert_refused(response, "kind")
    assert AccountNode.objects.count() == before


def test_reseller_cannot_sell_below_its_parents_cost(world):
    client = APIClient()
    client.force_authenticate(world["u:r1"])
    response = client.post("/api/v1/price-list/", {"node": world["node:s1"].pk, "package": world["pkg:A1"].pk,
                                                   "node_price": "100", "customer_price": "500"}, format="json")
    assert_refused(response, "node_price")


def test_customer_password_is_encrypted_at_rest(world):
    with connection.cursor() as cur:
        cur.execute("SELECT password FROM subscribers_customer WHERE username = 'cust-r1'")
        stored = cur.fetchone()[0]
    assert "cpass1" not in stored and stored.startswith("gAAAA")
    assert Customer.objects.get(username="cust-r1").password == "cpass1"


def test_nas_secret_is_write_only_and_encrypted(world, admin_client):
    response = admin_client.get(f"/api/v1/nas/{world['nas:A'].pk}/")
    assert "secret" not in response.json()
    with connection.cursor() as cur:
        cur.execute("SELECT secret FROM subscribers_nas WHERE id = %s", [world["nas:A"].pk])
        assert cur.fetchone()[0] != "secret123"
