"""mikrotik.sync and mikrotik.tasks against the RouterOS simulator (real librouteros, real PostgreSQL and Redis)."""

from __future__ import annotations

import itertools

import pytest

from ipam import services as ipam_services
from ispcore.accounts.services import create_tenant
from ispcore.catalog.services import update_package
from ispcore.subscribers.services import create_nas
from mikrotik import tasks
from mikrotik.client import RouterAuthError, connect
from mikrotik.models import RouterSyncRun
from mikrotik.sync import (
    HOTSPOT_PROFILE,
    IP_POOL,
    IPV6_POOL,
    MENUS,
    PPP_PROFILE,
    RADIUS,
    RADIUS_INCOMING,
    desired_state,
    diff,
    drift_report,
    sync_router,
)

from .conftest import PASSWORD, USER, make_package, managed

_seq = itertools.count(1)


@pytest.fixture
def world(tenant, nas):
    """Two PPPoE packages (one also hotspot), one hotspot-only, one inactive; two IPv4 pools, one IPv6 pool."""
    basic = make_package(tenant, "Basic 5M", ["pppoe"], 2048, 5120)
    both = make_package(tenant, "Family 10M", ["pppoe", "hotspot"], 4096, 10240)
    hot = make_package(tenant, "Hotspot 1M", ["hotspot"], 512, 1024)
    make_package(tenant, "Old plan", ["pppoe"], 1024, 1024, is_active=False)
    named = ipam_services.create_prefix(actor=None, tenant=tenant, network="100.64.0.0/24", role="customer_dynamic",
                                        nas=nas, name="pppoe-pool")
    unnamed = ipam_services.create_prefix(actor=None, tenant=tenant, network="100.64.1.0/25",
                                          role="customer_dynamic", nas=nas)
    ipam_services.create_prefix(actor=None, tenant=tenant, network="100.64.2.0/24", role="customer_static", nas=nas)
    v6 = ipam_services.create_prefix(actor=None, tenant=tenant, network="2001:db8:100::/48", role="ipv6_delegated",
                                     nas=nas, delegated_prefixlen=56, name="pd-pool")
    return {"basic": basic, "both": both, "hot": hot, "named": named, "unnamed": unnamed, "v6": v6}


def test_desired_state_from_database(world, nas):
    state = desired_state(nas)
    basic, both, hot = world["basic"], world["both"], world["hot"]
    assert state[PPP_PROFILE] == [
        {"name": f"pkg-{basic.pk}", "comment": "isp: Basic 5M", "rate-limit": "2M/5M"},
        {"name": f"pkg-{both.pk}", "comment": "isp: Family 10M", "rate-limit": "4M/10M"},
    ]
    assert [p["name"] for p in state[HOTSPOT_PROFILE]] == sorted([f"pkg-{both.pk}", f"pkg-{hot.pk}"])
    assert {p["rate-limit"] for p in state[HOTSPOT_PROFILE]} == {"4M/10M", "512k/1M"}
    assert sorted(state[IP_POOL], key=lambda p: p["name"]) == sorted([
        {"name": "pppoe-pool", "comment": "isp: prefix 100.64.0.0/24", "ranges": "100.64.0.1-100.64.0.254"},
        {"name": f"pool-{world['unnamed'].pk}", "comment": "isp: prefix 100.64.1.0/25",
         "ranges": "100.64.1.1-100.64.1.126"},
    ], key=lambda p: p["name"])
    assert state[IPV6_POOL] == [
        {"name": "pd-pool", "comment": "isp: prefix 2001:db8:100::/48", "prefix": "2001:db8:100::/48",
         "prefix-length": "56"},
    ]


def test_desired_state_pool_names_are_unique(world, nas, tenant):
    again = ipam_services.create_prefix(actor=None, tenant=tenant, network="100.64.3.0/24", role="customer_dynamic",
                                        nas=nas, name="pppoe-pool")
    names = [p["name"] for p in desired_state(nas)[IP_POOL]]
    assert sorted(names) == sorted(["pppoe-pool", f"pool-{world['unnamed'].pk}", f"pool-{again.pk}"])


def test_desired_state_ignores_other_tenants_and_nases(world, nas):
    other = create_tenant(actor=None, name="Other", slug=f"other-{next(_seq)}")
    make_package(other, "Foreign", ["pppoe"], 1024, 1024)
    other_nas = create_nas(actor=None, tenant=nas.tenant, name="edge-2", ip_address="127.0.0.2", secret="s3cret-123")
    ipam_services.create_prefix(actor=None, tenant=nas.tenant, network="100.65.0.0/24", role="customer_dynamic",
                                nas=other_nas, name="edge-pool")
    state = desired_state(nas)
    assert all(p["comment"] != "isp: Foreign" for p in state[PPP_PROFILE])
    assert "edge-pool" not in {p["name"] for p in state[IP_POOL]}


def test_diff_is_keyed_by_name_and_touches_only_managed_items():
    desired = {PPP_PROFILE: [
        {"name": "a", "comment": "isp: A", "rate-limit": "1M/1M"},
        {"name": "b", "comment": "isp: B", "rate-limit": "2M/2M"},
        {"name": "c", "comment": "isp: C", "rate-limit": "3M/3M"},
        {"name": "default", "comment": "isp: clash", "rate-limit": ""},
    ]}
    actual = {PPP_PROFILE: [
        {".id": "*0", "name": "default", "default": "true"},
        {".id": "*1", "name": "a", "comment": "isp: A", "rate-limit": "1M/1M", "only-one": "yes"},
        {".id": "*2", "name": "b", "comment": "isp: B", "rate-limit": "9M/9M"},
        {".id": "*3", "name": "gone", "comment": "isp: Gone"},
        {".id": "*4", "name": "manual", "comment": "made by hand"},
        {".id": "*5", "name": "bare"},
    ]}
    changes, unchanged = diff(desired, actual)
    assert unchanged == 1
    assert [(c.action, c.name) for c in changes] == [("add", "c"), ("set", "b"), ("conflict", "default"),
                                                     ("remove", "gone")]
    set_b = changes[1]
    assert (set_b.item_id, set_b.fields, set_b.old) == ("*2", {"rate-limit": "2M/2M"}, {"rate-limit": "9M/9M"})
    assert changes[0].fields == {"name": "c", "comment": "isp: C", "rate-limit": "3M/3M"}
    assert changes[3].item_id == "*3"


def test_first_sync_creates_everything_then_second_sync_only_prints(world, nas, router):
    result = sync_router(nas)
    assert result.counts() == {"added": 7, "updated": 0, "removed": 0, "unchanged": 0, "errors": 0}
    assert result.attempts == 1
    basic = world["basic"]
    profile = router.item(PPP_PROFILE, f"pkg-{basic.pk}")
    assert profile["rate-limit"] == "2M/5M" and profile["comment"] == "isp: Basic 5M"
    assert set(managed(router, HOTSPOT_PROFILE)) == {f"pkg-{world['both'].pk}", f"pkg-{world['hot'].pk}"}
    assert router.item(IP_POOL, "pppoe-pool")["ranges"] == "100.64.0.1-100.64.0.254"
    pd = router.item(IPV6_POOL, "pd-pool")
    assert (pd["prefix"], pd["prefix-length"]) == ("2001:db8:100::/48", "56")
    assert router.item(PPP_PROFILE, "default") is not None  # built-ins untouched
    run = RouterSyncRun.objects.get(pk=result.run_id)
    assert (run.nas_id, run.trigger, run.status, run.errors, run.error) == (nas.pk, "manual", "succeeded", [], "")
    assert run.added == 7 and run.finished_at is not None and len(run.changes) == 7

    router.reset_counts()
    again = sync_router(nas)
    assert again.counts() == {"added": 0, "updated": 0, "removed": 0, "unchanged": 7, "errors": 0}
    assert again.in_sync
    assert dict(router.command_counts) == {menu: 1 for menu in MENUS if menu not in (RADIUS, RADIUS_INCOMING)}
    assert {command.verb for command in router.commands} == {"print"}


def test_given_connection_is_used_and_left_open(world, nas, router):
    with connect("127.0.0.1", router.port, USER, PASSWORD, timeout=2) as conn:
        result = sync_router(nas, connection=conn)
        assert not conn.closed
    assert result.added == 7 and router.connections_accepted == 1


def test_manual_change_is_detected_by_drift_report_and_repaired(world, nas, router):
    basic = world["basic"]
    name = f"pkg-{basic.pk}"
    sync_router(nas)
    with connect("127.0.0.1", router.port, USER, PASSWORD, timeout=2) as conn:
        item_id = conn.print(PPP_PROFILE, name=name)[0][".id"]
        conn.set(PPP_PROFILE, item_id, **{"rate-limit": "50M/50M", "only-one": "yes"})

    router.reset_counts()
    report = drift_report(nas)
    assert report.dry_run and report.updated == 1 and report.unchanged == 6
    [change] = report.changes
    assert (change.menu, change.action, change.name) == (PPP_PROFILE, "set", name)
    assert change.fields == {"rate-limit": "2M/5M"} and change.old == {"rate-limit": "50M/50M"}
    assert {command.verb for command in router.commands} == {"print"}
    assert router.item(PPP_PROFILE, name)["rate-limit"] == "50M/50M"  # a dry run changes nothing

    router.reset_counts()
    repaired = sync_router(nas)
    assert repaired.updated == 1
    [set_command] = [c for c in router.commands if c.verb == "set"]
    assert set_command.attrs == {".id": item_id, "rate-limit": "2M/5M"}  # only the differing field
    item = router.item(PPP_PROFILE, name)
    assert item["rate-limit"] == "2M/5M" and item["only-one"] == "yes"  # unmanaged field kept
    assert drift_report(nas).in_sync


def test_database_changes_update_and_remove_managed_items(world, nas, router):
    sync_router(nas)
    update_package(world["basic"], actor=None, download_kbps=20480)
    update_package(world["hot"], actor=None, is_active=False)
    result = sync_router(nas)
    assert (result.updated, result.removed, result.added) == (1, 1, 0)
    assert router.item(PPP_PROFILE, f"pkg-{world['basic'].pk}")["rate-limit"] == "2M/20M"
    assert router.item(HOTSPOT_PROFILE, f"pkg-{world['hot'].pk}") is None


def test_seeded_router_drift_and_unmanaged_items(world, nas, router):
    basic = world["basic"]
    router.seed(
        PPP_PROFILE,
        {"name": f"pkg-{basic.pk}", "comment": "isp: Basic 5M", "rate-limit": "1M/1M"},  # drifted
        {"name": "stale", "comment": "isp: retired plan", "rate-limit": "1M/1M"},  # ours, no longer wanted
        {"name": "vip", "rate-limit": "100M/100M"},  # an operator's, no comment
        {"name": "guest", "comment": "guests", "rate-limit": "1M/1M"},  # an operator's, other comment
        {"name": f"pkg-{world['both'].pk}", "comment": "hand made", "rate-limit": "7M/7M"},  # name clash
    )
    router.seed(IP_POOL, {"name": "mgmt", "ranges": "10.0.0.2-10.0.0.9"})
    before = {name: router.item(PPP_PROFILE, name) for name in ("vip", "guest", "default", "default-encryption")}

    result = sync_router(nas)
    assert router.item(PPP_PROFILE, f"pkg-{basic.pk}")["rate-limit"] == "2M/5M"
    assert router.item(PPP_PROFILE, "stale") is None
    for name, item in before.items():
        assert router.item(PPP_PROFILE, name) == item
    assert router.item(IP_POOL, "mgmt")["ranges"] == "10.0.0.2-10.0.0.9"
    clash = router.item(PPP_PROFILE, f"pkg-{world['both'].pk}")
    assert (clash["comment"], clash["rate-limit"]) == ("hand made", "7M/7M")
    assert [(e["menu"], e["name"], e["action"]) for e in result.errors] == [
        (PPP_PROFILE, f"pkg-{world['both'].pk}", "conflict")
    ]
    assert (result.updated, result.removed) == (1, 1)
    assert RouterSyncRun.objects.get(pk=result.run_id).status == "failed"


def test_trap_on_one_profile_does_not_stop_the_others(world, nas, router):
    basic, both = world["basic"], world["both"]
    router.inject_trap(PPP_PROFILE, name=f"pkg-{basic.pk}", message="failure: rate-limit rejected")
    result = sync_router(nas)
    assert result.added == 6 and len(result.errors) == 1
    assert result.errors[0] == {"menu": PPP_PROFILE, "name": f"pkg-{basic.pk}", "action": "add",
                                "message": "failure: rate-limit rejected"}
    assert router.item(PPP_PROFILE, f"pkg-{basic.pk}") is None
    assert router.item(PPP_PROFILE, f"pkg-{both.pk}") is not None
    assert router.item(IPV6_POOL, "pd-pool") is not None
    run = RouterSyncRun.objects.get(pk=result.run_id)
    assert run.status == "failed" and run.errors == result.errors and run.error == ""
    assert "failure: rate-limit rejected" in run.summary

    healed = sync_router(nas)  # the trap fired once; the next sync fills the gap
    assert healed.ok and healed.added == 1 and healed.unchanged == 6


def test_trap_on_a_menu_print_skips_that_menu(world, nas, router):
    router.inject_trap(HOTSPOT_PROFILE, verb="print", message="no such command prefix")
    result = sync_router(nas)
    assert [(e["menu"], e["action"]) for e in result.errors] == [(HOTSPOT_PROFILE, "print")]
    assert result.added == 5 and managed(router, HOTSPOT_PROFILE) == {}


def test_a_menu_the_router_lacks_is_skipped_quietly_when_we_want_nothing_there(world, nas, router):
    from mikrotik.sync import HOTSPOT_USER

    router.inject_trap(HOTSPOT_USER, verb="print", message="no such command prefix")
    result = sync_router(nas)
    assert result.ok and result.added == 7
    run = RouterSyncRun.objects.get(pk=result.run_id)
    assert run.status == "succeeded" and run.notes == [
        f"{HOTSPOT_USER} skipped: the router has no such menu (no such command prefix)"]
    assert "skipped: /ip/hotspot/user" in run.summary


@pytest.mark.parametrize("apply", [False, True])
def test_dropped_connection_is_retried_and_ends_right(world, nas, router, apply):
    prints = len(desired_state(nas))
    router.drop_connection_after(prints + 1, apply=apply)  # every print + 1 add answered, the 2nd add is lost
    result = sync_router(nas, backoff=0)
    assert result.attempts == 2 and result.ok
    assert router.connections_accepted == 2
    # the retry re-read the router: what the first attempt applied is not sent again
    assert (result.unchanged, result.added) == ((2, 5) if apply else (1, 6))
    assert drift_report(nas).in_sync
    for menu, items in desired_state(nas).items():
        assert len(managed(router, menu)) == len(items)
    run = RouterSyncRun.objects.get(pk=result.run_id)
    assert run.status == "succeeded" and run.attempts == 2


def test_given_connection_lost_mid_sync_retries_on_a_new_one(world, nas, router):
    router.drop_connection_after(len(desired_state(nas)) + 2)  # lost in the middle of the adds
    with connect("127.0.0.1", router.port, USER, PASSWORD, timeout=2) as conn:
        result = sync_router(nas, connection=conn, backoff=0)
    assert result.attempts == 2 and drift_report(nas).in_sync


def test_permanent_error_is_recorded_and_raised(world, nas, router):
    nas.api_password = "wrong"
    with pytest.raises(RouterAuthError):
        sync_router(nas, backoff=0)
    run = RouterSyncRun.objects.filter(nas=nas).latest("id")
    assert run.status == "failed" and run.error.startswith("RouterAuthError: ")
    assert "refused the API login" in run.error and run.summary.startswith("failed: RouterAuthError")
    assert router.logins == 0


def test_transient_errors_exhaust_retries_then_raise(world, nas, router):
    from mikrotik.client import RouterUnreachable

    port = router.port
    router.stop()
    with pytest.raises(RouterUnreachable):
        sync_router(nas, port=port, attempts=2, backoff=0, timeout=1)
    run = RouterSyncRun.objects.filter(nas=nas).latest("id")
    assert run.status == "failed" and run.attempts == 2 and run.error.startswith("RouterUnreachable: ")


def test_task_lock_prevents_concurrent_sync(world, nas, router):
    lock = tasks.router_lock(nas.pk)
    assert lock.acquire()
    try:
        assert tasks.sync_router(nas.pk) is None
        assert tasks.sync_router(nas.pk) is None
        assert sum(router.command_counts.values()) == 0 and router.logins == 0
    finally:
        lock.release()
    result = tasks.sync_router(nas.pk)
    assert result["added"] == 7 and result["errors"] == 0
    assert tasks.router_lock(nas.pk).locked() is False  # released after the run


def test_task_skips_missing_or_inactive_nas(world, nas, router):
    assert tasks.sync_router(10**9) is None
    from ispcore.subscribers.services import update_nas

    update_nas(nas, actor=None, is_active=False)
    assert tasks.sync_router(nas.pk) is None
    assert router.logins == 0


@pytest.mark.django_db
def test_sync_all_routers_queues_every_mikrotik_with_credentials(monkeypatch):
    from ispcore.accounts import services as accounts
    from ispcore.accounts.models import User
    from ispcore.subscribers import services as subscribers
    from mikrotik import tasks

    su = User.objects.create(username="su-all", role="super_admin")
    tenant = accounts.create_tenant(actor=su, name="All ISP", slug="all-isp")
    with_api = subscribers.create_nas(actor=su, tenant=tenant, name="a", ip_address="192.0.2.50", secret="secret99",
                                      api_username="api", api_password="pw")
    subscribers.create_nas(actor=su, tenant=tenant, name="b", ip_address="192.0.2.51", secret="secret99")
    subscribers.create_nas(actor=su, tenant=tenant, name="c", ip_address="192.0.2.52", secret="secret99",
                           api_username="api", api_password="pw", nas_type="other")
    queued = []
    monkeypatch.setattr(tasks.sync_router, "delay", lambda *args: queued.append(args))
    assert tasks.sync_all_routers() == 1 and queued == [(with_api.pk, "beat")]
