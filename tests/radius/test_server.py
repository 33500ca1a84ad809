"""The RADIUS server over real UDP: authentication methods, reject reasons,
reply attributes, drops, duplicates, malformed input, Status-Server."""

from __future__ import annotations

import math
import socket
import time

import pytest
from django.utils import timezone
from pyrad.packet import Packet as PyradPacket

from radius import crypto
from radius.packet import decode
from radius.runner import ThreadedServer
from radius.testing import PASSWORD, SECRET, UdpClient, access_request, status_server

pytestmark = pytest.mark.django_db(transaction=True)

PPP = [("Service-Type", 2), ("Framed-Protocol", 1)]
HOTSPOT = [("Service-Type", 1)]


@pytest.fixture
def server(world, tmp_path):
    with ThreadedServer(reject_delay=0.05, state_dir=tmp_path, sync=False) as srv:
        yield srv


@pytest.fixture
def client(server):
    with UdpClient(server.auth_port) as c:
        yield c


def ask(client, username, password=PASSWORD, method="pap", extra=PPP, secret=SECRET, **kw):
    raw, info = access_request(username, secret, password=password, method=method, extra=extra, **kw)
    reply = client.ask(raw)
    assert reply is not None, "no reply"
    assert crypto.verify_response_authenticator(reply, info["authenticator"], SECRET)
    assert crypto.verify_message_authenticator(reply, SECRET, request_authenticator=info["authenticator"]) is True
    assert reply[20] == 80, "Message-Authenticator must be the first attribute"
    return decode(reply), info


def reply_message(packet) -> str:
    return packet.text(18)


# -- methods --------------------------------------------------------------


@pytest.mark.parametrize("method", ["pap", "chap", "chap-challenge", "mschapv2"])
def test_right_password_accepted(client, method):
    packet, _ = ask(client, "alice", method=method)
    assert packet.code == crypto.ACCESS_ACCEPT


@pytest.mark.parametrize("method", ["pap", "chap", "chap-challenge", "mschapv2"])
def test_wrong_password_rejected(client, method):
    packet, _ = ask(client, "alice", password="nope", method=method)
    assert packet.code == crypto.ACCESS_REJECT
    assert reply_message(packet) == "Wrong password"


def test_pap_reply_decodes_with_pyrad(client, world):
    raw, info = access_request("alice", SECRET, password=PASSWORD, extra=PPP)
    reply = client.ask(raw)
    from radius.dictionary import load_dictionary

    pkt = PyradPacket(packet=reply, secret=SECRET, dict=load_dictionary())
    assert pkt.code == crypto.ACCESS_ACCEPT
    assert pkt["Mikrotik-Rate-Limit"] == ["5M/10M"]
    assert pkt["Acct-Interim-Interval"] == [300]
    assert pkt["Mikrotik-Address-List"] == [f"pkg-{world['pkg_ppp'].id}"]


def test_mschapv2_success_and_mppe_keys(client):
    packet, info = ask(client, "alice", method="mschapv2")
    assert packet.code == crypto.ACCESS_ACCEPT
    success = packet.get((311, 26))
    assert crypto.mschapv2_check_success(success, b"alice", PASSWORD, info["challenge"], info["response"])
    nt_response = crypto.parse_ms_chap2_response(info["response"])[3]
    send, recv = crypto.mppe_keys(PASSWORD, nt_response)
    assert crypto.mppe_decrypt_key(packet.get((311, 16)), SECRET, info["authenticator"]) == send
    assert crypto.mppe_decrypt_key(packet.get((311, 17)), SECRET, info["authenticator"]) == recv
    assert packet.integer((311, 7)) == 1


def test_mschapv2_reject_has_ms_chap_error(client):
    packet, _ = ask(client, "alice", password="bad", method="mschapv2")
    assert packet.code == crypto.ACCESS_REJECT
    assert packet.get((311, 2))[1:].startswith(b"E=691 R=0")


# -- reasons ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "extra", "message"),
    [
        ("nobody", PPP, "Unknown user"),
        ("expired1", PPP, "Account expired"),
        ("lapsed", PPP, "Account expired"),
        ("suspended1", PPP, "Account suspended"),
        ("disabled1", PPP, "Account disabled"),
        ("nopkg", PPP, "No active package"),
        ("cable", PPP, "Account not allowed for this service"),
        ("hot1", PPP, "Account not allowed for this service"),
        ("alice", HOTSPOT, "Account not allowed for this service"),
        ("mac1", [*PPP, ("Calling-Station-Id", "AA:BB:CC:DD:EE:02")], "Device (MAC address) not allowed"),
        ("mac1", PPP, "Device (MAC address) not allowed"),
    ],
)
def test_reject_reasons(client, username, extra, message):
    packet, _ = ask(client, username, extra=extra)
    assert packet.code == crypto.ACCESS_REJECT
    assert reply_message(packet) == message


def test_customer_of_another_tenant_is_unknown(server, world):
    """The NAS decides the tenant: the same username and password elsewhere do not log in."""
    from ispcore.accounts import services as accounts
    from ispcore.subscribers import services as subscribers

    other = accounts.create_tenant(actor=world["super"], name="Other ISP", slug="other-isp")
    subscribers.create_nas(actor=world["super"], tenant=other, name="Other NAS", ip_address="127.0.0.6",
                           secret=SECRET.decode())
    server.worker.snapshot.load_all()
    with UdpClient(server.auth_port, source="127.0.0.6") as c:
        packet, _ = ask(c, "alice")
    assert packet.code == crypto.ACCESS_REJECT and reply_message(packet) == "Unknown user"


def test_mac_binding_matches_any_notation(client):
    for mac in ("AA:BB:CC:DD:EE:01", "aa-bb-cc-dd-ee-01", "aabb.ccdd.ee01"):
        packet, _ = ask(client, "mac1", extra=[*PPP, ("Calling-Station-Id", mac)])
        assert packet.code == crypto.ACCESS_ACCEPT, mac


def test_no_credentials_rejected(client):
    raw, info = access_request("alice", SECRET, password=None, extra=PPP)
    reply = decode(client.ask(raw))
    assert reply.code == crypto.ACCESS_REJECT
    assert reply_message(reply) == "No supported authentication method"


def test_decisions_are_logged(client, server):
    from radius.models import AuthLog

    ask(client, "alice")
    ask(client, "suspended1")
    deadline = time.monotonic() + 3
    while AuthLog.objects.count() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = {row.username: row for row in AuthLog.objects.all()}
    assert logs["alice"].accepted and logs["alice"].reason == "ok" and logs["alice"].method == "pap"
    assert not logs["suspended1"].accepted and logs["suspended1"].reason == "suspended"


# -- reply attributes ------------------------------------------------------


def test_accept_attributes_pppoe(client, world):
    before = timezone.now()
    packet, _ = ask(client, "alice")
    expires = world["alice"].expires_at
    timeout = packet.integer(27)
    assert math.floor((expires - before).total_seconds()) - 3 <= timeout <= (expires - before).total_seconds()
    assert packet.integer(85) == 300
    assert packet.get((14988, 8)) == b"5M/10M"
    assert packet.get((14988, 19)) == f"pkg-{world['pkg_ppp'].id}".encode()
    assert packet.get(8) is None
    assert packet.get(28) is None
    # vendor encoding: Vendor-Specific, vendor 14988, sub-type 8, sub-length 8
    assert b"\x1a\x0e\x00\x00\x3a\x8c\x08\x085M/10M" in packet.raw


def test_accept_attributes_static_and_burst(client, world):
    packet, _ = ask(client, "static1")
    assert packet.ipv4(8) == "10.9.8.7"
    packet, _ = ask(client, "burst")
    assert packet.text((14988, 8)) == "2M/5M 4M/8M 1536k/3840k 16/16 8"


def test_accept_attributes_hotspot(client):
    packet, _ = ask(client, "hot1", extra=HOTSPOT)
    assert packet.code == crypto.ACCESS_ACCEPT
    assert packet.integer(28) == 600
    assert 7190 <= packet.integer(27) <= 7200
    assert packet.text((14988, 8)) == "1M/2M"


def test_package_grace_extends_service(world, tmp_path):
    from ispcore.catalog import services as catalog

    catalog.update_package(world["pkg_ppp"], actor=world["super"], grace_minutes=60)
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False) as srv, UdpClient(srv.auth_port) as c:
        packet, _ = ask(c, "lapsed")  # expired 5 minutes ago, 60 minutes of grace
    assert packet.code == crypto.ACCESS_ACCEPT
    assert 55 * 60 - 5 <= packet.integer(27) <= 55 * 60


def test_no_expiry_no_session_timeout(client):
    packet, _ = ask(client, "forever")
    assert packet.code == crypto.ACCESS_ACCEPT
    assert packet.get(27) is None


def test_proxy_state_is_echoed(client):
    packet, _ = ask(client, "alice", extra=[*PPP, (33, b"proxy-1"), (33, b"proxy-2")])
    assert packet.attributes[33] == [b"proxy-1", b"proxy-2"]


def test_ipam_addresses_when_available(monkeypatch, world, tmp_path):
    import radius.snapshot as snapshot_module

    monkeypatch.setattr(
        snapshot_module, "_reply_addresses",
        lambda ids: {world["alice"].id: [("Framed-IPv6-Prefix", "2001:db8:1::/64"),
                                         ("Delegated-IPv6-Prefix", "2001:db8:100::/56")]},
    )
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False) as srv, UdpClient(srv.auth_port) as c:
        packet, _ = ask(c, "alice")
    assert packet.get(97) == bytes((0, 64)) + bytes.fromhex("20010db8000100000000000000000000")
    assert packet.get(123) == bytes((0, 56)) + bytes.fromhex("20010db8010000000000000000000000")


# -- drops -----------------------------------------------------------------


def test_wrong_secret_dropped(client, server):
    raw, _ = access_request("alice", b"wrong-secret", password=PASSWORD, extra=PPP)
    assert client.ask(raw, timeout=0.5) is None
    assert server.worker.metrics.counters["drops{bad_message_authenticator}"] == 1


def test_unknown_nas_dropped(server):
    raw, _ = access_request("alice", SECRET, password=PASSWORD, extra=PPP)
    with UdpClient(server.auth_port, source="127.0.0.2") as other:
        assert other.ask(raw, timeout=0.5) is None
    assert server.worker.metrics.counters["drops{unknown_nas}"] == 1


def test_missing_message_authenticator_dropped_when_required(client, server):
    raw, _ = access_request("alice", SECRET, password=PASSWORD, extra=PPP, message_authenticator=False)
    assert client.ask(raw, timeout=0.5) is None
    assert server.worker.metrics.counters["drops{missing_message_authenticator}"] == 1


def test_missing_message_authenticator_accepted_when_not_required(world, tmp_path):
    from ispcore.subscribers import services

    services.update_nas(world["nas"], actor=world["super"], require_message_authenticator=False)
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False) as srv, UdpClient(srv.auth_port) as c:
        raw, info = access_request("alice", SECRET, password=PASSWORD, extra=PPP, message_authenticator=False)
        reply = c.ask(raw)
        assert decode(reply).code == crypto.ACCESS_ACCEPT
        # the reply still carries one
        assert crypto.verify_message_authenticator(reply, SECRET, request_authenticator=info["authenticator"])


def test_accounting_on_auth_port_dropped(client, server):
    from radius.testing import accounting_request

    assert client.ask(accounting_request(SECRET, "on"), timeout=0.5) is None
    assert server.worker.metrics.counters["drops{unexpected_code}"] == 1


# -- duplicates ------------------------------------------------------------


def test_retransmission_answered_from_cache(client, server):
    raw, _ = access_request("alice", SECRET, password=PASSWORD, extra=PPP)
    first = client.ask(raw)
    second = client.ask(raw)
    assert first == second
    assert server.worker.metrics.counters["accepts"] == 1
    assert server.worker.metrics.counters["duplicates"] == 1


def test_retransmission_of_pending_reject_gets_one_delayed_reply(client, server):
    raw, _ = access_request("alice", SECRET, password="bad", extra=PPP)
    client.send(raw)
    client.send(raw)  # while the reject is delayed
    first = client.recv(1)
    assert decode(first).code == crypto.ACCESS_REJECT
    assert client.recv(0.3) is None
    assert client.ask(raw) == first  # afterwards from the cache
    assert server.worker.metrics.counters["rejects{wrong_password}"] == 1


# -- malformed -------------------------------------------------------------


def test_malformed_packets_dropped_and_server_keeps_answering(client, server):
    good, _ = access_request("alice", SECRET, password=PASSWORD, extra=PPP)
    bad = [
        b"",
        b"\x01",
        good[:19],
        good[:2] + (5).to_bytes(2, "big") + good[4:],  # Length below the header
        good[:2] + (4000).to_bytes(2, "big") + good[4:],  # Length beyond the datagram
        good[:20] + b"\x01\x01abc",  # attribute length 1
        good[:20] + b"\x01\x09abc",  # attribute running past the end
        good[:20] + b"\x01",  # truncated attribute header
        bytes(range(256)) * 4,
        b"\xff" * 20,
    ]
    for i, datagram in enumerate(bad):
        if len(datagram) >= 4:
            # fix up the Length field of the attribute-level cases so only the attributes are wrong
            if datagram[:20] == good[:20] and len(datagram) > 20:
                datagram = datagram[:2] + len(datagram).to_bytes(2, "big") + datagram[4:]
        client.send(datagram)
        assert client.recv(0.05) is None, i
    assert decode(client.ask(good)).code == crypto.ACCESS_ACCEPT
    assert server.worker.metrics.counters.get("drops{malformed}", 0) >= 7


# -- Status-Server and reject delay ---------------------------------------


def test_status_server_on_both_ports(server):
    for port, code in ((server.auth_port, crypto.ACCESS_ACCEPT), (server.acct_port, crypto.ACCOUNTING_RESPONSE)):
        with UdpClient(port) as c:
            request = status_server(SECRET)
            reply = c.ask(request)
            assert reply is not None
            assert reply[0] == code
            assert crypto.verify_response_authenticator(reply, request[4:20], SECRET)
            assert crypto.verify_message_authenticator(reply, SECRET, request_authenticator=request[4:20])


def test_status_server_without_message_authenticator_dropped(client):
    from radius.packet import encode

    assert client.ask(encode(crypto.STATUS_SERVER, 1, bytes(16), b""), timeout=0.5) is None


def test_reject_delay_does_not_block_accepts(world, tmp_path):
    with ThreadedServer(reject_delay=1.0, state_dir=tmp_path, sync=False) as srv:
        with UdpClient(srv.auth_port) as rejected, UdpClient(srv.auth_port) as accepted:
            t0 = time.monotonic()
            rejected.send(access_request("alice", SECRET, password="bad", extra=PPP)[0])
            accepted.send(access_request("alice", SECRET, password=PASSWORD, extra=PPP)[0])
            assert decode(accepted.recv(2)).code == crypto.ACCESS_ACCEPT
            assert time.monotonic() - t0 < 0.5
            assert decode(rejected.recv(2)).code == crypto.ACCESS_REJECT
            assert time.monotonic() - t0 >= 0.95


def test_socket_reuse_port_option():
    from radius.server import RadiusServer

    a = RadiusServer.make_socket("127.0.0.1", 0)
    try:
        port = a.getsockname()[1]
        b = RadiusServer.make_socket("127.0.0.1", port)  # a second worker binds the same port
        assert b.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        b.close()
    finally:
        a.close()


def test_prometheus_text_labels(tmp_path):
    from radius.metrics import Metrics, StatsFileWriter, collect, prometheus_text

    m = Metrics()
    m.inc("requests", 3)
    m.inc("rejects{expired}")
    m.inc("drops{unknown_nas}", 2)
    m.observe("auth_latency_seconds", 0.0007)
    m.observe("auth_latency_seconds", 5)
    StatsFileWriter(m, tmp_path / "worker-0.json").dump()
    StatsFileWriter(m, tmp_path / "worker-1.json").dump()
    text = prometheus_text(collect(tmp_path))
    assert "radius_workers 2" in text
    assert "radius_requests_total 6" in text
    assert 'radius_rejects_total{reason="expired"} 2' in text
    assert 'radius_drops_total{cause="unknown_nas"} 4' in text
    assert 'radius_auth_latency_seconds_bucket{le="0.001"} 2' in text
    assert 'radius_auth_latency_seconds_bucket{le="+Inf"} 4' in text
    assert "radius_auth_latency_seconds_count 4" in text


def test_nul_in_user_name_still_logged(client, server):
    from radius.models import AuthLog

    packet, _ = ask(client, "bad\x00user")
    assert packet.code == crypto.ACCESS_REJECT
    deadline = time.monotonic() + 3
    while not AuthLog.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert AuthLog.objects.get().username == "baduser"
