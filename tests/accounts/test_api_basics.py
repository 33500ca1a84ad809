"""Token login, schema and docs, the admin's scoping, and the rate-limit string."""
from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from ispcore.catalog.models import Package
from tests.world import PASSWORD, build_world


@pytest.fixture
def world(db):
    return build_world()


def test_token_auth_round_trip(world):
    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"username": "r1", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    me = client.get("/api/v1/me/").json()
    assert me["role"] == "reseller" and me["node"] == world["node:r1"].pk
    bad = APIClient().post("/api/v1/auth/token/", {"username": "r1", "password": "wrong"}, format="json")
    assert bad.status_code == 400 and "error" in bad.json()


def test_schema_and_docs_render(world):
    client = APIClient()
    client.force_authenticate(world["u:adminA"])
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for endpoint in ("tenants", "nodes", "users", "packages", "price-list", "zones", "nas", "customers", "wallets",
                     "ledger"):
        assert f"/api/v1/{endpoint}/" in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_filtering_and_pagination(world):
    client = APIClient()
    client.force_authenticate(world["u:adminA"])
    body = client.get(f"/api/v1/customers/?node={world['node:r1'].pk}&page_size=1").json()
    assert body["count"] == 1 and len(body["results"]) == 1
    within = client.get(f"/api/v1/nodes/?within={world['node:r1'].pk}").json()
    assert {row["name"] for row in within["results"]} == {"R1", "S1", "D1"}


def test_admin_is_scoped_to_the_tenant(world):
    client = Client()
    assert client.login(username="adminA", password=PASSWORD)
    page = client.get("/admin/subscribers/customer/")
    assert page.status_code == 200
    assert b"cust-r1" in page.content and b"cust-rB1" not in page.content
    foreign = world["cust:rB1"].pk
    assert client.get(f"/admin/subscribers/customer/{foreign}/change/").status_code in (302, 404)
    assert client.get("/admin/accounts/tenant/").status_code == 200


def test_resellers_have_no_admin_access(world):
    client = Client()
    assert client.login(username="r1", password=PASSWORD)
    assert client.get("/admin/subscribers/customer/").status_code == 302


def test_super_admin_sees_every_tenant_in_the_admin(world):
    client = Client()
    assert client.login(username="super", password=PASSWORD)
    page = client.get("/admin/subscribers/customer/")
    assert b"cust-r1" in page.content and b"cust-rB1" in page.content


@pytest.mark.parametrize("fields,expected", [
    ({"upload_kbps": 5120, "download_kbps": 10240}, "5M/10M"),
    ({"upload_kbps": 512, "download_kbps": 1536}, "512k/1536k"),
    ({"upload_kbps": 2048, "download_kbps": 4096, "burst_upload_kbps": 4096, "burst_download_kbps": 8192,
      "burst_threshold_upload_kbps": 1536, "burst_threshold_download_kbps": 3072, "burst_time_seconds": 16,
      "priority": 8}, "2M/4M 4M/8M 1536k/3M 16/16 8"),
    ({}, ""),
])
def test_mikrotik_rate_limit_string(fields, expected):
    assert Package(**fields).rate_limit == expected
