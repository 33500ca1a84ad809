"""The SMS panel pages: login required, staff with SMS rights only, English and Bangla,
compose sends through the services, the live counter endpoint and its JavaScript."""
from __future__ import annotations

import json
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client

from ispcore.accounts import services as accounts
from ispcore.accounts.roles import ManagerPermission as P
from ispcore.accounts.roles import Role
from notifications.encoding import segment
from notifications.models import Campaign, InboundMessage, Message
from tests.notifications.smscore_support import make_super, make_tenant
from tests.notifications.test_encoding import _load_vectors

pytestmark = pytest.mark.django_db

STATIC = Path(__file__).resolve().parents[2] / "notifications" / "static" / "notifications"


@pytest.fixture
def env():
    su = make_super()
    tenant, route = make_tenant(su, "isp-panel", port=1, price="0.25")
    users = {}
    for name, role, perms in (("admin", Role.ADMIN, None), ("single", Role.MANAGER, [P.SEND_SMS]),
                              ("none", Role.MANAGER, []), ("reseller", Role.RESELLER, None)):
        node = tenant.root_node
        if role == Role.RESELLER:
            node = accounts.create_node(actor=su, parent=tenant.root_node, kind="reseller", name="R-panel")
        users[name] = accounts.create_user(actor=su, username=f"panel-{name}", password="Panel-Pass-2026",
                                           role=role, node=node, permissions=perms)
    return su, tenant, users


def logged_in(user, lang="en") -> Client:
    c = Client(HTTP_ACCEPT_LANGUAGE=lang)
    c.force_login(user)
    return c


@pytest.mark.parametrize("page", ["compose", "campaigns", "inbox", "messages"])
def test_pages_need_a_login_and_sms_rights(env, page):
    su, tenant, users = env
    anonymous = Client().get(f"/sms/{page}/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/sms/login/")
    assert logged_in(users["none"]).get(f"/sms/{page}/").status_code == 403
    assert logged_in(users["reseller"]).get(f"/sms/{page}/").status_code == 403
    assert logged_in(users["admin"]).get(f"/sms/{page}/").status_code == 200
    assert logged_in(users["single"]).get(f"/sms/{page}/").status_code == 200


def test_login_page_logs_a_manager_in(env):
    su, tenant, users = env
    c = Client()
    assert c.get("/sms/login/").status_code == 200
    r = c.post("/sms/login/", {"username": "panel-single", "password": "Panel-Pass-2026", "next": "/sms/inbox/"})
    assert r.status_code == 302 and r["Location"] == "/sms/inbox/"
    assert c.get("/sms/inbox/").status_code == 200


def test_pages_speak_english_and_bangla(env):
    su, tenant, users = env
    en = logged_in(users["admin"], "en").get("/sms/compose/").content.decode()
    assert "Compose SMS" in en and "Total cost" in en
    bn = logged_in(users["admin"], "bn").get("/sms/compose/").content.decode()
    assert "এসএমএস লিখুন" in bn and "মোট খরচ" in bn and "Compose SMS" not in bn
    inbox_bn = logged_in(users["admin"], "bn").get("/sms/inbox/").content.decode()
    assert "ইনবক্স" in inbox_bn


def test_compose_one_number_queues_a_single_message(env):
    su, tenant, users = env
    r = logged_in(users["single"]).post("/sms/compose/", {"numbers": "01711000901", "text": "Bill paid, thanks"})
    assert r.status_code == 200 and b"Queued to +8801711000901" in r.content
    m = Message.objects.get()
    assert (m.kind, m.to_number, m.parts, m.cost, m.created_by) == ("single", "+8801711000901", 1, Decimal("0.25"),
                                                                   users["single"])


def test_compose_several_numbers_is_a_campaign_and_needs_bulk_rights(env):
    su, tenant, users = env
    data = {"numbers": "01711000902, 01711000903\n01711000904", "text": "ঈদ মোবারক", "name": "Eid",
            "promotional": "on"}
    refused = logged_in(users["single"]).post("/sms/compose/", data)
    assert refused.status_code == 400 and b"You may not send bulk SMS." in refused.content
    assert not Campaign.objects.exists() and not Message.objects.exists()
    r = logged_in(users["admin"]).post("/sms/compose/", data)
    assert r.status_code == 302 and r["Location"] == "/sms/campaigns/"
    campaign = Campaign.objects.get()
    assert (campaign.name, campaign.total, campaign.status, campaign.promotional) == ("Eid", 3, "running", True)
    page = logged_in(users["admin"]).get("/sms/campaigns/").content.decode()
    assert f'data-progress-url="/api/v1/sms/campaigns/{campaign.pk}/progress/"' in page and 'data-live="1"' in page
    progress = logged_in(users["admin"]).get(f"/api/v1/sms/campaigns/{campaign.pk}/progress/").json()
    assert (progress["total"], progress["done"]) == (3, 0)


def test_compose_errors_are_shown_and_nothing_is_written(env):
    su, tenant, users = env
    c = logged_in(users["admin"])
    r = c.post("/sms/compose/", {"numbers": "", "text": "x"})
    assert r.status_code == 400 and b"Enter at least one number." in r.content
    r = c.post("/sms/compose/", {"numbers": "01711000905", "text": "promo without Bangla", "promotional": "on"})
    assert r.status_code == 400 and b"Bangla" in r.content
    assert not Message.objects.exists()


def test_inbox_page_lists_incoming_messages(env):
    from django.utils import timezone

    su, tenant, users = env
    InboundMessage.objects.create(tenant=tenant, provider="x", from_number="8801711000906", to_number="8809612",
                                  text="আমার নেট নেই", received_at=timezone.now(), status="handled")
    page = logged_in(users["admin"]).get("/sms/inbox/?status=handled").content.decode()
    assert "আমার নেট নেই" in page and "8801711000906" in page
    assert "আমার নেট নেই" not in logged_in(users["admin"]).get("/sms/inbox/?status=new").content.decode()


def test_counter_endpoint_with_the_pages_session(env):
    """The compose page's counter posts to the preview endpoint with its session and CSRF token."""
    su, tenant, users = env
    c = Client(enforce_csrf_checks=True)
    c.force_login(users["single"])
    page = c.get("/sms/compose/")
    token = page.cookies["csrftoken"].value
    text = "প্রিয় গ্রাহক, আপনার বিল " * 5
    r = c.post("/api/v1/sms/preview/", json.dumps({"text": text, "recipients": 4}), content_type="application/json",
               HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 200
    seg = segment(text)
    d = r.json()
    assert (d["encoding"], d["parts"], d["characters"]) == (seg.encoding, seg.count, len(text))
    assert Decimal(d["total_cost"]) == Decimal("0.25") * seg.count * 4
    assert c.post("/api/v1/sms/preview/", json.dumps({"text": "x"}), content_type="application/json").status_code \
        == 403  # no CSRF token: refused


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_counter_javascript_paints_what_the_endpoint_answers():
    """Run sms_compose.js under node with a minimal DOM: typing debounces to one preview
    request per pause and paints the server's figures for every shared vector unchanged."""
    vectors = _load_vectors()
    answers = []
    for v in vectors:
        seg = segment(v["text"])
        answers.append({"text": v["text"], "answer": {"characters": len(v["text"]), "encoding": seg.encoding,
                                                      "parts": seg.count, "remaining": seg.remaining,
                                                      "recipients": 2, "cost_per_recipient": "0.25",
                                                      "total_cost": "0.50", "error": ""}})
    harness = Path(__file__).with_name("counter_harness.js")
    out = subprocess.run(["node", str(harness), str(STATIC / "sms_compose.js")], input=json.dumps(answers),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["requests"] == len(vectors) + 1  # one on load, one per debounced burst of typing
    for painted, expected in zip(result["painted"], answers, strict=True):
        a = expected["answer"]
        assert painted["parts"] == str(a["parts"]) and painted["encoding"] == a["encoding"]
        assert painted["characters"] == str(a["characters"])
