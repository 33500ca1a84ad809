"""Tests of the SMSC simulator itself, driven by raw sockets and by smpplib.

A raw ESME written out here (a third, minimal codec) and the third-party
smpplib check the simulator's wire format, so the client tests in
test_smpp.py are not the simulator's only check.
"""

from __future__ import annotations

import socket
import struct

import pytest
import smpplib.client

from tests.peers.smsc import ID_STYLES, SMSCSimulator, format_message_id

SYSTEM_ID = "ispsms"
PASSWORD = "secret"


class RawEsme:
    """Blocking SMPP over a plain socket, bytes in and out."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.seq = 0

    def send(self, command_id: int, body: bytes = b"", *, status: int = 0, seq: int | None = None) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.sock.sendall(struct.pack(">IIII", 16 + len(body), command_id, status, seq) + body)
        return seq

    def recv_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def read(self) -> tuple[int, int, int, bytes]:
        length, command_id, status, seq = struct.unpack(">IIII", self.recv_exact(16))
        return command_id, status, seq, self.recv_exact(length - 16)

    def bind(self, command_id: int = 0x09, system_id: str = SYSTEM_ID, password: str = PASSWORD):
        body = system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0" + bytes((0x34, 0, 0)) + b"\0"
        self.send(command_id, body)
        return self.read()

    def close(self) -> None:
        self.sock.close()


def submit_body(dest: str, short_message: bytes, *, esm_class: int = 0, coding: int = 0,
                registered: int = 1, tlvs: bytes = b"") -> bytes:
    return (
        b"\0" + bytes((5, 0)) + b"ISP\0" + bytes((1, 1)) + dest.encode() + b"\0"
        + bytes((esm_class, 0, 0)) + b"\0\0" + bytes((registered, 0, coding, 0, len(short_message)))
        + short_message + tlvs
    )


def cstring(body: bytes, offset: int) -> tuple[str, int]:
    end = body.index(b"\0", offset)
    return body[offset:end].decode(), end + 1


def deliver_fields(body: bytes) -> dict:
    """Minimal deliver_sm body parser for assertions."""
    o = 0
    _, o = cstring(body, o)
    o += 2
    source, o = cstring(body, o)
    o += 2
    dest, o = cstring(body, o)
    esm_class = body[o]
    o += 3
    _, o = cstring(body, o)
    _, o = cstring(body, o)
    coding = body[o + 2]
    sm_len = body[o + 4]
    o += 5
    short_message = body[o : o + sm_len]
    o += sm_len
    tlvs = {}
    while o < len(body):
        tag, length = struct.unpack_from(">HH", body, o)
        tlvs[tag] = body[o + 4 : o + 4 + length]
        o += 4 + length
    return {"source": source, "dest": dest, "esm_class": esm_class, "coding": coding,
            "short_message": short_message, "tlvs": tlvs}


@pytest.fixture
def sim():
    with SMSCSimulator(SYSTEM_ID, PASSWORD) as simulator:
        yield simulator


@pytest.fixture
def esme(sim):
    clients: list[RawEsme] = []

    def connect() -> RawEsme:
        client = RawEsme(sim.port)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


def test_bind_transceiver_ok_and_failures(sim, esme):
    ok = esme()
    command_id, status, _, body = ok.bind()
    assert (command_id, status, body) == (0x80000009, 0, b"SMSCSIM\0")

    command_id, status, _, body = esme().bind(password="wrong")
    assert (command_id, status, body) == (0x80000009, 0x0E, b"")  # ESME_RINVPASWD, no body on error
    command_id, status, _, body = esme().bind(system_id="nobody")
    assert (command_id, status, body) == (0x80000009, 0x0D, b"")  # ESME_RBINDFAIL
    # Binding twice on one connection: ESME_RALYBND.
    assert ok.bind()[1] == 0x05
    assert [a[2] for a in sim.bind_attempts] == [0, 0x0E, 0x0D, 0x05]


def test_transmitter_and_receiver_binds(sim, esme):
    tx = esme()
    assert tx.bind(0x02)[:2] == (0x80000002, 0)
    rx = esme()
    assert rx.bind(0x01)[:2] == (0x80000001, 0)
    # A receiver may not submit.
    rx.send(0x04, submit_body("8801711000000", b"hi"))
    assert rx.read()[:2] == (0x80000004, 0x04)
    # The transmitter's receipt goes to the receiver session.
    sim.configure(dlr="late", dlr_delay=0.01)
    tx.send(0x04, submit_body("8801711000000", b"hi"))
    command_id, status, _, body = tx.read()
    assert (command_id, status) == (0x80000004, 0)
    message_id = body.rstrip(b"\0").decode()
    command_id, _, _, body = rx.read()
    assert command_id == 0x00000005
    fields = deliver_fields(body)
    assert fields["esm_class"] == 0x04
    assert fields["tlvs"][0x001E] == message_id.encode() + b"\0"


def test_submit_is_recorded_with_udh_and_message_payload(sim, esme):
    client = esme()
    client.bind()
    udh = bytes.fromhex("0500030a0201")
    client.send(0x04, submit_body("8801711000000", udh + b"Hello", esm_class=0x40))
    seq = client.send(0x04, submit_body("8801711000000", b"", tlvs=struct.pack(">HH", 0x0424, 5) + b"World"))
    for _ in range(2):
        command_id, status, got_seq, body = client.read()
        assert (command_id, status) == (0x80000004, 0)
        assert body.endswith(b"\0") and body[:-1].isdigit()
    assert got_seq == seq
    first, second = sim.submits
    assert first.udh == udh and first.payload == b"Hello" and first.concat == (0x0A, 2, 1)
    assert first.esm_class == 0x40 and first.registered_delivery == 1
    assert second.via_message_payload and second.payload == b"World" and second.concat is None
    assert int(second.message_id) == int(first.message_id) + 1
    assert first.raw[16:] == submit_body("8801711000000", udh + b"Hello", esm_class=0x40)


def test_enquire_link_unknown_command_and_unbind(sim, esme):
    client = esme()
    client.bind()
    seq = client.send(0x15)
    assert client.read()[:3] == (0x80000015, 0, seq)
    seq = client.send(0x00000222)
    assert client.read()[:3] == (0x80000000, 0x03, seq)  # generic_nack ESME_RINVCMDID
    seq = client.send(0x06)
    assert client.read()[:3] == (0x80000006, 0, seq)
    with pytest.raises(ConnectionError):
        client.read()
    assert sim.wait_for(lambda: not sim.bound_sessions())


def test_impossible_command_length_closes_connection(sim, esme):
    client = esme()
    client.bind()
    client.sock.sendall(struct.pack(">IIII", 8, 0x15, 0, 1))
    with pytest.raises(ConnectionError):
        client.read()


@pytest.mark.parametrize("style", ID_STYLES)
def test_id_styles(style):
    expected = {"decimal": "10597059", "decimal_zeros": "00000000000010597059", "hex_lower": "a1b2c3",
                "hex_upper": "A1B2C3", "hex_upper_zeros": "0000000000A1B2C3"}[style]
    assert format_message_id(0xA1B2C3, style) == expected
    with SMSCSimulator(SYSTEM_ID, PASSWORD, id_style=style) as simulator:
        client = RawEsme(simulator.port)
        client.bind()
        client.send(0x04, submit_body("8801711000000", b"x"))
        assert client.read()[3] == expected.encode() + b"\0"
        client.close()


def test_throttle_reject_and_hold(sim, esme):
    client = esme()
    client.bind()
    sim.throttle_next(2)
    sim.configure("8801700000009", action="reject", status=0x0B)
    statuses = []
    for dest in ("8801711000000", "8801711000000", "8801711000000", "8801700000009"):
        client.send(0x04, submit_body(dest, b"x"))
        command_id, status, _, body = client.read()
        statuses.append((status, body))
    assert statuses[:2] == [(0x58, b""), (0x58, b"")]
    assert statuses[2][0] == 0 and statuses[3] == (0x0B, b"")
    assert sim.counters["submit_throttled"] == 2 and sim.counters["submit_rejected"] == 1

    sim.hold_responses()
    for _ in range(3):
        client.send(0x04, submit_body("8801711000000", b"x"))
    assert sim.wait_for(lambda: sim.outstanding == 3)
    sim.release_responses()
    assert [client.read()[1] for _ in range(3)] == [0, 0, 0]
    assert sim.outstanding == 0 and sim.max_outstanding == 3


def test_early_receipt_is_written_before_the_response(sim, esme):
    client = esme()
    client.bind()
    sim.configure(dlr="early", dlr_date_digits=12, dlr_tlvs=False, dlr_id_style="hex_lower")
    client.send(0x04, submit_body("8801711000000", b"Hello"))
    first = client.read()
    second = client.read()
    assert first[0] == 0x00000005 and second[0] == 0x80000004
    resp_id = second[3].rstrip(b"\0").decode()
    fields = deliver_fields(first[3])
    assert fields["tlvs"] == {}
    text = fields["short_message"].decode()
    assert text.startswith(f"id:{int(resp_id):x} sub:001 dlvrd:001 submit date:")
    assert text.endswith("stat:DELIVRD err:000 text:Hello")
    dates = [part.split(":")[1] for part in text.split(" date")[1:]]
    assert [len(d.split()[0]) for d in dates] == [12, 12]
    client.send(0x80000005, b"\0", seq=first[2])
    assert sim.wait_for(lambda: sim.deliver_resps == [(first[2], 0)])


def test_receipt_twice_and_queued_until_a_receiver_binds(sim, esme):
    tx = esme()
    tx.bind(0x02)
    sim.configure(dlr="late", dlr_delay=0.01, dlr_twice=True, dlr_stat="UNDELIV", dlr_err="00B")
    tx.send(0x04, submit_body("8801711000000", b"x"))
    message_id = tx.read()[3].rstrip(b"\0")
    assert sim.wait_for(lambda: sim.counters["dlr_sent"] == 2)
    rx = esme()
    rx.bind(0x01)
    receipts = [deliver_fields(rx.read()[3]) for _ in range(2)]
    for fields in receipts:
        assert fields["tlvs"][0x001E] == message_id + b"\0"
        assert fields["tlvs"][0x0427] == b"\x05"  # UNDELIVERABLE
        assert b"dlvrd:000" in fields["short_message"] and b"stat:UNDELIV err:00B" in fields["short_message"]


def test_push_mo_multipart_ref16_out_of_order(sim, esme):
    client = esme()
    client.bind()
    assert sim.push_mo("8801711000000", "16216", parts=["আমার ", "বিল"], ref=0x1234, ref16=True, order=[1, 0]) == 2
    first = deliver_fields(client.read()[3])
    second = deliver_fields(client.read()[3])
    assert first["esm_class"] == 0x40 and first["coding"] == 0x08
    assert first["short_message"] == bytes.fromhex("06080412340202") + "বিল".encode("utf-16-be")
    assert second["short_message"][:7] == bytes.fromhex("06080412340201")
    sim.push_mo("8801711000000", "16216", "BAL", use_payload=True)
    fields = deliver_fields(client.read()[3])
    assert fields["short_message"] == b"" and fields["tlvs"][0x0424] == b"BAL" and fields["coding"] == 0


def test_listener_close_reopen_and_drop(sim, esme):
    client = esme()
    client.bind()
    port = sim.port
    sim.close_listener()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    assert sim.drop_connections() == 1
    with pytest.raises((ConnectionError, OSError)):
        client.read()
    sim.reopen_listener()
    assert sim.port == port
    assert esme().bind()[1] == 0


def test_texts_reassembles_accepted_parts(sim, esme):
    client = esme()
    client.bind()
    for seq, chunk in ((2, b"World"), (1, b"Hello ")):
        client.send(0x04, submit_body("8801711000000", bytes((5, 0, 3, 9, 2, seq)) + chunk, esm_class=0x40))
        client.read()
    client.send(0x04, submit_body("8801711000000", "স্বাগতম".encode("utf-16-be"), coding=8))
    client.read()
    assert sim.texts("8801711000000") == ["Hello World", "স্বাগতম"]


def test_smpplib_against_the_simulator(sim):
    """A third-party client sees a well-formed SMSC (bind, submit, early receipt)."""
    sim.configure(dlr="early")
    client = smpplib.client.Client("127.0.0.1", sim.port, allow_unknown_opt_params=True)
    try:
        client.connect()
        resp = client.bind_transceiver(system_id=SYSTEM_ID, password=PASSWORD)
        assert resp.status == 0 and resp.system_id == b"SMSCSIM"
        client.send_message(source_addr_ton=5, source_addr="ISP", dest_addr_ton=1, dest_addr_npi=1,
                            destination_addr="8801711000000", short_message=b"hello", registered_delivery=1)
        receipt = client.read_pdu()
        resp = client.read_pdu()
        assert receipt.command == "deliver_sm" and resp.command == "submit_sm_resp"
        assert receipt.receipted_message_id == resp.message_id
        assert receipt.message_state == 2
        assert receipt.short_message.endswith(b"stat:DELIVRD err:000 text:hello")
    finally:
        client.disconnect()


def test_keeps_up_without_per_pdu_sleeps(sim, esme):
    """Pipelined submits are all answered (no rate assertion: that is the bench's job)."""
    client = esme()
    client.bind()
    body = submit_body("8801711000000", b"x")
    client.sock.sendall(b"".join(struct.pack(">IIII", 16 + len(body), 4, 0, n) + body for n in range(1, 501)))
    seqs = [client.read()[2] for _ in range(500)]
    assert seqs == list(range(1, 501))
    assert sim.counters["submit_ok"] == 500
    assert sim.wait_for(lambda: sim.outstanding == 0)
