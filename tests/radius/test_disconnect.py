"""Disconnect-Request and CoA-Request against the NAS simulator (tests/peers/nas.py)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from ispcore.catalog import services as catalog
from ispcore.subscribers import services as subscribers
from radius import client, crypto
from radius.models import AccountingSession, DynamicAuthRequest
from radius.services import change_rate, disconnect_customer
from radius.testing import build_world
from tests.peers.nas import NasSimulator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def nas():
    with NasSimulator(b"coa-secret") as sim:
        yield sim


@pytest.fixture
def world(nas, settings, tmp_path):
    settings.RADIUS_VAR_DIR = tmp_path
    settings.RADIUS_COA_TIMEOUT = 0.2
    settings.RADIUS_COA_RETRIES = 3
    w = build_world()
    subscribers.update_nas(w["nas"], actor=w["super"], secret="coa-secret", coa_port=nas.port)
    return w


def open_session(world, sid, user="alice", ip="10.0.0.5", nas_key="nas"):
    now = timezone.now()
    return AccountingSession.objects.create(
        tenant_id=world["tenant"].id, nas_id=world[nas_key].id, customer_id=world[user].id, username=user,
        acct_session_id=sid, unique_id=sid.ljust(32, "0"), framed_ip_address=ip, started_at=now, updated_at=now,
    )


def test_disconnect_ack(nas, world):
    open_session(world, "81a00001")
    nas.add_session("alice", "81a00001", "10.0.0.5")
    [row] = disconnect_customer(world["alice"], "expired")
    assert row.result == "ack" and row.kind == "disconnect" and row.attempts == 1 and row.reason == "expired"
    assert not nas.has_session("81a00001")
    [request] = nas.requests
    assert request.authentic
    assert request.get("User-Name") == "alice"
    assert request.get("Acct-Session-Id") == "81a00001"
    assert request.get("Framed-IP-Address") == "10.0.0.5"
    assert crypto.verify_message_authenticator(request.raw, b"coa-secret") is True
    # the session closes when the NAS sends its Stop, not before
    assert AccountingSession.objects.get(acct_session_id="81a00001").stopped_at is None


def test_disconnect_goes_only_to_the_nas_holding_each_session(nas, world):
    with NasSimulator(b"other-secret", host="127.0.0.5") as other:
        world["nas2"] = subscribers.create_nas(actor=world["super"], tenant=world["tenant"], name="NAS 5",
                                               ip_address="127.0.0.5", secret="other-secret", coa_port=other.port)
        open_session(world, "s-one")
        open_session(world, "s-two", ip="10.0.0.6", nas_key="nas2")
        nas.add_session("alice", "s-one", "10.0.0.5")
        other.add_session("alice", "s-two", "10.0.0.6")
        rows = disconnect_customer(world["alice"], "admin")
        assert [r.result for r in rows] == ["ack", "ack"]
        assert [r.get("Acct-Session-Id") for r in nas.requests] == ["s-one"]
        assert [r.get("Acct-Session-Id") for r in other.requests] == ["s-two"]


def test_disconnect_nak_unknown_session_closes_it(nas, world):
    s = open_session(world, "gone")
    [row] = disconnect_customer(world["alice"], "cleanup")
    assert row.result == "nak" and row.error_cause == 503
    s.refresh_from_db()
    assert s.stopped_at is not None and s.terminate_cause == "Session-Not-Found"


def test_disconnect_nak_other_cause_keeps_session(nas, world):
    s = open_session(world, "kept")
    nas.add_session("alice", "kept", "10.0.0.5")
    nas.always_nak = True
    [row] = disconnect_customer(world["alice"], "x")
    assert row.result == "nak" and row.error_cause == 501
    s.refresh_from_db()
    assert s.stopped_at is None


def test_disconnect_timeout_after_retries(nas, world):
    open_session(world, "silent")
    nas.silent = True
    [row] = disconnect_customer(world["alice"], "x")
    assert row.result == "timeout" and row.attempts == 3
    requests = nas.requests
    assert len(requests) == 3 and requests[2].is_retransmission
    assert len({r.raw for r in requests}) == 1  # the very same datagram


def test_disconnect_answered_after_a_retransmission(nas, world):
    open_session(world, "lossy")
    nas.add_session("alice", "lossy", "10.0.0.5")
    nas.answer_after_retransmissions = 1
    [row] = disconnect_customer(world["alice"], "x")
    assert row.result == "ack" and row.attempts == 2


def test_reply_with_bad_authenticator_ignored(nas, world):
    open_session(world, "forged")
    nas.add_session("alice", "forged", "10.0.0.5")
    nas.bad_authenticator = True
    [row] = disconnect_customer(world["alice"], "x")
    assert row.result == "timeout"


def test_reply_with_message_authenticator_accepted(nas, world):
    open_session(world, "ma")
    nas.add_session("alice", "ma", "10.0.0.5")
    nas.reply_message_authenticator = True
    [row] = disconnect_customer(world["alice"], "x")
    assert row.result == "ack"


def test_no_open_sessions_sends_nothing(nas, world):
    assert disconnect_customer(world["alice"], "x") == []
    assert nas.requests == []


def test_change_rate_coa(nas, world):
    open_session(world, "coa1")
    session = nas.add_session("alice", "coa1", "10.0.0.5")
    catalog.update_package(world["pkg_ppp"], actor=world["super"], upload_kbps=20480, download_kbps=30720)
    [row] = change_rate(world["alice"])
    assert row.result == "ack" and row.kind == "coa"
    assert row.attributes == {"Mikrotik-Rate-Limit": "20M/30M"}
    assert session.attributes["Mikrotik-Rate-Limit"] == ["20M/30M"]
    [request] = nas.requests
    assert request.code == crypto.COA_REQUEST and request.authentic
    assert DynamicAuthRequest.objects.filter(kind="coa", result="ack").count() == 1


def test_change_rate_nak(nas, world):
    open_session(world, "coa2")
    [row] = change_rate(world["alice"])
    assert row.result == "nak" and row.error_cause == 503


def test_client_rejects_wrong_codes():
    with pytest.raises(ValueError):
        client.send_request("127.0.0.1", 9, b"s", crypto.ACCESS_REQUEST, [])


def test_client_unreachable_port_times_out():
    result = client.send_request("127.0.0.1", 9, b"s", crypto.DISCONNECT_REQUEST, [(1, b"x")], timeout=0.1,
                                 retries=2)
    assert result.result == "timeout" and result.attempts == 2


def test_tasks_wrap_services(nas, world):
    from radius import tasks

    open_session(world, "t1")
    nas.add_session("alice", "t1", "10.0.0.5")
    assert tasks.disconnect_customer(world["alice"].id, "task") == 1
    assert tasks.change_rate(999999) == 0
    assert tasks.close_stale_sessions() == 0
