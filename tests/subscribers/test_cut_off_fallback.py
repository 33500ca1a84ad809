"""Cutting a customer off: RADIUS Disconnect first, the router API when that did not end the session.

Real peers on both sides: the RFC 5176 NAS simulator answers the Disconnect-Request
and the RouterOS API simulator (same router address) holds the live PPP sessions.
"""
from __future__ import annotations

import pytest
from django.utils import timezone

from ispcore.core.models import AuditEvent
from ispcore.subscribers import access, tasks
from ispcore.subscribers import services as subscribers
from ispcore.subscribers.models import Customer
from mikrotik.models import RouterSettings
from radius.models import AccountingSession, DynamicAuthRequest
from radius.testing import build_world
from tests.peers.nas import NasSimulator
from tests.peers.routeros import RouterOSSimulator

pytestmark = pytest.mark.django_db(transaction=True)

PPP_ACTIVE = "/ppp/active"
API_USER, API_PASSWORD = "billing", "pa55"


@pytest.fixture
def coa():
    with NasSimulator(b"coa-secret") as sim:
        yield sim


@pytest.fixture
def router():
    with RouterOSSimulator(username=API_USER, password=API_PASSWORD) as sim:
        yield sim


@pytest.fixture
def verify_calls(monkeypatch):
    """The ACK path schedules verify_cut_off on Celery; record instead of waiting 30 s."""
    calls = []
    monkeypatch.setattr(tasks.verify_cut_off, "apply_async", lambda args, countdown: calls.append((args, countdown)))
    return calls


@pytest.fixture(autouse=True)
def router_syncs(monkeypatch):
    """Status changes queue a debounced router sync; record them (and start each test undebounced)."""
    from django.core.cache import cache

    from mikrotik import tasks as mikrotik_tasks

    cache.delete_many([f"isp:router-sync-soon:{n}" for n in range(1, 2000)])
    queued = []
    monkeypatch.setattr(mikrotik_tasks.sync_router, "apply_async",
                        lambda args, countdown: queued.append((args, countdown)))
    return queued


@pytest.fixture
def world(coa, router, settings, tmp_path):
    settings.RADIUS_VAR_DIR = tmp_path
    settings.RADIUS_COA_TIMEOUT = 0.2
    settings.RADIUS_COA_RETRIES = 2
    settings.CUT_OFF_VERIFY_SECONDS = 17
    w = build_world()
    subscribers.update_nas(w["nas"], actor=w["super"], secret="coa-secret", coa_port=coa.port,
                           api_username=API_USER, api_password=API_PASSWORD, api_port=router.port)
    return w


def live(world, coa, router, user="alice", sid="81a00001", ip="10.0.0.5"):
    """One session as all three see it: our accounting, the CoA side and /ppp/active."""
    now = timezone.now()
    AccountingSession.objects.create(
        tenant_id=world["tenant"].id, nas_id=world["nas"].id, customer_id=world[user].id, username=user,
        acct_session_id=sid, unique_id=sid.ljust(32, "0"), framed_ip_address=ip, started_at=now, updated_at=now)
    coa.add_session(user, sid, ip)
    router.seed(PPP_ACTIVE, {"name": user, "address": ip, "session-id": sid})


def online(router, user="alice"):
    return [item for item in router.items(PPP_ACTIVE) if item["name"] == user]


def test_nak_falls_back_to_the_router_api(world, coa, router, verify_calls):
    live(world, coa, router)
    live(world, coa, router, user="burst", sid="81a00002", ip="10.0.0.6")
    coa.always_nak = True  # e.g. 501 Administratively-Prohibited: /radius incoming not accepted
    outcome = access.cut_off(world["alice"], "expired")
    assert outcome["radius"] == ["nak"]
    assert outcome["router_api"] == {world["nas"].id: "kicked"}
    assert online(router) == [] and len(online(router, "burst")) == 1  # only alice
    assert AuditEvent.objects.filter(action="mikrotik.kick", data__username="alice").count() == 1
    assert verify_calls == []


def test_timeout_falls_back_to_the_router_api(world, coa, router, verify_calls):
    live(world, coa, router)
    coa.silent = True
    outcome = access.cut_off(world["alice"], "expired")
    assert outcome["radius"] == ["timeout"]
    assert outcome["router_api"] == {world["nas"].id: "kicked"}
    assert online(router) == []


def test_session_not_found_nak_needs_no_kick(world, coa, router, verify_calls):
    live(world, coa, router)
    coa.always_nak = True
    coa.nak_error_cause = 503  # the NAS has no such session: nothing to kick
    outcome = access.cut_off(world["alice"], "expired")
    assert outcome == {"radius": ["nak"]}
    assert router.connections_accepted == 0
    assert len(online(router)) == 1  # the router was not asked (a stale /ppp/active row stays)


def test_ack_schedules_a_check_and_a_survivor_is_kicked(world, coa, router, verify_calls):
    live(world, coa, router)
    Customer.objects.filter(pk=world["alice"].pk).update(status=Customer.Status.EXPIRED)
    outcome = access.cut_off(world["alice"], "expired")
    assert outcome == {"radius": ["ack"], "verify_in": 17}
    assert verify_calls == [((world["alice"].pk,), 17)]
    assert len(online(router)) == 1  # the ACK did not really end it (the simulator's router keeps it)

    # 17 s later: no Stop arrived, the session is still open in accounting -> kicked
    assert tasks.verify_cut_off(world["alice"].pk) == {world["nas"].id: "kicked"}
    assert online(router) == []


def test_check_does_nothing_when_the_session_ended_or_the_customer_paid(world, coa, router, verify_calls):
    live(world, coa, router)
    Customer.objects.filter(pk=world["alice"].pk).update(status=Customer.Status.EXPIRED)
    access.cut_off(world["alice"], "expired")
    AccountingSession.objects.filter(customer_id=world["alice"].pk).update(stopped_at=timezone.now())
    assert tasks.verify_cut_off(world["alice"].pk) == {}

    live(world, coa, router, sid="81a00009", ip="10.0.0.9")
    Customer.objects.filter(pk=world["alice"].pk).update(status=Customer.Status.ACTIVE)  # paid meanwhile
    assert tasks.verify_cut_off(world["alice"].pk) == {}
    assert len(online(router)) == 2


def test_api_only_router_is_kicked_without_radius(world, coa, router, verify_calls):
    RouterSettings.objects.create(nas=world["nas"], access_mode=RouterSettings.AccessMode.API_ONLY)
    router.seed(PPP_ACTIVE, {"name": "alice", "address": "10.0.0.5"})  # no RADIUS session at all
    outcome = access.cut_off(world["alice"], "suspended")
    assert outcome == {"radius": [], "router_api": {world["nas"].id: "kicked"}}
    assert online(router) == []


def test_unreachable_router_is_reported_not_raised(world, coa, router, verify_calls):
    live(world, coa, router)
    coa.always_nak = True
    router.stop()
    outcome = access.cut_off(world["alice"], "expired")
    assert outcome["radius"] == ["nak"]
    assert outcome["router_api"][world["nas"].id].startswith("error: ")
    assert DynamicAuthRequest.objects.filter(customer_id=world["alice"].pk, result="nak").count() == 1


def test_router_without_api_user_is_not_tried(world, coa, router, verify_calls):
    subscribers.update_nas(world["nas"], actor=world["super"], api_username="")
    live(world, coa, router)
    coa.always_nak = True
    outcome = access.cut_off(world["alice"], "expired")
    assert outcome["router_api"] == {world["nas"].id: "unavailable"}
    assert len(online(router)) == 1


def test_cut_off_queues_one_debounced_router_sync(world, coa, router, verify_calls, router_syncs):
    """The expired address list follows within seconds, not at the 15-minute beat."""
    coa.always_nak = True
    access.cut_off(world["alice"], "expired")
    access.cut_off(world["burst"], "expired")  # same router, within the debounce window
    assert router_syncs == [((world["nas"].id, "customer"), access.ROUTER_SYNC_DEBOUNCE)]


def test_reactivation_and_renewal_queue_a_router_sync(world, router_syncs):
    from django.core.cache import cache

    from ispcore.subscribers import lifecycle

    Customer.objects.filter(pk=world["alice"].pk).update(status=Customer.Status.SUSPENDED)
    lifecycle.reactivate(world["alice"], reason="paid")
    assert router_syncs == [((world["nas"].id, "customer"), access.ROUTER_SYNC_DEBOUNCE)]
    lifecycle.reactivate(world["alice"], reason="again")  # already active: nothing changes, nothing queued
    cache.delete(f"isp:router-sync-soon:{world['nas'].id}")
    assert len(router_syncs) == 1


def test_router_without_api_user_is_not_synced(world, router_syncs):
    subscribers.update_nas(world["nas"], actor=world["super"], api_username="")
    assert access.queue_router_syncs(world["tenant"].id) == []
    assert router_syncs == []
