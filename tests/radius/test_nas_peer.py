"""The RFC 5176 NAS simulator, driven by a stock pyrad client."""

from __future__ import annotations

import socket

import pytest
from pyrad.client import Client, Timeout
from pyrad.packet import CoAACK, CoANAK, CoAPacket, CoARequest, DisconnectACK, DisconnectNAK, DisconnectRequest

from radius import crypto
from radius.dictionary import load_dictionary
from tests.peers.nas import NasSimulator

SECRET = b"nas-secret-1"


@pytest.fixture
def nas():
    simulator = NasSimulator(SECRET)
    simulator.add_session("alice", "81a00001", "100.64.0.10")
    simulator.add_session("bob", "81a00002", "100.64.0.11")
    with simulator:
        yield simulator


def make_client(nas: NasSimulator, *, secret: bytes = SECRET, retries: int = 2, timeout: float = 0.5) -> Client:
    return Client(
        server="127.0.0.1",
        coaport=nas.port,
        secret=secret,
        dict=load_dictionary(),
        retries=retries,
        timeout=timeout,
    )


def send(client: Client, code: int, **attributes):
    pkt = client.CreateCoAPacket(code=code, **attributes)
    return client.SendPacket(pkt)


def test_disconnect_ack_removes_the_session(nas):
    reply = send(make_client(nas), DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001")
    assert reply.code == DisconnectACK
    assert not nas.has_session("81a00001")
    assert nas.has_session("81a00002")
    [request] = nas.requests
    assert request.code == DisconnectRequest
    assert request.authentic and not request.is_retransmission
    assert request.get("User-Name") == "alice"
    assert request.get("Acct-Session-Id") == "81a00001"
    assert request.reply_code == DisconnectACK


def test_disconnect_by_framed_ip(nas):
    reply = send(make_client(nas), DisconnectRequest, User_Name="bob", Framed_IP_Address="100.64.0.11")
    assert reply.code == DisconnectACK
    assert [s.user_name for s in nas.sessions] == ["alice"]


def test_unknown_session_gets_nak_with_error_cause(nas):
    reply = send(make_client(nas), DisconnectRequest, User_Name="alice", Acct_Session_Id="ffff0000")
    assert reply.code == DisconnectNAK
    assert reply["Error-Cause"] == ["Session-Context-Not-Found"]
    assert reply[101] == [(503).to_bytes(4, "big")]
    assert len(nas.sessions) == 2


def test_second_disconnect_of_same_session_is_nak(nas):
    client = make_client(nas)
    assert send(client, DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001").code == DisconnectACK
    reply = send(client, DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001")
    assert reply.code == DisconnectNAK
    assert reply["Error-Cause"] == ["Session-Context-Not-Found"]


def test_mismatched_identifiers_are_not_found(nas):
    # right session id, wrong user: every identifying attribute must match
    reply = send(make_client(nas), DisconnectRequest, User_Name="bob", Acct_Session_Id="81a00001")
    assert reply.code == DisconnectNAK
    assert nas.has_session("81a00001")


def test_user_name_alone_is_missing_attribute_like_routeros(nas):
    reply = send(make_client(nas), DisconnectRequest, User_Name="alice")
    assert reply.code == DisconnectNAK
    assert reply["Error-Cause"] == ["Missing-Attribute"]
    assert nas.has_session("81a00001")


def test_user_name_alone_accepted_when_not_strict(nas):
    nas.strict_identification = False
    reply = send(make_client(nas), DisconnectRequest, User_Name="alice")
    assert reply.code == DisconnectACK
    assert not nas.has_session("81a00001")


def test_coa_ack_applies_attributes(nas):
    reply = send(
        make_client(nas),
        CoARequest,
        User_Name="bob",
        Acct_Session_Id="81a00002",
        Mikrotik_Rate_Limit="20M/40M",
        Session_Timeout=3600,
    )
    assert reply.code == CoAACK
    [bob] = [s for s in nas.sessions if s.user_name == "bob"]
    assert bob.attributes == {"Mikrotik-Rate-Limit": ["20M/40M"], "Session-Timeout": [3600]}
    assert nas.requests[0].get("Mikrotik-Rate-Limit") == "20M/40M"
    assert len(nas.sessions) == 2


def test_coa_nak_for_unknown_session(nas):
    reply = send(make_client(nas), CoARequest, User_Name="carol", Acct_Session_Id="1", Mikrotik_Rate_Limit="1M/1M")
    assert reply.code == CoANAK
    assert reply["Error-Cause"] == ["Session-Context-Not-Found"]


def test_always_nak(nas):
    nas.always_nak = True
    reply = send(make_client(nas), DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001")
    assert reply.code == DisconnectNAK
    assert reply["Error-Cause"] == ["Administratively-Prohibited"]
    assert nas.has_session("81a00001")


def test_silent_nas_times_out_after_retries(nas):
    nas.silent = True
    client = make_client(nas, retries=3, timeout=0.2)
    with pytest.raises(Timeout):
        send(client, DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001")
    requests = nas.wait_for_requests(3)
    assert [r.receipt for r in requests] == [1, 2, 3]
    assert all(r.reply_code is None for r in requests)
    assert nas.has_session("81a00001")


def test_answers_only_after_retransmissions(nas):
    nas.answer_after_retransmissions = 2
    client = make_client(nas, retries=3, timeout=0.2)
    reply = send(client, DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001")
    assert reply.code == DisconnectACK
    requests = nas.requests
    assert [r.is_retransmission for r in requests] == [False, True, True]
    assert [r.reply_code for r in requests] == [None, None, DisconnectACK]


def test_too_few_retries_for_a_slow_nas_time_out(nas):
    nas.answer_after_retransmissions = 2
    with pytest.raises(Timeout):
        send(make_client(nas, retries=2, timeout=0.2), DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001")
    assert nas.has_session("81a00001")


def test_wrong_secret_is_silently_ignored(nas):
    client = make_client(nas, secret=b"not-the-secret", retries=1, timeout=0.3)
    with pytest.raises(Timeout):
        send(client, DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001")
    [request] = nas.wait_for_requests(1)
    assert request.authentic is False
    assert request.reply_code is None
    assert nas.has_session("81a00001")


def test_bad_response_authenticator_is_rejected_by_the_client(nas):
    nas.bad_authenticator = True
    client = make_client(nas, retries=2, timeout=0.2)
    with pytest.raises(Timeout):
        send(client, DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001")
    # the NAS did act on the first copy; the retransmission got the cached reply
    assert not nas.has_session("81a00001")
    assert [r.reply_code for r in nas.requests] == [DisconnectACK, DisconnectACK]


def _raw_disconnect(secret: bytes = SECRET, *, message_authenticator: bool = False) -> bytes:
    pkt = CoAPacket(code=DisconnectRequest, id=42, secret=secret, dict=load_dictionary())
    pkt["User-Name"] = "alice"
    pkt["Acct-Session-Id"] = "81a00001"
    raw = pkt.RequestPacket()
    if message_authenticator:
        raw = crypto.sign_request(crypto.add_message_authenticator(raw, secret), secret)
    return raw


def _exchange(nas: NasSimulator, raw: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(raw, nas.address)
        try:
            return sock.recv(4096)
        except TimeoutError:
            return None


def test_retransmission_after_ack_gets_the_same_ack(nas):
    raw = _raw_disconnect()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(raw, nas.address)
        first = sock.recv(4096)
        sock.sendto(raw, nas.address)
        second = sock.recv(4096)
    assert first == second
    assert first[0] == DisconnectACK
    assert crypto.verify_response_authenticator(first, raw[4:20], SECRET)
    assert [r.receipt for r in nas.requests] == [1, 2]


def test_request_with_message_authenticator(nas):
    raw = _raw_disconnect(message_authenticator=True)
    reply = _exchange(nas, raw)
    assert reply is not None and reply[0] == DisconnectACK


def test_request_with_tampered_message_authenticator_is_dropped(nas):
    raw = bytearray(_raw_disconnect(message_authenticator=True))
    raw[22] ^= 0x01  # first octet of the Message-Authenticator value
    raw = crypto.sign_request(bytes(raw), SECRET)  # Request Authenticator still valid
    assert _exchange(nas, raw, timeout=0.3) is None
    assert nas.wait_for_requests(1)[0].authentic is False
    assert nas.has_session("81a00001")


def test_reply_message_authenticator_verifies(nas):
    nas.reply_message_authenticator = True
    raw = _raw_disconnect()
    reply = _exchange(nas, raw)
    assert reply is not None
    assert crypto.verify_message_authenticator(reply, SECRET, request_authenticator=raw[4:20]) is True
    # and a pyrad client, which verifies a Message-Authenticator when present, accepts it
    nas.add_session("alice", "81a00001", "100.64.0.10")
    assert send(make_client(nas), DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001").code == (
        DisconnectACK
    )


def test_garbage_and_other_codes_are_ignored(nas):
    assert _exchange(nas, b"\x28\x01\x00", timeout=0.2) is None
    access_request = b"\x01\x01\x00\x14" + bytes(16)
    assert _exchange(nas, access_request, timeout=0.2) is None
    # still serving
    reply = send(make_client(nas), DisconnectRequest, User_Name="alice", Acct_Session_Id="81a00001")
    assert reply.code == DisconnectACK


def test_lifecycle():
    simulator = NasSimulator()
    assert len(simulator.secret) == 24
    with pytest.raises(RuntimeError):
        _ = simulator.port
    simulator.start()
    try:
        assert simulator.port > 0
        with pytest.raises(RuntimeError):
            simulator.start()
    finally:
        simulator.stop()
    simulator.stop()
    with pytest.raises(TimeoutError):
        simulator.wait_for_requests(1, timeout=0.05)
