"""Fixtures shared by the MikroTik tests: a RouterOS simulator, a tenant and its NAS pointing at it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from decimal import Decimal

import pytest

from ipam import services as ipam_services
from ispcore.accounts.services import create_tenant
from ispcore.catalog.services import create_package
from ispcore.subscribers.services import create_nas
from tests.peers.routeros import RouterOSSimulator

USER, PASSWORD = "billing", "pa55"
_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def _no_radius(monkeypatch):
    """IPAM services notify RADIUS through Redis on commit; not needed here."""
    monkeypatch.setattr(ipam_services, "_publish", lambda tenant_id, customer_ids: None)


@pytest.fixture
def router() -> Iterator[RouterOSSimulator]:
    with RouterOSSimulator(username=USER, password=PASSWORD) as sim:
        yield sim


@pytest.fixture
def tenant(db):
    return create_tenant(actor=None, name="Sync Net", slug=f"sync-{next(_seq)}")


@pytest.fixture
def nas(tenant, router):
    return create_nas(actor=None, tenant=tenant, name="core-1", ip_address="127.0.0.1", secret="s3cret-123",
                      api_username=USER, api_password=PASSWORD, api_port=router.port)


def make_package(tenant, name, types, up, down, **fields):
    return create_package(actor=None, tenant=tenant, customer_types=types, name=name, billing_mode="monthly",
                          price=Decimal("500"), upload_kbps=up, download_kbps=down, **fields)



def managed(router: RouterOSSimulator, menu: str, key: str = "name") -> dict[str, dict[str, str]]:
    """Items of ``menu`` carrying our 'isp:' comment marker, by ``key``."""
    return {item[key]: item for item in router.items(menu) if item.get("comment", "").startswith("isp:")}
