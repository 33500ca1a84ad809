"""The SMS HTTP API: send single / bulk with an Idempotency-Key, who may send what, status,
balance, the segment preview, campaigns; against real PostgreSQL and the SMSC simulator."""
from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from ispcore.accounts import services as accounts
from ispcore.accounts.roles import ManagerPermission as P
from ispcore.accounts.roles import Role
from ispcore.billing.models import LedgerTransaction
from notifications import credit, reports
from notifications.encoding import segment
from notifications.models import Campaign, Message
from notifications.worker import Sender, build_route_providers
from tests.notifications.smscore_support import make_super, make_tenant
from tests.notifications.test_encoding import _load_vectors
from tests.peers.smsc import SMSCSimulator

pytestmark = pytest.mark.django_db(transaction=True)

VECTORS = _load_vectors()  # ../shared/testdata/sms_segments.json (or $SHARED_DIR)


@pytest.fixture
def sim():
    with SMSCSimulator("ispsms", "secret") as simulator:
        yield simulator


@pytest.fixture
def env(sim):
    su = make_super()
    tenant, route = make_tenant(su, "isp-api", port=sim.port, price="0.30", credit_amount="50")
    root = tenant.root_node
    users = {"su": su}
    for name, role, perms in (("admin", Role.ADMIN, None), ("single", Role.MANAGER, [P.SEND_SMS]),
                              ("bulk", Role.MANAGER, [P.SEND_BULK_SMS]), ("viewer", Role.MANAGER, [P.VIEW_SMS]),
                              ("none", Role.MANAGER, []), ("reseller", Role.RESELLER, None)):
        node = root
        if role == Role.RESELLER:
            node = accounts.create_node(actor=su, parent=root, kind="reseller", name="R-api")
        users[name] = accounts.create_user(actor=su, username=f"api-{name}", password="Api-Pass-2026", role=role,
                                           node=node, permissions=perms)
    return su, tenant, route, users


def client(user) -> APIClient:
    c = APIClient()
    c.force_authenticate(user)
    return c


def test_single_send_with_idempotency_key_sends_once(env, sim):
    su, tenant, route, users = env
    api = client(users["admin"])
    body = {"to": "01711000101", "text": "Your bill is 500 BDT"}
    first = api.post("/api/v1/sms/send/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-77")
    assert first.status_code == 201, first.content
    again = api.post("/api/v1/sms/send/", body, format="json", HTTP_IDEMPOTENCY_KEY="order-77")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"] and again.json()["replayed"]
    assert Message.objects.count() == 1
    assert LedgerTransaction.objects.filter(kind="sms.hold").count() == 1
    assert credit.balance(tenant.pk) == Decimal("49.70")
    clash = api.post("/api/v1/sms/send/", {**body, "text": "Another text"}, format="json",
                     HTTP_IDEMPOTENCY_KEY="order-77")
    assert clash.status_code == 409 and Message.objects.count() == 1
    # sent once on the wire, and its status is readable
    sender = Sender(build_route_providers([route]), name="api", batch_size=10, submit_timeout=5)
    sender.start()
    try:
        sim.configure(dlr="late", dlr_delay=0.02)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Message.objects.get().state != "delivered":
            sender.run_once()
            reports.apply_reports()
            time.sleep(0.05)
    finally:
        sender.stop()
    assert len(sim.submits_to("8801711000101")) == 1
    status = api.get(f"/api/v1/sms/messages/{first.json()['id']}/")
    assert status.status_code == 200 and status.json()["state"] == "delivered"
    assert api.get("/api/v1/sms/messages/?state=delivered").json()["count"] == 1


def test_bulk_send_dedupes_reports_invalid_and_replays(env, sim):
    su, tenant, route, users = env
    api = client(users["bulk"])
    body = {"numbers": ["01711000201", "+8801711000201", "01711000202", "12345"], "text": "নতুন অফার"}
    r = api.post("/api/v1/sms/send/", body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-1")
    assert r.status_code == 201, r.content
    data = r.json()
    assert sorted(m["to_number"] for m in data["messages"]) == ["+8801711000201", "+8801711000202"]
    assert [i for i in data["invalid"]] and "12345" in json.dumps(data["invalid"])
    assert Decimal(data["cost"]) == Decimal("0.60")
    replay = api.post("/api/v1/sms/send/", body, format="json", HTTP_IDEMPOTENCY_KEY="bulk-1")
    assert replay.status_code == 200 and replay.json()["replayed"]
    assert [m["id"] for m in replay.json()["messages"]] == [m["id"] for m in data["messages"]]
    assert Message.objects.count() == 2


def test_who_may_send_single_and_bulk(env):
    su, tenant, route, users = env
    one = {"to": "01711000301", "text": "hi"}
    many = {"numbers": ["01711000302", "01711000303"], "text": "hi all"}
    expect = {"admin": (201, 201), "single": (201, 403), "bulk": (201, 201), "viewer": (403, 403),
              "none": (403, 403), "reseller": (403, 403)}
    for name, (single_status, bulk_status) in expect.items():
        before = Message.objects.count()
        r1 = client(users[name]).post("/api/v1/sms/send/", one, format="json")
        r2 = client(users[name]).post("/api/v1/sms/send/", many, format="json")
        assert (r1.status_code, r2.status_code) == (single_status, bulk_status), (name, r1.content, r2.content)
        sent = (single_status == 201) + 2 * (bulk_status == 201)
        assert Message.objects.count() == before + sent
    assert APIClient().post("/api/v1/sms/send/", one, format="json").status_code == 401
    # the super admin names the tenant
    assert client(su).post("/api/v1/sms/send/", one, format="json").status_code == 400
    assert client(su).post("/api/v1/sms/send/", {**one, "tenant": tenant.pk}, format="json").status_code == 201


def test_a_send_beyond_the_balance_is_refused_and_writes_nothing(env):
    su, tenant, route, users = env
    numbers = [f"017110004{i:02d}" for i in range(60)]  # 60 x 3 parts x 0.30 = 54.00 > 50.00
    text = "x" * 400
    assert segment(text).count == 3
    r = client(users["admin"]).post("/api/v1/sms/send/", {"numbers": numbers, "text": text}, format="json")
    assert r.status_code == 400 and "SMS balance" in r.json()["error"]["message"]
    assert Message.objects.count() == 0 and credit.balance(tenant.pk) == Decimal("50.00")


def test_bad_input_is_a_clear_error(env):
    su, tenant, route, users = env
    api = client(users["admin"])
    assert api.post("/api/v1/sms/send/", {"text": "no number"}, format="json").status_code == 400
    r = api.post("/api/v1/sms/send/", {"to": "12", "text": "hi"}, format="json")
    assert r.status_code == 400 and "to" in r.json()["error"]["fields"]
    r = api.post("/api/v1/sms/send/", {"to": "01711000501", "text": "a" * 153 * 11}, format="json")
    assert r.status_code == 400 and "text" in r.json()["error"]["fields"]
    assert Message.objects.count() == 0


def test_preview_matches_the_segmenter_on_every_shared_vector(env):
    su, tenant, route, users = env
    api = client(users["single"])
    for v in VECTORS:
        r = api.post("/api/v1/sms/preview/", {"text": v["text"], "recipients": 3}, format="json")
        assert r.status_code == 200
        d = r.json()
        seg = segment(v["text"])
        assert (d["encoding"], d["parts"]) == (v["encoding"], v["parts"]) == (seg.encoding, seg.count), v["note"]
        assert d["units"] == sum(v["part_units"])
        assert Decimal(d["cost_per_recipient"]) == Decimal("0.30") * v["parts"]
        assert Decimal(d["total_cost"]) == Decimal("0.30") * v["parts"] * 3
    empty = api.get("/api/v1/sms/preview/", {"text": ""}).json()
    assert (empty["parts"], empty["total_cost"]) == (0, "0.00")
    too_long = api.post("/api/v1/sms/preview/", {"text": "ক" * 67 * 11}, format="json").json()
    assert too_long["parts"] == 11 and too_long["error"] and not too_long["sendable"]
    assert client(users["viewer"]).post("/api/v1/sms/preview/", {"text": "x"}, format="json").status_code == 403


def test_balance(env):
    su, tenant, route, users = env
    client(users["admin"]).post("/api/v1/sms/send/", {"to": "01711000601", "text": "hi"}, format="json")
    for name in ("admin", "viewer", "single"):
        d = client(users[name]).get("/api/v1/sms/balance/").json()
        assert (d["balance"], d["held"], d["price_per_part"]) == ("49.70", "0.30", "0.30")
    assert client(users["none"]).get("/api/v1/sms/balance/").status_code == 403
    assert client(users["reseller"]).get("/api/v1/sms/balance/").status_code == 403
    assert client(su).get(f"/api/v1/sms/balance/?tenant={tenant.pk}").json()["balance"] == "49.70"


def test_campaign_create_start_and_progress(env, sim):
    su, tenant, route, users = env
    api = client(users["bulk"])
    r = api.post("/api/v1/sms/campaigns/", {"name": "Eid", "body": "ঈদ মোবারক {name}", "start": True,
                                            "audience": {"kind": "numbers",
                                                         "numbers": ["01711000701", "01711000702", "bad"]}},
                 format="json")
    assert r.status_code == 201, r.content
    campaign = Campaign.objects.get(pk=r.json()["id"])
    assert campaign.status == "running" and campaign.total == 2 and campaign.invalid_count == 1
    progress = api.get(f"/api/v1/sms/campaigns/{campaign.pk}/progress/").json()
    assert progress["total"] == 2 and progress["done"] == 0
    assert api.post(f"/api/v1/sms/campaigns/{campaign.pk}/pause/").json()["status"] == "paused"
    assert client(users["single"]).post(f"/api/v1/sms/campaigns/{campaign.pk}/resume/").status_code == 403
    assert api.post(f"/api/v1/sms/campaigns/{campaign.pk}/cancel/").json()["status"] == "cancelled"
    assert credit.held(tenant.pk) == Decimal("0.00")


def test_statistics_per_user_and_day_with_visibility(env):
    su, tenant, route, users = env
    admin, bulk = client(users["admin"]), client(users["bulk"])
    assert admin.post("/api/v1/sms/send/", {"to": "01711000401", "text": "one part"}, format="json",
                      HTTP_IDEMPOTENCY_KEY="s1").status_code == 201
    assert bulk.post("/api/v1/sms/send/", {"numbers": ["01711000402", "01711000403"], "text": "নতুন অফার"},
                     format="json", HTTP_IDEMPOTENCY_KEY="s2").status_code == 201
    total = admin.get("/api/v1/sms/stats/")
    assert total.status_code == 200, total.content
    [row] = total.json()["rows"]
    assert (row["messages"], row["parts"], row["pending"], row["delivered"]) == (3, 3, 3, 0)
    by_user = {r["created_by_id"]: r["messages"] for r in admin.get("/api/v1/sms/stats/?group_by=user").json()["rows"]}
    assert by_user == {users["admin"].pk: 1, users["bulk"].pk: 2}
    by_day = admin.get("/api/v1/sms/stats/?group_by=day&since=2000-01-01").json()["rows"]
    assert len(by_day) == 1
    assert admin.get("/api/v1/sms/stats/?since=2999-01-01").json()["rows"][0]["messages"] == 0
    assert admin.get("/api/v1/sms/stats/?group_by=colour").status_code == 400
    assert admin.get("/api/v1/sms/stats/?since=yesterday").status_code == 400
    assert client(users["none"]).get("/api/v1/sms/stats/").status_code == 403
    assert client(users["viewer"]).get("/api/v1/sms/stats/").status_code == 200
