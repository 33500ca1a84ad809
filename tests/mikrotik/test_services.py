"""Reading a router, kicking sessions, and the sync task's lock and retries, against the simulator."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from ispcore.core.models import AuditEvent
from mikrotik import services, tasks
from mikrotik.client import RouterAuthError, RouterConnectionLost, RouterUnreachable
from mikrotik.models import RouterSyncRun
from mikrotik.sync import PPP_PROFILE, desired_state
from tests.peers.routeros import RouterOSSimulator

from .conftest import make_package

PPP_ACTIVE, HOTSPOT_ACTIVE = "/ppp/active", "/ip/hotspot/active"


def seed_sessions(router: RouterOSSimulator) -> None:
    router.seed(PPP_ACTIVE,
                {"name": "alice", "address": "100.64.0.10", "caller-id": "AA:BB:CC:00:00:01", "uptime": "1h2m"},
                {"name": "alice", "address": "100.64.0.11", "caller-id": "AA:BB:CC:00:00:02"},
                {"name": "bob", "address": "100.64.0.12"})
    router.seed(HOTSPOT_ACTIVE, {"user": "alice", "address": "10.5.50.2", "mac-address": "AA:BB:CC:00:00:03"},
                {"user": "carol", "address": "10.5.50.3"})


# -- reading -------------------------------------------------------------------------------


def test_router_status_reads_identity_version_uptime_resource_and_sessions(nas, router):
    seed_sessions(router)
    router.seed("/system/identity", {"name": "core-dhaka"})
    status = services.router_status(nas)
    assert (status.identity, status.version, status.board_name) == ("core-dhaka", "7.16.2 (stable)", "CHR")
    assert status.uptime and status.free_memory == "912261120" and status.cpu_load == "3"
    assert sorted(s.username for s in status.ppp_sessions) == ["alice", "alice", "bob"]
    assert [(s.username, s.address, s.caller_id) for s in status.hotspot_sessions] == [
        ("alice", "10.5.50.2", "AA:BB:CC:00:00:03"), ("carol", "10.5.50.3", "")]
    data = status.as_dict()
    assert (data["ppp_active"], data["hotspot_active"], data["notes"]) == (3, 2, [])
    assert {c.verb for c in router.commands} == {"print"}


def test_router_without_hotspot_reports_a_note_not_an_error(nas, router):
    seed_sessions(router)
    router.inject_trap(HOTSPOT_ACTIVE, verb="print", message="no such command prefix")
    status = services.router_status(nas)
    assert len(status.ppp_sessions) == 3 and status.hotspot_sessions == []
    assert status.notes == [f"{HOTSPOT_ACTIVE}: no such command prefix"]


def test_active_sessions_lists_both_kinds(nas, router):
    seed_sessions(router)
    sessions = services.active_sessions(nas)
    assert sorted((s.kind, s.username) for s in sessions) == [
        ("hotspot", "alice"), ("hotspot", "carol"), ("ppp", "alice"), ("ppp", "alice"), ("ppp", "bob")]


def test_router_status_of_an_unreachable_router_raises(nas, router):
    router.stop()
    with pytest.raises(RouterUnreachable):
        services.router_status(nas, timeout=1, attempts=1)


# -- kicking -------------------------------------------------------------------------------


def test_kick_session_removes_every_session_of_the_user_and_only_those(nas, router):
    seed_sessions(router)
    assert services.kick_session(nas, "alice") is True
    assert [s["name"] for s in router.items(PPP_ACTIVE)] == ["bob"]
    assert [s["user"] for s in router.items(HOTSPOT_ACTIVE)] == ["carol"]
    event = AuditEvent.objects.get(action="mikrotik.kick")
    assert event.object_id == str(nas.pk) and event.data["username"] == "alice" and len(event.data["sessions"]) == 3

    assert services.kick_session(nas, "alice") is False  # nothing left: safe to repeat
    assert services.kick_session(nas, "nobody") is False
    assert AuditEvent.objects.filter(action="mikrotik.kick").count() == 1


def test_kick_session_treats_a_session_that_ended_meanwhile_as_gone(nas, router):
    seed_sessions(router)
    router.inject_trap(PPP_ACTIVE, verb="remove", name="bob", message="no such item")
    assert services.kick_session(nas, "bob") is False
    assert services.kick_session(nas, "carol") is True


def test_kick_session_retries_a_dropped_connection(nas, router):
    seed_sessions(router)
    router.drop_connection_after(1)  # the ppp print is answered, the hotspot print is lost
    assert services.kick_session(nas, "bob") is True
    assert router.connections_accepted == 2 and router.item(PPP_ACTIVE, "bob") is None


def test_kick_session_with_bad_credentials_raises(nas, router):
    nas.api_password = "wrong"
    with pytest.raises(RouterAuthError):
        services.kick_session(nas, "alice")
    with pytest.raises(ValueError):
        services.kick_session(nas, "")


# -- the task: lock and retries --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_lock_prevents_two_concurrent_syncs_of_one_router(tenant, nas, router):
    """Two worker threads run the task for the same router at once: one syncs, the other returns at once."""
    make_package(tenant, "Basic", ["pppoe"], 1024, 2048)
    router.slow_menus[PPP_PROFILE] = 0.5  # the first sync holds the lock for a while
    barrier = threading.Barrier(2)
    results: list[object] = []

    def worker() -> None:
        try:
            barrier.wait()
            results.append(tasks.sync_router(nas.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2 and results.count(None) == 1
    done = [r for r in results if r is not None]
    assert len(done) == 1 and done[0]["added"] == 1
    assert router.logins == 1 and RouterSyncRun.objects.filter(nas=nas).count() == 1
    assert tasks.router_lock(nas.pk).locked() is False


def test_task_records_the_trigger(tenant, nas, router):
    make_package(tenant, "Basic", ["pppoe"], 1024, 2048)
    tasks.sync_router(nas.pk, "repair")
    assert RouterSyncRun.objects.get(nas=nas).trigger == "repair"


def test_connection_lost_is_retried_by_celery_with_a_new_run(tenant, nas, router, monkeypatch):
    make_package(tenant, "Basic", ["pppoe"], 1024, 2048)
    monkeypatch.setattr(tasks, "SYNC_ATTEMPTS", 1)  # no quick in-task retry: Celery's retry must do it
    router.drop_connection_after(len(desired_state(nas)))  # every print answered, the add is lost
    outcome = tasks.sync_router.apply(args=[nas.pk, "beat"])
    assert outcome.successful() and outcome.result["added"] == 1
    runs = list(RouterSyncRun.objects.filter(nas=nas).order_by("id"))
    assert [r.status for r in runs] == ["failed", "succeeded"]
    assert runs[0].error.startswith("RouterConnectionLost: ") and runs[1].trigger == "beat"


def test_celery_gives_up_after_max_retries_on_an_unreachable_router(tenant, nas, router, monkeypatch):
    monkeypatch.setattr(tasks, "SYNC_ATTEMPTS", 1)
    monkeypatch.setattr(tasks.sync_router, "max_retries", 2)
    router.stop()
    outcome = tasks.sync_router.apply(args=[nas.pk])
    assert outcome.failed() and isinstance(outcome.result, RouterUnreachable)
    runs = RouterSyncRun.objects.filter(nas=nas)
    assert runs.count() == 3 and {r.status for r in runs} == {"failed"}
    assert tasks.sync_router.autoretry_for == (RouterUnreachable, RouterConnectionLost)
    assert tasks.sync_router.retry_backoff is True  # exponential: 1 s, 2 s, 4 s... (capped at 600 s)


def test_permanent_errors_are_not_retried(tenant, nas, router, monkeypatch):
    from ispcore.subscribers.services import update_nas

    update_nas(nas, actor=None, api_password="wrong")
    outcome = tasks.sync_router.apply(args=[nas.pk])
    assert outcome.failed() and isinstance(outcome.result, RouterAuthError)
    [run] = RouterSyncRun.objects.filter(nas=nas)
    assert run.status == "failed" and "refused the API login" in run.error
    assert tasks.router_lock(nas.pk).locked() is False


def test_management_command_reports_drift_then_syncs(tenant, nas, router):
    from io import StringIO

    from django.core.management import CommandError, call_command

    package = make_package(tenant, "Basic", ["pppoe"], 1024, 2048)
    out = StringIO()
    call_command("mikrotik_sync", str(nas.pk), "--dry-run", stdout=out)
    assert f"add      {PPP_PROFILE} pkg-{package.pk}" in out.getvalue() and "would change" in out.getvalue()
    assert router.item(PPP_PROFILE, f"pkg-{package.pk}") is None
    out = StringIO()
    call_command("mikrotik_sync", nas.name, stdout=out)
    assert router.item(PPP_PROFILE, f"pkg-{package.pk}")["rate-limit"] == "1M/2M"
    assert RouterSyncRun.objects.filter(nas=nas, dry_run=False, status="succeeded").count() == 1
    with pytest.raises(CommandError, match="No single NAS"):
        call_command("mikrotik_sync", "no-such-router")
    lock = tasks.router_lock(nas.pk)
    assert lock.acquire()
    try:
        with pytest.raises(CommandError, match="Another sync"):
            call_command("mikrotik_sync", str(nas.pk))
        call_command("mikrotik_sync", str(nas.pk), "--dry-run", stdout=StringIO())  # reading needs no lock
    finally:
        lock.release()
    router.stop()
    with pytest.raises(CommandError, match="RouterUnreachable"):
        call_command("mikrotik_sync", str(nas.pk))
    assert tasks.router_lock(nas.pk).locked() is False


def test_old_sync_runs_are_pruned_but_each_routers_latest_is_kept(tenant, nas, router):
    from django.utils import timezone

    from ispcore.subscribers.services import create_nas

    other = create_nas(actor=None, tenant=tenant, name="edge-9", ip_address="127.0.0.19", secret="s3cret-999")
    now = timezone.now()

    def run(n, days_ago):
        created = RouterSyncRun.objects.create(tenant=tenant, nas=n, status="succeeded")
        RouterSyncRun.objects.filter(pk=created.pk).update(started_at=now - timezone.timedelta(days=days_ago))
        return created.pk

    old_a, old_b, recent = run(nas, 40), run(nas, 35), run(nas, 1)
    only_other = run(other, 90)
    assert services.prune_sync_runs(keep_days=30, now=now) == 2
    assert set(RouterSyncRun.objects.values_list("pk", flat=True)) == {recent, only_other}
    assert not RouterSyncRun.objects.filter(pk__in=[old_a, old_b]).exists()
