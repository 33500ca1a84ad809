"""/radius, address lists, simple queues and API-only secrets, synced to the RouterOS simulator."""

from __future__ import annotations

import itertools
import uuid

import pytest
from django.utils import timezone

from ipam import services as ipam_services
from ispcore.catalog.services import update_package
from ispcore.subscribers import lifecycle
from ispcore.subscribers.services import create_customer, create_nas, create_zone, update_customer
from mikrotik.client import connect
from mikrotik.models import RouterSettings, RouterSyncRun
from mikrotik.sync import (
    ADDRESS_LIST,
    HIDDEN,
    HOTSPOT_USER,
    PPP_SECRET,
    RADIUS,
    RADIUS_INCOMING,
    SIMPLE_QUEUE,
    desired_state,
    drift_report,
    rate_bits,
    sync_router,
)
from radius.models import AccountingSession

from .conftest import PASSWORD, USER, make_package, managed

_seq = itertools.count(1)


@pytest.fixture
def make_customer(tenant):
    def make(customer_type="pppoe", **fields):
        n = next(_seq)
        return create_customer(actor=None, tenant=tenant, node=tenant.root_node, customer_type=customer_type,
                               username=fields.pop("username", f"cust{n}"), full_name=f"Customer {n}",
                               mobile="+8801712345678", **fields)
    return make


@pytest.fixture
def static_pool(tenant, nas):
    return ipam_services.create_prefix(actor=None, tenant=tenant, network="100.64.2.0/24", role="customer_static",
                                       nas=nas, name="static")


def settings_for(nas, **fields) -> RouterSettings:
    config, _ = RouterSettings.objects.update_or_create(nas=nas, defaults=fields)
    return config


def open_session(nas, customer, ip: str) -> AccountingSession:
    now = timezone.now()
    return AccountingSession.objects.create(
        tenant_id=nas.tenant_id, nas=nas, customer=customer, unique_id=uuid.uuid4().hex, acct_session_id="81a00001",
        username=customer.username, framed_ip_address=ip, started_at=now, updated_at=now)


def expired_list(router) -> dict[str, dict[str, str]]:
    return {item["address"]: item for item in router.items(ADDRESS_LIST)
            if item["list"] == "expired" and item.get("comment", "").startswith("isp:")}


# -- rates ---------------------------------------------------------------------------


@pytest.mark.parametrize("token,bits", [("2M", "2000000"), ("512k", "512000"), ("0", "0"), ("", "0"),
                                        ("1G", "1000000000")])
def test_rate_bits_reads_k_and_m_as_routeros_does(token, bits):
    assert rate_bits(token) == bits


# -- /radius and /radius incoming ----------------------------------------------------------


def test_radius_entry_and_incoming_are_ensured_then_left_alone(nas, router, settings):
    settings.MIKROTIK_RADIUS_ADDRESS = "192.0.2.10"
    router.seed(RADIUS, {"address": "10.9.9.9", "secret": "theirs", "service": "login"})  # an operator's entry
    result = sync_router(nas)
    assert result.ok
    ours = [item for item in router.items(RADIUS) if item.get("comment") == "isp: radius"]
    assert len(ours) == 1
    entry = ours[0]
    assert (entry["address"], entry["secret"], entry["service"]) == ("192.0.2.10", "s3cret-123", "ppp,hotspot")
    assert (entry["authentication-port"], entry["accounting-port"], entry["disabled"]) == ("1812", "1813", "false")
    assert router.item(RADIUS, "10.9.9.9", key="address")["secret"] == "theirs"  # untouched
    assert router.settings(RADIUS_INCOMING) == {"accept": "true", "port": "3799", "vrf": "main"}
    run = RouterSyncRun.objects.get(pk=result.run_id)
    radius_add = next(c for c in run.changes if c["menu"] == RADIUS)
    assert radius_add["fields"]["secret"] == HIDDEN and "s3cret-123" not in str(run.changes)

    router.reset_counts()
    again = sync_router(nas)
    assert again.in_sync and {c.verb for c in router.commands} == {"print"}


def test_radius_drift_is_repaired_and_router_setting_overrides(nas, router, settings):
    settings.MIKROTIK_RADIUS_ADDRESS = "192.0.2.10"
    settings_for(nas, radius_address="198.51.100.7")
    sync_router(nas)
    with connect("127.0.0.1", router.port, USER, PASSWORD, timeout=2) as conn:
        conn.settings_set(RADIUS_INCOMING, accept="no")
        entry_id = conn.print(RADIUS, comment="isp: radius")[0][".id"]
        conn.set(RADIUS, entry_id, secret="tampered", timeout="3s")
    report = drift_report(nas)
    assert {(c.menu, c.action) for c in report.changes} == {(RADIUS, "set"), (RADIUS_INCOMING, "set")}
    assert router.settings(RADIUS_INCOMING)["accept"] == "false"
    sync_router(nas)
    entry = router.item(RADIUS, "isp: radius", key="comment")
    assert (entry["address"], entry["secret"], entry["timeout"]) == ("198.51.100.7", "s3cret-123", "3s")
    assert router.settings(RADIUS_INCOMING)["accept"] == "true"


def test_api_only_router_loses_our_radius_entry_but_keeps_incoming(nas, router, settings):
    settings.MIKROTIK_RADIUS_ADDRESS = "192.0.2.10"
    sync_router(nas)
    settings_for(nas, access_mode=RouterSettings.AccessMode.API_ONLY)
    result = sync_router(nas)
    assert result.ok and router.item(RADIUS, "isp: radius", key="comment") is None
    assert router.settings(RADIUS_INCOMING)["accept"] == "true"


def test_without_a_radius_address_radius_is_not_touched(nas, router, settings):
    settings.MIKROTIK_RADIUS_ADDRESS = ""
    assert RADIUS not in desired_state(nas) and RADIUS_INCOMING not in desired_state(nas)
    sync_router(nas)
    assert router.items(RADIUS) == [] and router.command_counts[RADIUS] == 0


# -- the expired address list ------------------------------------------------------------


def test_expired_list_follows_expiry_suspension_and_reactivation(tenant, nas, router, make_customer, static_pool):
    package = make_package(tenant, "Static 10M", ["static", "pppoe"], 10240, 10240)
    static = make_customer("static", package=package, static_ip="100.64.2.10")
    dialup = make_customer("pppoe", package=package)
    open_session(nas, dialup, "100.64.0.77")
    router.seed(ADDRESS_LIST, {"list": "expired", "address": "10.1.1.1", "comment": "hand made"},
                {"list": "expired", "address": "10.1.1.2", "dynamic": "true"},
                {"list": "blocked", "address": "100.64.2.10"})
    sync_router(nas)
    assert expired_list(router) == {}

    lifecycle.suspend(static, reason="unpaid")
    update_customer(dialup, actor=None, status="expired")
    result = sync_router(nas)
    assert result.added == 2 and result.ok
    entries = expired_list(router)
    assert set(entries) == {"100.64.2.10", "100.64.0.77"}
    assert entries["100.64.2.10"]["comment"] == f"isp: {static.username}"

    router.reset_counts()
    assert sync_router(nas).in_sync  # nothing changes twice

    lifecycle.reactivate(static, reason="paid")
    result = sync_router(nas)
    assert (result.added, result.removed) == (0, 1)
    assert set(expired_list(router)) == {"100.64.0.77"}
    removes = [c for c in router.commands if c.verb == "remove"]
    assert [c.menu for c in removes] == [ADDRESS_LIST]  # only the difference is sent
    # the operator's entries (same list, other list, dynamic) are untouched
    assert {(i["list"], i["address"]) for i in router.items(ADDRESS_LIST) if not i.get("comment", "").startswith(
        "isp:")} == {("expired", "10.1.1.1"), ("expired", "10.1.1.2"), ("blocked", "100.64.2.10")}


def test_expired_list_uses_only_sessions_on_this_router(tenant, nas, router, make_customer):
    other = create_nas(actor=None, tenant=tenant, name="edge-2", ip_address="127.0.0.9", secret="s3cret-999")
    package = make_package(tenant, "PPPoE 5M", ["pppoe"], 5120, 5120)
    here = make_customer("pppoe", package=package, status="expired")
    there = make_customer("pppoe", package=package, status="expired")
    open_session(nas, here, "100.64.0.5")
    open_session(other, there, "100.64.0.6")
    closed = open_session(nas, there, "100.64.0.7")
    AccountingSession.objects.filter(pk=closed.pk).update(stopped_at=timezone.now())
    sync_router(nas)
    assert set(expired_list(router)) == {"100.64.0.5"}


# -- simple queues --------------------------------------------------------------------------


def test_static_customers_get_a_queue_with_rate_and_burst(tenant, nas, router, make_customer, static_pool):
    plain = make_package(tenant, "Static 4/8", ["static"], 4096, 8192)
    bursty = make_package(tenant, "Static burst", ["static"], 2048, 4096, burst_upload_kbps=4096,
                          burst_download_kbps=8192, burst_threshold_upload_kbps=1536,
                          burst_threshold_download_kbps=3072, burst_time_seconds=16, priority=5)
    a = make_customer("static", package=plain, static_ip="100.64.2.20")
    b = make_customer("static", package=bursty, static_ip="100.64.2.21")
    make_customer("pppoe", package=make_package(tenant, "P", ["pppoe"], 1024, 1024))  # no queue for PPPoE
    result = sync_router(nas)
    assert result.ok
    queues = managed(router, SIMPLE_QUEUE)
    assert set(queues) == {f"cust-{a.pk}", f"cust-{b.pk}"}
    qa, qb = queues[f"cust-{a.pk}"], queues[f"cust-{b.pk}"]
    assert (qa["target"], qa["max-limit"], qa["burst-limit"], qa["priority"]) == (
        "100.64.2.20/32", "4000000/8000000", "0/0", "8/8")
    assert (qb["target"], qb["max-limit"], qb["burst-limit"], qb["burst-threshold"], qb["burst-time"],
            qb["priority"]) == ("100.64.2.21/32", "2000000/4000000", "4000000/8000000", "1536000/3000000",
                                "16s/16s", "5/5")

    update_package(plain, actor=None, download_kbps=20480)
    router.reset_counts()
    again = sync_router(nas)
    assert (again.updated, again.added, again.removed) == (1, 0, 0)
    [set_cmd] = [c for c in router.commands if c.verb == "set"]
    assert set_cmd.menu == SIMPLE_QUEUE and set_cmd.attrs["max-limit"] == "4000000/20000000"


def test_static_customer_on_another_routers_pool_gets_no_queue(tenant, nas, router, make_customer):
    other = create_nas(actor=None, tenant=tenant, name="edge-2", ip_address="127.0.0.9", secret="s3cret-999")
    ipam_services.create_prefix(actor=None, tenant=tenant, network="100.70.0.0/24", role="customer_static",
                                nas=other)
    package = make_package(tenant, "Static", ["static"], 1024, 1024)
    customer = make_customer("static", package=package, static_ip="100.70.0.9")
    assert desired_state(nas)[SIMPLE_QUEUE] == []
    assert [q["name"] for q in desired_state(other)[SIMPLE_QUEUE]] == [f"cust-{customer.pk}"]


# -- API-only mode ----------------------------------------------------------------------------


def test_api_only_pushes_secrets_and_hotspot_users(tenant, nas, router, make_customer, static_pool):
    settings_for(nas, access_mode=RouterSettings.AccessMode.API_ONLY)
    ppp = make_package(tenant, "Home 10M", ["pppoe"], 5120, 10240)
    hot = make_package(tenant, "Hotspot day", ["hotspot"], 1024, 2048)
    alice = make_customer("pppoe", username="alice", password="al1ce-pw", package=ppp)
    bob = make_customer("pppoe", username="bob", password="b0b-pw", package=ppp, status="expired")
    ipam_services.assign_static_ip(bob, static_pool, actor=None, address="100.64.2.30")
    carol = make_customer("hotspot", username="carol", password="c4rol", package=hot)
    result = sync_router(nas)
    assert result.ok, result.errors

    secrets = managed(router, PPP_SECRET)
    assert set(secrets) == {"alice", "bob"}
    assert (secrets["alice"]["password"], secrets["alice"]["profile"], secrets["alice"]["service"],
            secrets["alice"]["disabled"]) == ("al1ce-pw", f"pkg-{ppp.pk}", "pppoe", "false")
    assert secrets["alice"].get("remote-address", "") == ""
    assert (secrets["bob"]["remote-address"], secrets["bob"]["disabled"]) == ("100.64.2.30", "true")
    users = managed(router, HOTSPOT_USER)
    assert (users["carol"]["password"], users["carol"]["profile"]) == ("c4rol", f"pkg-{hot.pk}")
    run = RouterSyncRun.objects.get(pk=result.run_id)
    assert "al1ce-pw" not in str(run.changes) and "c4rol" not in str(run.changes)

    router.reset_counts()
    assert sync_router(nas).in_sync and {c.verb for c in router.commands} == {"print"}

    # reactivation enables, a password change is pushed, a released static IP is unset
    update_customer(bob, actor=None, status="active")
    update_customer(alice, actor=None, password="new-secret")
    ipam_services.release_customer(bob, actor=None)
    result = sync_router(nas)
    assert result.ok and result.updated == 2
    secrets = managed(router, PPP_SECRET)
    assert secrets["alice"]["password"] == "new-secret"
    assert secrets["bob"]["disabled"] == "false" and secrets["bob"].get("remote-address", "") == ""
    assert drift_report(nas).in_sync
    assert carol.pk  # unchanged hotspot user stays


def test_api_only_respects_zones_and_radius_mode_removes_our_secrets(tenant, nas, router, make_customer):
    north = create_zone(actor=None, tenant=tenant, name="North")
    area = create_zone(actor=None, tenant=tenant, name="North-1", parent=north)
    south = create_zone(actor=None, tenant=tenant, name="South")
    config = settings_for(nas, access_mode=RouterSettings.AccessMode.API_ONLY)
    config.zones.set([north])
    package = make_package(tenant, "Home", ["pppoe"], 1024, 1024)
    make_customer("pppoe", username="in-area", package=package, zone=area)
    make_customer("pppoe", username="in-north", package=package, zone=north)
    make_customer("pppoe", username="in-south", package=package, zone=south)
    router.seed(PPP_SECRET, {"name": "operator", "password": "x"})
    sync_router(nas)
    assert set(managed(router, PPP_SECRET)) == {"in-area", "in-north"}

    settings_for(nas, access_mode=RouterSettings.AccessMode.RADIUS)
    result = sync_router(nas)
    assert result.removed == 2 and managed(router, PPP_SECRET) == {}
    assert router.item(PPP_SECRET, "operator") is not None


def test_secret_of_a_customer_without_usable_package_uses_default_profile(tenant, nas, router, make_customer):
    settings_for(nas, access_mode=RouterSettings.AccessMode.API_ONLY)
    package = make_package(tenant, "Old", ["pppoe"], 1024, 1024)
    make_customer("pppoe", username="dan", package=package)
    update_package(package, actor=None, is_active=False)
    sync_router(nas)
    assert router.item(PPP_SECRET, "dan")["profile"] == "default"
