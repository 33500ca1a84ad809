"""The router's API endpoints and admin page: last sync status and error, runs, repair, status, kick."""

from __future__ import annotations

import itertools

import pytest
from django.test import Client
from rest_framework.test import APIClient

from ispcore.accounts.models import User
from ispcore.accounts.roles import NodeKind, Role
from ispcore.accounts.services import create_node, create_tenant, create_user
from ispcore.core.models import AuditEvent
from ispcore.subscribers.services import create_nas, update_nas
from mikrotik import tasks
from mikrotik.models import RouterSyncRun
from mikrotik.sync import PPP_PROFILE, sync_router

from .conftest import make_package

PW = "a-long-pass-123"
_seq = itertools.count(1)


@pytest.fixture
def users(tenant):
    other = create_tenant(actor=None, name="Other", slug=f"other-api-{next(_seq)}")
    reseller_node = create_node(actor=None, parent=tenant.root_node, kind=NodeKind.RESELLER, name="R1")

    def user(name, role, node, **kw):
        return create_user(actor=None, username=f"{name}{next(_seq)}", password=PW, role=role, node=node, **kw)

    return {
        "super": User.objects.create_user(username=f"root{next(_seq)}", password=PW, role=Role.SUPER_ADMIN),
        "admin": user("admin", Role.ADMIN, tenant.root_node),
        "manager_nas": user("mgrnas", Role.MANAGER, tenant.root_node, permissions=["manage_nas"]),
        "manager": user("mgr", Role.MANAGER, tenant.root_node, permissions=["view_customers"]),
        "reseller": user("res", Role.RESELLER, reseller_node),
        "other_admin": user("oadmin", Role.ADMIN, other.root_node),
    }


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def failed_sync(tenant, nas, router):
    """A sync in which the router refused one profile."""
    package = make_package(tenant, "Basic", ["pppoe"], 1024, 2048)
    router.inject_trap(PPP_PROFILE, name=f"pkg-{package.pk}", message="failure: bad rate <limit>")
    return sync_router(nas)


@pytest.mark.parametrize("who,visible", [("admin", True), ("manager_nas", True), ("super", True),
                                         ("manager", False), ("reseller", False), ("other_admin", False)])
def test_sync_runs_are_seen_only_by_staff_who_manage_routers(users, nas, failed_sync, who, visible):
    client = api(users[who])
    response = client.get(f"/api/v1/routers/{nas.pk}/sync-runs/")
    assert response.status_code == (200 if visible else 404)
    listed = client.get("/api/v1/routers/").json()["results"]
    assert [row["id"] for row in listed] == ([nas.pk] if visible else [])
    if visible:
        [run] = response.json()["results"]
        assert (run["status"], run["trigger"], run["added"]) == ("failed", "manual", 0)
        assert run["errors"][0]["message"] == "failure: bad rate <limit>"
        detail = client.get(f"/api/v1/routers/{nas.pk}/").json()
        assert detail["last_sync"]["status"] == "failed" and detail["last_sync"]["item_errors"] == 1
        assert "failure: bad rate <limit>" in detail["last_sync"]["summary"]


def test_repair_queues_a_sync_only_for_those_who_may_change_routers(users, nas, router, monkeypatch,
                                                                     django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr(tasks.sync_router, "delay", lambda *args: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = api(users["manager_nas"]).post(f"/api/v1/routers/{nas.pk}/repair/")
    assert response.status_code == 202 and queued == [(nas.pk, "repair")]
    assert AuditEvent.objects.filter(action="mikrotik.sync_queued", object_id=str(nas.pk)).count() == 1
    assert api(users["manager"]).post(f"/api/v1/routers/{nas.pk}/repair/").status_code == 404
    assert api(users["other_admin"]).post(f"/api/v1/routers/{nas.pk}/repair/").status_code == 404
    assert len(queued) == 1


def test_repair_refuses_a_router_without_api_user(users, tenant):
    plain = create_nas(actor=None, tenant=tenant, name="plain", ip_address="192.0.2.77", secret="secret99")
    response = api(users["admin"]).post(f"/api/v1/routers/{plain.pk}/repair/")
    assert response.status_code == 400 and "API user" in str(response.json())


def test_status_drift_and_kick_through_the_api(users, tenant, nas, router):
    router.seed("/ppp/active", {"name": "alice", "address": "100.64.0.10"})
    make_package(tenant, "Basic", ["pppoe"], 1024, 2048)
    client = api(users["admin"])
    status = client.get(f"/api/v1/routers/{nas.pk}/status/").json()
    assert status["version"] == "7.16.2 (stable)" and status["ppp_active"] == 1
    drift = client.get(f"/api/v1/routers/{nas.pk}/drift/").json()
    assert drift["in_sync"] is False and drift["added"] == 1 and router.item(PPP_PROFILE, "default") is not None
    assert RouterSyncRun.objects.get(pk=drift["run"]).trigger == "drift"
    assert client.get(f"/api/v1/routers/{nas.pk}/").json()["last_sync"] is None  # a dry run is not a sync
    runs = client.get(f"/api/v1/routers/{nas.pk}/sync-runs/").json()["results"]
    assert runs[0]["summary"].startswith("dry run, succeeded (would add 1,")
    assert client.post(f"/api/v1/routers/{nas.pk}/kick/", {"username": "alice"}, format="json").json() == {
        "kicked": True}
    assert router.items("/ppp/active") == []
    assert client.post(f"/api/v1/routers/{nas.pk}/kick/", {}, format="json").status_code == 400
    assert api(users["reseller"]).post(f"/api/v1/routers/{nas.pk}/kick/", {"username": "x"},
                                       format="json").status_code == 404


def test_unreachable_router_is_a_502_with_the_reason(users, nas, router):
    update_nas(nas, actor=None, api_password="wrong")
    response = api(users["admin"]).get(f"/api/v1/routers/{nas.pk}/status/")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "RouterAuthError"
    assert "refused the API login" in response.json()["error"]["message"]


def test_router_admin_page_shows_the_last_sync_error_and_repairs(users, nas, failed_sync, monkeypatch,
                                                                   django_capture_on_commit_callbacks):
    client = Client()
    assert client.login(username=users["admin"].username, password=PW)
    page = client.get(f"/admin/subscribers/nas/{nas.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "failed" in html and "failure: bad rate &lt;limit&gt;" in html  # shown, and escaped
    assert "Recent syncs" in html and "Access mode" in html
    listing = client.get("/admin/subscribers/nas/").content.decode()
    assert "failed" in listing

    queued = []
    monkeypatch.setattr(tasks.sync_router, "delay", lambda *args: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/subscribers/nas/", {"action": "repair_drift", "_selected_action": [nas.pk]},
                               follow=True)
    assert response.status_code == 200 and "Queued a sync of 1 router" in response.content.decode()
    assert queued == [(nas.pk, "repair")]


def test_router_admin_page_shows_an_unreachable_router_error(users, nas, router):
    port = router.port
    router.stop()
    with pytest.raises(Exception, match="refused the connection"):
        sync_router(nas, port=port, attempts=1, timeout=1)
    client = Client()
    assert client.login(username=users["admin"].username, password=PW)
    html = client.get(f"/admin/subscribers/nas/{nas.pk}/change/").content.decode()
    assert "RouterUnreachable" in html and "refused the connection" in html


def test_admin_sets_api_only_mode_on_the_routers_page(users, tenant, nas):
    from mikrotik.models import RouterSettings

    client = Client()
    assert client.login(username=users["admin"].username, password=PW)
    form = {"name": nas.name, "ip_address": nas.ip_address, "secret": "", "nas_type": "mikrotik",
            "require_message_authenticator": "on", "coa_port": 3799, "api_username": nas.api_username,
            "api_password": "", "api_port": nas.api_port, "api_verify_tls": "on", "is_active": "on",
            "mikrotik_settings-TOTAL_FORMS": 1, "mikrotik_settings-INITIAL_FORMS": 0,
            "mikrotik_settings-MIN_NUM_FORMS": 0, "mikrotik_settings-MAX_NUM_FORMS": 1,
            "mikrotik_settings-0-access_mode": "api_only", "mikrotik_settings-0-radius_address": "",
            "mikrotik_settings-0-nas": nas.pk}
    response = client.post(f"/admin/subscribers/nas/{nas.pk}/change/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert RouterSettings.objects.get(nas=nas).access_mode == "api_only"
    nas.refresh_from_db()
    assert nas.secret == "s3cret-123"  # an empty secret field keeps the stored one
