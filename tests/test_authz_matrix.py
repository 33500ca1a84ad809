"""The authorization matrix: every API endpoint x {anonymous, each role, the same role in
another branch, the same role in another tenant}.

For each actor the expected rows are written out by name below (not computed with the
code under test). Lists must return exactly those rows; a detail GET of any other row is a
404; writes by actors without the grant are refused and write nothing."""
from __future__ import annotations

import itertools

import pytest
from rest_framework.test import APIClient

from ipam.models import Assignment, Prefix, Reservation
from ispcore.accounts.models import AccountNode, Tenant, User
from ispcore.billing.models import Invoice, LedgerEntry, LedgerTransaction, PackageSale, Payment, Wallet
from ispcore.cards.models import CardBatch, RechargeCard
from ispcore.catalog.models import Package, PriceListEntry
from ispcore.core.models import AuditEvent
from ispcore.subscribers.models import Customer, Nas, Zone
from notifications.models import Campaign, InboundMessage, Message, SmsTemplate
from tests.world import build_world

ACTORS = ["super", "adminA", "adminB", "r1", "r2", "rB1", "s1", "s2", "m1", "m2", "m0", "d1", "d2", "c1", "c2"]

A_NODES = ["rootA", "r1", "r2", "s1", "s2", "d1", "d2"]
A_USERS = ["adminA", "r1", "r2", "s1", "s2", "m1", "m2", "m0", "d1", "d2", "c1", "c2"]
A_CUSTOMERS = ["rootA", "r1", "s1", "r2", "s2"]
A_WALLETS = ["rootA", "r1", "r2", "s1", "s2", "d1", "d2", "sysA:revenue", "sysA:vat", "sysA:cash", "sysA:gateway",
             "sysA:adjustment", "cust:rootA", "cust:r1", "cust:s1", "cust:r2", "cust:s2"]
B_WALLETS = ["rootB", "rB1", "sysB:revenue", "sysB:vat", "sysB:cash", "sysB:gateway", "sysB:adjustment", "cust:rB1"]

R1_WALLETS = ["r1", "s1", "d1", "cust:r1", "cust:s1"]
R2_WALLETS = ["r2", "s2", "d2", "cust:r2", "cust:s2"]

# endpoint -> (name prefix in the world, model, {actor: [names]})
EXPECTED: dict[str, tuple[str, type, dict[str, list[str]]]] = {
    "tenants": ("tenant", Tenant, {
        "super": ["A", "B"], "adminA": ["A"], "adminB": ["B"], "r1": ["A"], "r2": ["A"], "rB1": ["B"], "s1": ["A"],
        "s2": ["A"], "m1": ["A"], "m2": ["A"], "m0": ["A"], "d1": ["A"], "d2": ["A"], "c1": ["A"], "c2": ["A"],
    }),
    "nodes": ("node", AccountNode, {
        "super": [*A_NODES, "rootB", "rB1"], "adminA": A_NODES, "adminB": ["rootB", "rB1"],
        "r1": ["r1", "s1", "d1"], "r2": ["r2", "s2", "d2"], "rB1": ["rB1"], "s1": ["s1"], "s2": ["s2"],
        "m1": ["r1", "s1", "d1"], "m2": ["r2", "s2", "d2"], "m0": ["r1", "s1", "d1"], "d1": ["d1"], "d2": ["d2"],
        "c1": [], "c2": [],
    }),
    "users": ("u", User, {
        "super": ["super", *A_USERS, "adminB", "rB1"], "adminA": A_USERS, "adminB": ["adminB", "rB1"],
        "r1": ["r1", "s1", "m1", "m0", "d1"], "r2": ["r2", "s2", "m2", "d2"], "rB1": ["rB1"], "s1": ["s1"],
        "s2": ["s2"], "m1": ["r1", "s1", "m1", "m0", "d1"], "m2": ["r2", "s2", "m2", "d2"],
        "m0": ["r1", "s1", "m1", "m0", "d1"], "d1": ["d1"], "d2": ["d2"], "c1": ["c1"], "c2": ["c2"],
    }),
    "packages": ("pkg", Package, {
        "super": ["A1", "A2", "A3", "B1"], "adminA": ["A1", "A2", "A3"], "adminB": ["B1"], "r1": ["A1"],
        "r2": ["A2"], "rB1": ["B1"], "s1": ["A1"], "s2": ["A2"], "m1": ["A1", "A2", "A3"], "m2": ["A1", "A2", "A3"],
        "m0": ["A1", "A2", "A3"], "d1": [], "d2": [], "c1": ["A1"], "c2": ["A2"],
    }),
    "price-list": ("price", PriceListEntry, {
        "super": ["r1", "s1", "r2", "s2", "rB1"], "adminA": ["r1", "s1", "r2", "s2"], "adminB": ["rB1"],
        "r1": ["r1", "s1"], "r2": ["r2", "s2"], "rB1": ["rB1"], "s1": ["s1"], "s2": ["s2"], "m1": ["r1", "s1"],
        "m2": ["r2", "s2"], "m0": ["r1", "s1"], "d1": [], "d2": [], "c1": [], "c2": [],
    }),
    "zones": ("zone", Zone, {
        "super": ["A", "B"], "adminA": ["A"], "adminB": ["B"], "r1": ["A"], "r2": ["A"], "rB1": ["B"], "s1": ["A"],
        "s2": ["A"], "m1": ["A"], "m2": ["A"], "m0": ["A"], "d1": [], "d2": [], "c1": [], "c2": [],
    }),
    "nas": ("nas", Nas, {
        "super": ["A", "B"], "adminA": ["A"], "adminB": ["B"], "r1": [], "r2": [], "rB1": [], "s1": [], "s2": [],
        "m1": ["A"], "m2": ["A"], "m0": [], "d1": [], "d2": [], "c1": [], "c2": [],
    }),
    # MikroTik's view of the same routers: the NAS's visibility, read-only (changes are actions).
    "routers": ("nas", Nas, {
        "super": ["A", "B"], "adminA": ["A"], "adminB": ["B"], "r1": [], "r2": [], "rB1": [], "s1": [], "s2": [],
        "m1": ["A"], "m2": ["A"], "m0": [], "d1": [], "d2": [], "c1": [], "c2": [],
    }),
    "customers": ("cust", Customer, {
        "super": [*A_CUSTOMERS, "rB1"], "adminA": A_CUSTOMERS, "adminB": ["rB1"], "r1": ["r1", "s1"],
        "r2": ["r2", "s2"], "rB1": ["rB1"], "s1": ["s1"], "s2": ["s2"], "m1": ["r1", "s1"], "m2": ["r2", "s2"],
        "m0": [], "d1": [], "d2": [], "c1": ["r1"], "c2": ["r2"],
    }),
    "wallets": ("wallet", Wallet, {
        "super": A_WALLETS + B_WALLETS, "adminA": A_WALLETS, "adminB": B_WALLETS, "r1": R1_WALLETS,
        "r2": R2_WALLETS, "rB1": ["rB1", "cust:rB1"], "s1": ["s1", "cust:s1"], "s2": ["s2", "cust:s2"],
        "m1": R1_WALLETS, "m2": R2_WALLETS, "m0": [], "d1": ["d1"], "d2": ["d2"], "c1": ["cust:r1"],
        "c2": ["cust:r2"],
    }),
    "sales": ("sale", PackageSale, {
        "super": ["r1", "s2", "rB1"], "adminA": ["r1", "s2"], "adminB": ["rB1"], "r1": ["r1"], "r2": ["s2"],
        "rB1": ["rB1"], "s1": [], "s2": ["s2"], "m1": ["r1"], "m2": ["s2"], "m0": [], "d1": [], "d2": [],
        "c1": ["r1"], "c2": [],
    }),
    "payments": ("pay", Payment, {
        "super": ["r1", "s2", "rB1"], "adminA": ["r1", "s2"], "adminB": ["rB1"], "r1": ["r1"], "r2": ["s2"],
        "rB1": ["rB1"], "s1": [], "s2": ["s2"], "m1": ["r1"], "m2": ["s2"], "m0": [], "d1": [], "d2": [],
        "c1": ["r1"], "c2": [],
    }),
    "invoices": ("inv", Invoice, {
        "super": ["rootA", "s1", "rB1"], "adminA": ["rootA", "s1"], "adminB": ["rB1"], "r1": ["s1"], "r2": [],
        "rB1": ["rB1"], "s1": ["s1"], "s2": [], "m1": ["s1"], "m2": [], "m0": [], "d1": [], "d2": [], "c1": [],
        "c2": [],
    }),
    "ipam/prefixes": ("pfx", Prefix, {
        "super": ["A", "B"], "adminA": ["A"], "adminB": ["B"], "m1": ["A"], "m2": ["A"],
        **{a: [] for a in ("r1", "r2", "rB1", "s1", "s2", "m0", "d1", "d2", "c1", "c2")},
    }),
    "ipam/reservations": ("res", Reservation, {
        "super": ["A", "B"], "adminA": ["A"], "adminB": ["B"], "m1": ["A"], "m2": ["A"],
        **{a: [] for a in ("r1", "r2", "rB1", "s1", "s2", "m0", "d1", "d2", "c1", "c2")},
    }),
    "ipam/assignments": ("asg", Assignment, {
        "super": ["r1", "s2"], "adminA": ["r1", "s2"], "adminB": [], "r1": ["r1"], "r2": ["s2"], "rB1": [],
        "s1": [], "s2": ["s2"], "m1": ["r1", "s2"], "m2": ["r1", "s2"], "m0": [], "d1": [], "d2": [],
        "c1": ["r1"], "c2": [],
    }),
    "cards/batches": ("batch", CardBatch, {
        "super": ["r1", "r2", "rB1"], "adminA": ["r1", "r2"], "adminB": ["rB1"], "r1": ["r1"], "r2": ["r2"],
        "rB1": ["rB1"], "s1": [], "s2": [], "m1": ["r1"], "m2": ["r2"], "m0": [], "d1": ["r1"], "d2": ["r2"],
        "c1": [], "c2": [],
    }),
    "cards": ("card", RechargeCard, {
        "super": ["r1", "r2", "rB1"], "adminA": ["r1", "r2"], "adminB": ["rB1"], "r1": ["r1"], "r2": ["r2"],
        "rB1": ["rB1"], "s1": [], "s2": [], "m1": ["r1"], "m2": ["r2"], "m0": [], "d1": ["r1"], "d2": ["r2"],
        "c1": [], "c2": [],
    }),
    # SMS: a message is seen by the subtree of its customer (or of the user who sent it) and by
    # its sender; managers need view_sms (m0 has no permission: only what it sent, nothing here).
    "sms/messages": ("msg", Message, {
        "super": ["rootA", "r1", "s2", "m1", "rB1"], "adminA": ["rootA", "r1", "s2", "m1"], "adminB": ["rB1"],
        "r1": ["r1", "m1"], "r2": ["s2"], "rB1": ["rB1"], "s1": [], "s2": ["s2"], "m1": ["r1", "m1"], "m2": ["s2"],
        "m0": [], "d1": [], "d2": [], "c1": [], "c2": [],
    }),
    # The inbox: resellers see their customers' texts; texts from unknown numbers only the ISP.
    "sms/inbox": ("in", InboundMessage, {
        "super": ["r1", "s2", "anon", "rB1"], "adminA": ["r1", "s2", "anon"], "adminB": ["rB1"], "r1": ["r1"],
        "r2": ["s2"], "rB1": ["rB1"], "s1": [], "s2": ["s2"], "m1": ["r1"], "m2": ["s2"], "m0": [], "d1": [],
        "d2": [], "c1": [], "c2": [],
    }),
    "sms/templates": ("tpl", SmsTemplate, {
        "super": ["A", "B"], "adminA": ["A"], "adminB": ["B"], "m1": ["A"], "m2": ["A"],
        **{a: [] for a in ("r1", "r2", "rB1", "s1", "s2", "m0", "d1", "d2", "c1", "c2")},
    }),
    "sms/campaigns": ("camp", Campaign, {
        "super": ["A", "m1", "B"], "adminA": ["A", "m1"], "adminB": ["B"], "r1": ["m1"], "m1": ["m1"],
        **{a: [] for a in ("r2", "rB1", "s1", "s2", "m2", "m0", "d1", "d2", "c1", "c2")},
    }),
}
ENDPOINTS = [*EXPECTED, "ledger"]
READ_ONLY = {"wallets", "ledger", "invoices", "cards", "routers", "sms/messages", "sms/inbox"}
NO_EDIT = READ_ONLY | {"sales", "payments", "cards/batches", "sms/campaigns"}
# Assignments are released (DELETE) and re-assigned, never edited: their "change" is a delete.
EDIT_METHOD = {"ipam/assignments": "delete"}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        from django.db import connection, transaction

        # Built once for the module inside a transaction that is rolled back at the end.
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            yield build_world()
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)
            connection.close()


def client_for(world, actor: str | None) -> APIClient:
    client = APIClient()
    if actor is not None:
        client.force_authenticate(world[f"u:{actor}"])
    return client


def expected_ids(world, endpoint: str, actor: str) -> set[int]:
    if endpoint == "ledger":
        wallets = {world.pk(f"wallet:{n}") for n in EXPECTED["wallets"][2][actor]}
        return set(LedgerEntry.objects.filter(wallet_id__in=wallets).values_list("id", flat=True))
    prefix, _model, table = EXPECTED[endpoint]
    return {world.pk(f"{prefix}:{name}") for name in table[actor]}


def all_ids(world, endpoint: str) -> set[int]:
    model = LedgerEntry if endpoint == "ledger" else EXPECTED[endpoint][1]
    return set(model.objects.values_list("id", flat=True))


def list_ids(client: APIClient, endpoint: str) -> tuple[int, set[int]]:
    ids: set[int] = set()
    url = f"/api/v1/{endpoint}/?page_size=500"
    status = None
    while url:
        response = client.get(url)
        status = response.status_code
        if status != 200:
            return status, ids
        ids |= {row["id"] for row in response.json()["results"]}
        url = response.json()["next"]
    return status, ids


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_anonymous_gets_401_everywhere(world, endpoint):
    client = client_for(world, None)
    assert client.get(f"/api/v1/{endpoint}/").status_code == 401
    some_id = next(iter(all_ids(world, endpoint)))
    assert client.get(f"/api/v1/{endpoint}/{some_id}/").status_code == 401
    assert client.post(f"/api/v1/{endpoint}/", {}, format="json").status_code == 401


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint,actor", list(itertools.product(ENDPOINTS, ACTORS)))
def test_list_and_detail_show_exactly_the_actors_rows(world, endpoint, actor):
    client = client_for(world, actor)
    expected = expected_ids(world, endpoint, actor)
    status, seen = list_ids(client, endpoint)
    assert status == 200
    assert seen == expected, f"{actor} on {endpoint}: extra {seen - expected}, missing {expected - seen}"
    for pk in sorted(all_ids(world, endpoint)):
        response = client.get(f"/api/v1/{endpoint}/{pk}/")
        assert response.status_code == (200 if pk in expected else 404), (actor, endpoint, pk)
        if pk in expected:
            assert response.json()["id"] == pk


def _snapshot():
    models = [Tenant, AccountNode, User, Package, PriceListEntry, Zone, Nas, Customer, Wallet, LedgerEntry,
              LedgerTransaction, AuditEvent, PackageSale, Payment, Invoice, Prefix, Reservation, Assignment,
              CardBatch, RechargeCard, Message, InboundMessage, SmsTemplate, Campaign]
    return {m.__name__: (m.objects.count(), m.objects.order_by("-id").values_list("id", flat=True).first())
            for m in models}


def create_payload(world, endpoint: str, actor: str, n: int) -> dict:
    user = world[f"u:{actor}"]
    node = user.node or world["node:rootA"]
    tenant = world["tenant:A"].pk
    if endpoint == "tenants":
        return {"name": f"New ISP {n}", "slug": f"new-isp-{n}"}
    if endpoint == "nodes":
        return {"parent": node.pk, "kind": "card_distributor", "name": f"Shop {n}", "tenant": tenant}
    if endpoint == "users":
        return {"username": f"new-user-{n}", "password": "Another-Pass-2026", "role": "manager", "node": node.pk}
    if endpoint == "packages":
        return {"name": f"P{n}", "customer_types": ["pppoe"], "billing_mode": "monthly", "price": "100",
                "tenant": tenant}
    if endpoint == "price-list":
        child = {"adminA": "node:r1", "super": "node:r1", "r1": "node:s1", "r2": "node:s2"}.get(actor)
        package = {"adminA": "pkg:A3", "super": "pkg:A3", "r1": "pkg:A1", "r2": "pkg:A2"}.get(actor, "pkg:A1")
        return {"node": world[child].pk if child else node.pk, "package": world[package].pk,
                "node_price": "350", "customer_price": "500"}
    if endpoint == "zones":
        return {"name": f"Zone new {n}", "tenant": tenant}
    if endpoint == "nas":
        return {"name": f"Router {n}", "ip_address": f"198.51.100.{n % 250 + 1}", "secret": "abcdefgh", "tenant": tenant}
    if endpoint == "customers":
        return {"node": node.pk, "customer_type": "pppoe", "username": f"new-cust-{n}", "password": "secret1",
                "full_name": "New Customer", "mobile": "01812345678", "tenant": tenant}
    if endpoint in ("sales", "payments"):
        customer, package = BUYS.get(actor, ("r1", "A1"))
        payer = "node" if actor in ("r1", "r2", "rB1", "s1", "s2") else "customer"
        if endpoint == "sales":
            return {"customer": world.pk(f"cust:{customer}"), "package": world.pk(f"pkg:{package}"), "payer": payer,
                    "idempotency_key": f"matrix-{n}"}
        return {"customer": world.pk(f"cust:{customer}"), "amount": "25.00", "method": "cash",
                "idempotency_key": f"matrix-{n}"}
    if endpoint == "ipam/prefixes":
        return {"network": f"172.{16 + n // 256}.{n % 256}.0/24", "role": "infrastructure", "tenant": tenant}
    if endpoint == "ipam/reservations":
        return {"network": f"10.{60 if user.tenant_id == world['tenant:B'].pk else 50}.0.{n % 200 + 20}/32",
                "kind": "other", "tenant": tenant}
    if endpoint == "ipam/assignments":
        customer = {"adminB": "cust:rB1", "m1": "cust:s1", "m2": "cust:r2"}.get(actor, "cust:rootA")
        return {"kind": "ipv4_static", "customer": world.pk(customer)}
    if endpoint == "sms/templates":
        return {"name": f"T{n}", "body": "Hello {name}, due {due}", "tenant": tenant}
    if endpoint == "sms/campaigns":
        line = "WorldB" if user.tenant_id == world["tenant:B"].pk else "WorldA"
        return {"name": f"C{n}", "body": "অফার {name}", "audience": {"kind": "numbers", "numbers": ["01711999002"]},
                "tenant": tenant, "sender": line}
    if endpoint == "cards/batches":
        data = {"count": 1, "face_value": "100", "validity_days": 30}
        if actor == "super":
            data["issuer"] = world.pk("node:rootA")
        return data
    return {}


# actor -> (customer it buys for, package)
BUYS = {"super": ("rootA", "A3"), "adminA": ("rootA", "A3"), "adminB": ("rB1", "B1"), "r1": ("r1", "A1"),
        "r2": ("r2", "A2"), "rB1": ("rB1", "B1"), "s1": ("s1", "A1"), "s2": ("s2", "A2"), "m1": ("r1", "A1"),
        "m2": ("r2", "A2"), "c1": ("r1", "A1"), "c2": ("r2", "A2")}


# endpoint -> actor -> expected status of a create; actors not listed get 403.
CREATE_STATUS = {
    "tenants": {"super": 201},
    "nodes": {"super": 201, "adminA": 201, "adminB": 201, "r1": 201, "r2": 201, "rB1": 201, "s1": 201, "s2": 201},
    "users": {"super": 201, "adminA": 201, "adminB": 201, "r1": 201, "r2": 201, "rB1": 201, "s1": 201, "s2": 201},
    "packages": {"super": 201, "adminA": 201, "adminB": 201, "m1": 201, "m2": 201},
    "price-list": {"super": 201, "adminA": 201, "adminB": 400, "r1": 201, "r2": 201, "rB1": 400, "s1": 400,
                   "s2": 400},
    "zones": {"super": 201, "adminA": 201, "adminB": 201, "m1": 201, "m2": 201},
    "nas": {"super": 201, "adminA": 201, "adminB": 201, "m1": 201, "m2": 201},
    "customers": {"super": 201, "adminA": 201, "adminB": 201, "r1": 201, "r2": 201, "rB1": 201, "s1": 201,
                  "s2": 201, "m1": 201, "m2": 201},
    "sales": {"super": 201, "adminA": 201, "adminB": 201, "r1": 201, "r2": 201, "rB1": 201, "s1": 201, "s2": 201,
              "m1": 201, "m2": 201, "c1": 201, "c2": 201},
    "payments": {"super": 201, "adminA": 201, "adminB": 201, "r1": 201, "r2": 201, "rB1": 201, "s1": 201,
                 "s2": 201, "m1": 201, "m2": 201},
    "wallets": {},
    "ledger": {},
    "invoices": {},
    "ipam/prefixes": {"super": 201, "adminA": 201, "adminB": 201, "m1": 201, "m2": 201},
    "ipam/reservations": {"super": 201, "adminA": 201, "adminB": 201, "m1": 201, "m2": 201},
    "ipam/assignments": {"super": 201, "adminA": 201, "adminB": 201, "m1": 201, "m2": 201},
    "cards/batches": {"super": 201, "adminA": 201, "adminB": 201, "r1": 201, "r2": 201, "rB1": 201, "s1": 201,
                      "s2": 201},
    "cards": {},
    "sms/messages": {},
    "sms/inbox": {},
    "sms/templates": {"super": 201, "adminA": 201, "adminB": 201, "m1": 201, "m2": 201},
    "sms/campaigns": {"super": 201, "adminA": 201, "adminB": 201, "m1": 201, "m2": 201},
}


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint,actor", list(itertools.product(ENDPOINTS, ACTORS)))
def test_create_is_granted_only_by_the_policy(world, endpoint, actor):
    n = ACTORS.index(actor) * 100 + ENDPOINTS.index(endpoint)
    client = client_for(world, actor)
    before = _snapshot()
    response = client.post(f"/api/v1/{endpoint}/", create_payload(world, endpoint, actor, n), format="json")
    read_only = endpoint in READ_ONLY
    expected = 405 if read_only else CREATE_STATUS[endpoint].get(actor, 403)
    assert response.status_code == expected, response.content
    body = response.json()
    if expected == 201:
        created_model = EXPECTED[endpoint][1]
        obj = created_model.objects.get(pk=body["id"])
        if endpoint != "tenants":
            tenant_id = obj.node.tenant_id if created_model is PriceListEntry else obj.tenant_id
            acting = world[f"u:{actor}"]
            assert tenant_id == (acting.tenant_id or world["tenant:A"].pk)
    else:
        assert "error" in body and body["error"]["status"] == expected
        assert _snapshot() == before, "a refused write changed the database"


def update_payload(endpoint: str) -> dict:
    return {
        "tenants": {"name": "Renamed"}, "nodes": {"name": "Renamed"}, "users": {"first_name": "Renamed"},
        "packages": {"name": "Renamed"}, "price-list": {"customer_price": "900"}, "zones": {"name": "Renamed"},
        "nas": {"name": "Renamed"}, "routers": {"name": "Renamed"}, "customers": {"full_name": "Renamed"}, "wallets": {"balance": "1000000"},
        "ledger": {"amount": "1000000"}, "sales": {"price": "0"}, "payments": {"amount": "1000000"},
        "invoices": {"total": "0"}, "ipam/prefixes": {"name": "Renamed"}, "ipam/reservations": {"description": "x"},
        "ipam/assignments": {}, "cards/batches": {"memo": "x"}, "cards": {"status": "used"},
        "sms/messages": {"state": "delivered"}, "sms/inbox": {"status": "ignored"}, "sms/templates": {"name": "R"},
        "sms/campaigns": {"name": "Renamed"},
    }[endpoint]


# endpoint -> actors that may change rows they can see (others get 403 on visible rows).
CHANGERS = {
    "tenants": {"super"},
    "nodes": {"super", "adminA", "adminB", "r1", "r2", "rB1", "s1", "s2"},
    "users": {"super", "adminA", "adminB", "r1", "r2", "rB1", "s1", "s2"},
    "packages": {"super", "adminA", "adminB", "m1", "m2"},
    "price-list": {"super", "adminA", "adminB", "r1", "r2", "rB1", "s1", "s2"},
    "zones": {"super", "adminA", "adminB", "m1", "m2"},
    "nas": {"super", "adminA", "adminB", "m1", "m2"},
    "customers": {"super", "adminA", "adminB", "r1", "r2", "rB1", "s1", "s2", "m1", "m2"},
    "wallets": set(),
    "ledger": set(),
    "sales": set(),
    "payments": set(),
    "invoices": set(),
    "ipam/prefixes": {"super", "adminA", "adminB", "m1", "m2"},
    "ipam/reservations": {"super", "adminA", "adminB", "m1", "m2"},
    "ipam/assignments": {"super", "adminA", "adminB", "m1", "m2"},
    "cards/batches": set(),
    "cards": set(),
    "sms/messages": set(),
    "sms/inbox": set(),
    "sms/templates": {"super", "adminA", "adminB", "m1", "m2"},
    "sms/campaigns": set(),
}


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint,actor", list(itertools.product(ENDPOINTS, ACTORS)))
def test_no_write_outside_scope_or_grant(world, endpoint, actor):
    """PATCH and DELETE on every row: a role that may never change this kind of row gets 403
    whatever the id (so the answer reveals nothing); a role that may, gets 404 for rows outside
    its scope; read-only endpoints answer 405 to everyone. None of them changes anything."""
    client = client_for(world, actor)
    visible = expected_ids(world, endpoint, actor)
    for pk in sorted(all_ids(world, endpoint)):
        before = _snapshot()
        method = EDIT_METHOD.get(endpoint, "patch")
        response = getattr(client, method)(f"/api/v1/{endpoint}/{pk}/", update_payload(endpoint), format="json")
        if endpoint in NO_EDIT:
            assert response.status_code == 405
        elif actor not in CHANGERS[endpoint]:
            assert response.status_code == 403, (actor, endpoint, pk)
        elif pk not in visible:
            assert response.status_code == 404, (actor, endpoint, pk)
        else:
            continue  # allowed edits are covered by the per-endpoint tests
        assert _snapshot() == before
        if method == "delete":
            continue
        response = client.delete(f"/api/v1/{endpoint}/{pk}/")
        assert response.status_code in (403, 404, 405), (actor, endpoint, pk, response.status_code)
        assert _snapshot() == before


def test_the_matrix_covers_every_api_endpoint():
    """A new collection endpoint must be added to the matrix: every viewset list route under
    /api/v1/ (found by walking the URL resolver) has to be one of ENDPOINTS."""
    from django.urls import get_resolver

    def walk(patterns, prefix=""):
        for p in patterns:
            route = prefix + str(p.pattern)
            if hasattr(p, "url_patterns"):
                yield from walk(p.url_patterns, route)
            else:
                yield route, p.callback

    collections = set()
    for route, callback in walk(get_resolver().url_patterns):
        actions = getattr(callback, "actions", None) or {}
        if route.startswith("api/v1/") and "list" in actions.values() and "format" not in route:
            collections.add(route[len("api/v1/"):].replace("^", "").replace("$", "").rstrip("/"))
    assert {"customers", "wallets"} <= collections
    not_in_matrix = collections - set(ENDPOINTS)
    assert not not_in_matrix, f"endpoints missing from the authorization matrix: {sorted(not_in_matrix)}"
