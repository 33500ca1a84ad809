"""Tests for notifications.smpp: pure helpers, then the client against the SMSC simulator over TCP."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime

import pytest
import smpplib.smpp

from notifications.encoding import SegmentationError
from notifications.smpp import (
    ESME_RMSGQFUL,
    ESME_RTHROTTLED,
    Backoff,
    BindError,
    DeliveryReceipt,
    IncomingMessage,
    Outcome,
    PduError,
    SMPPClient,
    SMPPConfig,
    SubmitResult,
    TokenBucket,
    classify_status,
    decode_sm,
    destination_address,
    encode_pdu,
    encode_submit_sm,
    normalise_message_id,
    parse_receipt,
    source_address,
    split_pdus,
)
from tests.peers.smsc import SMSCSimulator

SYSTEM_ID = "ispsms"
PASSWORD = "secret"
DEST = "8801711000001"


# -- helpers and fixtures ------------------------------------------------------------------


class Events:
    """Thread-safe record of callback events in arrival order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []
        self._cond = threading.Condition()

    def recorder(self, kind: str):
        def record(obj: object) -> None:
            with self._cond:
                self.items.append((kind, obj))
                self._cond.notify_all()

        return record

    def of(self, kind: str) -> list:
        with self._cond:
            return [obj for k, obj in self.items if k == kind]

    def wait(self, kind: str, count: int = 1, timeout: float = 5.0) -> list:
        with self._cond:
            self._cond.wait_for(lambda: sum(1 for k, _ in self.items if k == kind) >= count, timeout)
        found = self.of(kind)
        assert len(found) >= count, f"expected {count} {kind} events, got {len(found)}"
        return found


@pytest.fixture
def sim():
    with SMSCSimulator(SYSTEM_ID, PASSWORD) as simulator:
        yield simulator


@pytest.fixture
def events():
    return Events()


@pytest.fixture
def make_client(sim, events):
    clients: list[SMPPClient] = []

    def make(*, start: bool = True, **overrides) -> SMPPClient:
        settings = {"reconnect_initial": 0.05, "reconnect_max": 0.4, "reconnect_jitter": 0.0,
                    "drain_timeout": 1.0, "response_timeout": 10.0}
        settings.update(overrides)
        config = SMPPConfig("127.0.0.1", settings.pop("port", sim.port), settings.pop("system_id", SYSTEM_ID),
                            settings.pop("password", PASSWORD), **settings)
        client = SMPPClient(
            config,
            on_submit_resp=events.recorder("resp"),
            on_receipt=events.recorder("receipt"),
            on_incoming=events.recorder("mo"),
            on_state=events.recorder("state"),
        )
        clients.append(client)
        if start:
            assert client.start(wait=5)
        return client

    yield make
    for client in clients:
        client.stop()


def results(futures) -> list[SubmitResult]:
    return [future.result(timeout=10) for future in futures]


# -- pure helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "rule", "expected"),
    [
        ("A1B2C3", "as_is", "A1B2C3"),
        ("A1B2C3", "lower", "a1b2c3"),
        ("000123", "strip_zeros", "123"),
        ("0000", "strip_zeros", "0"),
        ("A1B2C3", "hex_to_dec", "10597059"),
        ("10597059", "dec_to_hex", "a1b2c3"),
        ("0000000000A1B2C3", "hex_to_dec+strip_zeros", "10597059"),
        ("00000000000010597059", "strip_zeros+dec_to_hex", "a1b2c3"),
        ("00FF", "lower+hex_to_dec", "255"),
    ],
)
def test_normalise_message_id(raw, rule, expected):
    assert normalise_message_id(raw, rule) == expected


def test_normalise_message_id_refuses_to_guess():
    with pytest.raises(ValueError, match="unknown message id rule"):
        normalise_message_id("1", "upper")
    with pytest.raises(ValueError, match="not hexadecimal"):
        normalise_message_id("xyz", "hex_to_dec")
    with pytest.raises(ValueError, match="not hexadecimal"):
        normalise_message_id("0x1F", "hex_to_dec")  # int() would accept the prefix
    with pytest.raises(ValueError, match="not decimal"):
        normalise_message_id("1_000", "dec_to_hex")  # int() would accept the underscore
    with pytest.raises(ValueError):
        SMPPConfig("h", 1, "s", "p", receipt_id_rule="hex_to_dec+bogus")


def test_parse_receipt_full_text_10_and_12_digit_dates():
    parsed = parse_receipt(
        "id:0123456789 sub:001 dlvrd:001 submit date:2601021530 done date:260102153112 "
        "stat:DELIVRD err:000 text:Your bill: 500 Tk id:x"
    )
    assert parsed == {
        "id": "0123456789",
        "sub": 1,
        "dlvrd": 1,
        "submit_date": datetime(2026, 1, 2, 15, 30, tzinfo=UTC),
        "done_date": datetime(2026, 1, 2, 15, 31, 12, tzinfo=UTC),
        "stat": "DELIVRD",
        "err": "000",
        "text": "Your bill: 500 Tk id:x",
    }
    assert parsed["done_date"].tzinfo is UTC


def test_parse_receipt_missing_and_odd_fields():
    parsed = parse_receipt(b"ID:77 Stat:delivered submit date:9913 done date:2613320000 Text:")
    assert parsed["id"] == "77"
    assert parsed["stat"] == "DELIVRD"
    assert parsed["submit_date"] is None and parsed["done_date"] is None  # wrong length / invalid month
    assert parsed["sub"] is None and parsed["dlvrd"] is None and parsed["err"] is None
    assert parsed["text"] == ""
    assert parse_receipt("") == dict.fromkeys(
        ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err", "text"))


def test_parse_receipt_prefers_tlvs():
    parsed = parse_receipt("id:12 stat:DELIVRD err:000", receipted_message_id="C", message_state=5)
    assert parsed["id"] == "C" and parsed["stat"] == "UNDELIV"


def test_classify_status():
    assert classify_status(0) is Outcome.ACCEPTED
    assert classify_status(ESME_RTHROTTLED) is Outcome.TEMPORARY
    assert classify_status(ESME_RMSGQFUL) is Outcome.TEMPORARY
    assert classify_status(0x0B) is Outcome.PERMANENT
    assert classify_status(0x08) is Outcome.PERMANENT


def test_backoff_doubles_caps_and_resets():
    backoff = Backoff(0.5, 4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5
    jittered = Backoff(1.0, 8.0, jitter=0.5)
    for base in (1.0, 2.0, 4.0, 8.0):
        assert base * 0.5 <= jittered.next() <= base


def test_token_bucket_with_a_fake_clock():
    now = [100.0]
    bucket = TokenBucket(10, burst=3, clock=lambda: now[0])
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    now[0] += 1.0  # 10 tokens earned, minus the 2 owed, capped at the burst
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve() == pytest.approx(0.1)


def test_split_pdus_keeps_partial_and_rejects_bad_length():
    buffer = bytearray(encode_pdu(0x15, 1) + encode_pdu(0x15, 2)[:10])
    assert [p.sequence for p in split_pdus(buffer)] == [1]
    assert len(buffer) == 10
    with pytest.raises(PduError):
        split_pdus(bytearray(b"\x00\x00\x00\x08" + bytes(12)))


class _SmpplibSequence:
    """The sequence source smpplib's PDU classes ask their client for."""

    sequence = 0

    def next_sequence(self) -> int:
        return 1


def test_submit_sm_body_parses_with_smpplib():
    """A third-party parser reads our submit_sm the same way."""
    body = encode_submit_sm(source_addr="ISP", source_ton=5, source_npi=0, destination_addr=DEST, dest_ton=1,
                            dest_npi=1, short_message=bytes.fromhex("0500037f0201") + b"Hi", data_coding=0,
                            esm_class=0x40)
    parsed = smpplib.smpp.parse_pdu(encode_pdu(0x04, 42, body), client=_SmpplibSequence())
    assert (parsed.command, parsed.sequence) == ("submit_sm", 42)
    assert (parsed.source_addr_ton, parsed.source_addr, parsed.destination_addr) == (5, b"ISP", DEST.encode())
    assert (parsed.esm_class, parsed.registered_delivery, parsed.data_coding) == (0x40, 1, 0)
    assert parsed.short_message == bytes.fromhex("0500037f0201") + b"Hi"
    assert decode_sm(body).short_message == parsed.short_message


def test_addresses():
    assert source_address("ISP Net") == (5, 0, "ISP Net")
    assert source_address("+8801711000000") == (1, 1, "8801711000000")
    with pytest.raises(ValueError):
        source_address("ABCDEFGHIJKL")  # 12 characters
    with pytest.raises(ValueError):
        source_address("12345678901234567")  # 17 digits
    assert destination_address("+8801711000000") == "8801711000000"
    with pytest.raises(ValueError):
        destination_address("01711-000000")


# -- bind -----------------------------------------------------------------------------------------


def test_bind_ok_with_nodelay(sim, make_client):
    client = make_client()
    assert client.bound and client.state == "bound"
    assert sim.bind_attempts == [("bind_transceiver", SYSTEM_ID, 0)]
    assert client._conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


@pytest.mark.parametrize(("system_id", "password", "status"), [(SYSTEM_ID, "wrong", 0x0E), ("nobody", PASSWORD, 0x0D)])
def test_bind_refused(sim, make_client, system_id, password, status):
    client = make_client(start=False, system_id=system_id, password=password)
    with pytest.raises(BindError) as excinfo:
        client.start(wait=5)
    assert excinfo.value.status == status
    assert client.state == "stopped" and not client.bound
    assert sim.counters["bind_failed"] == 1


# -- submitting -----------------------------------------------------------------------------------


def test_single_part_gsm7_exact_bytes(sim, make_client):
    client = make_client()
    (result,) = results(client.submit(DEST, "ISP", "Hello @£$ {x}", ref="row-1"))
    assert result.outcome is Outcome.ACCEPTED and result.ref == "row-1"
    (record,) = sim.submits_to(DEST)
    assert result.message_id == record.message_id == result.message_key
    text_bytes = bytes.fromhex("48656c6c6f2000010220" "1b28" "78" "1b29")
    assert record.raw[16:] == (
        b"\x00"  # service_type
        + b"\x05\x00ISP\x00"  # alphanumeric sender: TON 5, NPI 0
        + b"\x01\x01" + DEST.encode() + b"\x00"
        + b"\x00\x00\x00"  # esm_class, protocol_id, priority_flag
        + b"\x00\x00"  # schedule_delivery_time, validity_period
        + b"\x01\x00\x00\x00"  # registered_delivery 1, replace, data_coding 0, sm_default_msg_id
        + bytes((len(text_bytes),)) + text_bytes
    )


def test_single_part_ucs2_bangla_exact_bytes(sim, make_client):
    client = make_client()
    (result,) = results(client.submit(DEST, "8809612345678", "বিল পরিশোধ", ref=2))
    assert result.outcome is Outcome.ACCEPTED
    (record,) = sim.submits_to(DEST)
    assert record.data_coding == 0x08 and record.esm_class == 0 and record.udh is None
    assert (record.source_ton, record.source_npi, record.source_addr) == (1, 1, "8809612345678")
    assert record.short_message == bytes.fromhex("09ac09bf09b2002009aa09b009bf09b609cb09a7")
    assert sim.texts(DEST) == ["বিল পরিশোধ"]


def test_three_part_message_udh_and_reassembly(sim, make_client):
    client = make_client()
    text = "".join(f"Line {i:03d}: your bill is due. " for i in range(13))  # 364 septets
    futures = client.submit(DEST, "ISP", text, ref=3)
    parts = results(futures)
    assert [(p.part_index, p.part_count, p.outcome) for p in parts] == [(i, 3, Outcome.ACCEPTED) for i in range(3)]
    records = sim.submits_to(DEST)
    assert len(records) == 3
    ref = records[0].udh[3]
    for seq, record in enumerate(records, start=1):
        assert record.esm_class == 0x40 and record.data_coding == 0 and record.registered_delivery == 1
        assert record.udh == bytes((5, 0, 3, ref, 3, seq))  # same 8-bit reference in every part
        assert record.concat == (ref, 3, seq)
    assert [len(r.payload) for r in records] == [153, 153, 58]
    assert sim.texts(DEST) == [text]
    assert len({p.message_key for p in parts}) == 3


def test_escape_pair_and_emoji_are_never_split(sim, make_client):
    client = make_client()
    gsm = "a" * 152 + "{" + "b" * 20
    emoji = "অ" * 66 + "😀" + "আ" * 5
    assert all(r.outcome is Outcome.ACCEPTED for r in results(client.submit(DEST, "ISP", gsm, ref=1)))
    assert all(r.outcome is Outcome.ACCEPTED for r in results(client.submit(DEST, "ISP", emoji, ref=2)))
    first, second, third, fourth = sim.submits_to(DEST)
    assert first.payload == b"a" * 152  # the escape pair did not fit: it moved whole
    assert second.payload[:2] == b"\x1b\x28"
    assert third.payload == "অ".encode("utf-16-be") * 66
    assert fourth.payload[:4] == "😀".encode("utf-16-be")
    for record in (first, second, third, fourth):
        record.text  # noqa: B018 - each part decodes on its own (raises on a split pair)
    assert sim.texts(DEST) == [gsm, emoji]


def test_bad_input_raises_before_anything_is_written(sim, make_client):
    client = make_client()
    with pytest.raises(SegmentationError):
        client.submit(DEST, "ISP", "", ref=1)
    with pytest.raises(SegmentationError):
        client.submit(DEST, "ISP", "x" * 153 * 11, ref=1)
    with pytest.raises(ValueError):
        client.submit("not-a-number", "ISP", "hi", ref=1)
    assert sim.counters["submit_sm"] == 0


def test_window_200_submits_never_more_than_10_in_flight(sim, make_client, events):
    sim.configure(resp_delay=0.002)
    client = make_client(window=10)
    futures = [f for i in range(200) for f in client.submit(DEST, "ISP", f"msg {i}", ref=i)]
    assert all(r.outcome is Outcome.ACCEPTED for r in results(futures))
    assert sim.counters["submit_ok"] == 200
    assert 1 < sim.max_outstanding <= 10
    assert sorted(r.ref for r in events.of("resp")) == list(range(200))
    assert len({r.sequence for r in events.of("resp")}) == 200
    assert client.in_flight == 0


def test_window_blocks_the_eleventh_submit(sim, make_client):
    client = make_client(window=10)
    sim.hold_responses()
    futures: list = []
    sender = threading.Thread(target=lambda: futures.extend(
        f for i in range(15) for f in client.submit(DEST, "ISP", "x", ref=i)))
    sender.start()
    assert sim.wait_for(lambda: sim.outstanding == 10)
    assert not sim.wait_for(lambda: sim.counters["submit_sm"] > 10, timeout=0.3)
    sim.release_responses()
    sender.join(10)
    assert all(r.outcome is Outcome.ACCEPTED for r in results(futures))
    assert sim.counters["submit_sm"] == 15 and sim.max_outstanding == 10


def test_rate_limited_client_still_sends_everything(sim, make_client):
    client = make_client(max_rate=500, burst=5)
    futures = [f for i in range(20) for f in client.submit(DEST, "ISP", "x", ref=i)]
    assert all(r.outcome is Outcome.ACCEPTED for r in results(futures))


def test_throttle_is_temporary_reject_is_permanent(sim, make_client):
    client = make_client()
    sim.throttle_next(1)
    (throttled,) = results(client.submit(DEST, "ISP", "a", ref=1))
    sim.throttle_next(1, status=ESME_RMSGQFUL)
    (queue_full,) = results(client.submit(DEST, "ISP", "b", ref=2))
    sim.configure("8801700000009", action="reject", status=0x0B)
    (rejected,) = results(client.submit("8801700000009", "ISP", "c", ref=3))
    (ok,) = results(client.submit(DEST, "ISP", "d", ref=4))
    assert (throttled.outcome, throttled.command_status, throttled.message_id) == (Outcome.TEMPORARY, 0x58, None)
    assert (queue_full.outcome, queue_full.command_status) == (Outcome.TEMPORARY, 0x14)
    assert (rejected.outcome, rejected.command_status) == (Outcome.PERMANENT, 0x0B)
    assert ok.outcome is Outcome.ACCEPTED and client.bound  # error responses never kill the listener
    assert all(r.written for r in (throttled, queue_full, rejected, ok))


# -- receipts -------------------------------------------------------------------------------------


def test_late_receipt(sim, make_client, events):
    sim.configure(dlr="late", dlr_delay=0.02)
    client = make_client()
    (result,) = results(client.submit(DEST, "ISP", "Paid 500", ref=1))
    (receipt,) = events.wait("receipt")
    assert isinstance(receipt, DeliveryReceipt)
    assert receipt.message_key == result.message_key
    assert (receipt.stat, receipt.err, receipt.sub, receipt.dlvrd, receipt.message_state) == ("DELIVRD", "000", 1, 1, 2)
    assert receipt.text == "Paid 500"
    assert receipt.done_date.tzinfo is UTC and receipt.source_addr == DEST
    assert sim.wait_for(lambda: [status for _, status in sim.deliver_resps] == [0])


def test_early_receipt_is_surfaced_before_the_response(sim, make_client, events):
    sim.configure(dlr="early")
    client = make_client()
    (result,) = results(client.submit(DEST, "ISP", "early", ref=1))
    events.wait("receipt")
    kinds = [kind for kind, _ in events.items if kind in ("receipt", "resp")]
    assert kinds == ["receipt", "resp"]
    assert events.of("receipt")[0].message_key == result.message_key


def test_receipt_twice(sim, make_client, events):
    sim.configure(dlr="late", dlr_delay=0.01, dlr_twice=True)
    client = make_client()
    (result,) = results(client.submit(DEST, "ISP", "x", ref=1))
    receipts = events.wait("receipt", 2)
    assert [r.message_key for r in receipts] == [result.message_key] * 2


@pytest.mark.parametrize(
    ("resp_style", "dlr_style", "submit_rule", "receipt_rule", "tlvs"),
    [
        ("decimal", "hex_upper", "as_is", "hex_to_dec", True),
        ("decimal", "hex_lower", "as_is", "hex_to_dec", False),
        ("decimal_zeros", "hex_upper_zeros", "strip_zeros", "hex_to_dec+strip_zeros", True),
        ("hex_upper", "hex_lower", "lower", "lower", False),
        ("hex_lower", "decimal", "as_is", "dec_to_hex", True),
    ],
)
def test_receipt_id_in_another_form_normalises_to_the_same_key(
    sim, make_client, events, resp_style, dlr_style, submit_rule, receipt_rule, tlvs
):
    sim.configure(id_style=resp_style, dlr="late", dlr_delay=0.01, dlr_id_style=dlr_style, dlr_tlvs=tlvs,
                  dlr_date_digits=12)
    client = make_client(submit_id_rule=submit_rule, receipt_id_rule=receipt_rule)
    (result,) = results(client.submit(DEST, "ISP", "x", ref=1))
    (receipt,) = events.wait("receipt")
    assert receipt.message_id != result.message_id  # really in another form on the wire
    assert receipt.message_key == result.message_key is not None
    assert receipt.done_date is not None and receipt.stat == "DELIVRD"


def test_receipt_for_an_unknown_id_and_failing_callback(sim, make_client, events):
    client = make_client()
    client.on_receipt = lambda receipt: (_ for _ in ()).throw(RuntimeError("db down"))
    sim.send_receipt("DEADBEEF", stat="UNDELIV", err="00B")
    assert sim.wait_for(lambda: len(sim.deliver_resps) == 1)
    assert sim.deliver_resps[0][1] == 0x64  # ESME_RX_T_APPN: the SMSC will redeliver
    client.on_receipt = events.recorder("receipt")
    sim.send_receipt("DEADBEEF", stat="UNDELIV", err="00B", tlvs=False)
    (receipt,) = events.wait("receipt")
    assert (receipt.message_id, receipt.stat, receipt.err, receipt.message_state) == ("DEADBEEF", "UNDELIV", "00B", None)
    assert sim.wait_for(lambda: len(sim.deliver_resps) == 2)
    assert client.bound and sim.deliver_resps[1][1] == 0


# -- incoming messages ------------------------------------------------------------------------------


def test_incoming_gsm7_and_ucs2(sim, make_client, events):
    make_client()
    sim.push_mo("8801711000000", "16216", "BAL {1}")
    sim.push_mo("8801711000000", "16216", "আমার বিল কত?")
    first, second = events.wait("mo", 2)
    assert isinstance(first, IncomingMessage)
    assert (first.text, first.data_coding, first.source_addr, first.destination_addr) == (
        "BAL {1}", 0, "8801711000000", "16216")
    assert (second.text, second.data_coding, second.part_count, second.complete) == ("আমার বিল কত?", 8, 1, True)
    assert sim.wait_for(lambda: [status for _, status in sim.deliver_resps] == [0, 0])


@pytest.mark.parametrize("ref16", [False, True])
def test_incoming_multipart_is_reassembled(sim, make_client, events, ref16):
    make_client()
    parts = ["অ" * 67, "😀 ধন্যবাদ"]
    sim.push_mo("8801711000000", "16216", parts=parts, ref=0x0102, ref16=ref16, order=[1, 0])
    sim.push_mo("8801711000009", "16216", parts=["USAGE ", "please"], order=[0, 1], use_payload=True)
    first, second = events.wait("mo", 2)
    assert (first.text, first.part_count, first.complete) == ("".join(parts), 2, True)
    assert (second.text, second.source_addr) == ("USAGE please", "8801711000009")


# -- connection handling -------------------------------------------------------------------------------


def test_enquire_link_answered_and_sent(sim, make_client):
    client = make_client(enquire_link_interval=0.05)
    assert sim.send_enquire_link() == 1
    assert sim.wait_for(lambda: sim.counters["enquire_link_resp"] == 1)
    assert sim.wait_for(lambda: sim.counters["enquire_link"] >= 2)
    assert client.bound and client.counters["enquire_link_received"] == 1


def test_dead_link_detected_by_keepalive(sim, make_client, events):
    client = make_client(enquire_link_interval=0.05, enquire_link_timeout=0.1, bind_timeout=0.5)
    sim.silent = True
    assert sim.wait_for(lambda: not client.bound)
    sim.silent = False
    assert client.wait_bound(5)
    assert sim.counters["bind_ok"] == 2


def test_drop_reconnects_and_unanswered_submit_is_unknown(sim, make_client, events):
    client = make_client()
    sim.hold_responses()
    (future,) = client.submit(DEST, "ISP", "in flight", ref=1)
    assert sim.wait_for(lambda: sim.outstanding == 1)
    sim.drop_connections()
    lost = future.result(timeout=5)
    assert (lost.outcome, lost.written, lost.command_status) == (Outcome.UNKNOWN, True, None)
    sim.release_responses()
    assert client.wait_bound(5)
    (again,) = results(client.submit(DEST, "ISP", "after", ref=2))
    assert again.outcome is Outcome.ACCEPTED
    assert sim.counters["bind_ok"] == 2 and client.counters["binds"] == 2


def test_reconnect_backoff_grows_while_smsc_is_down(sim, make_client, events):
    client = make_client(reconnect_initial=0.02, reconnect_max=0.16)
    sim.close_listener()
    sim.drop_connections()
    assert sim.wait_for(lambda: len(client.reconnect_delays) >= 6)
    (not_sent,) = results(client.submit(DEST, "ISP", "while down", ref=9, timeout=0.05))
    assert (not_sent.outcome, not_sent.written) == (Outcome.TEMPORARY, False)
    sim.reopen_listener()
    assert client.wait_bound(5)
    delays = list(client.reconnect_delays)
    assert delays[:6] == [0.02, 0.04, 0.08, 0.16, 0.16, 0.16]
    (result,) = results(client.submit(DEST, "ISP", "back", ref=10))
    assert result.outcome is Outcome.ACCEPTED
    states = events.of("state")
    assert "backoff" in states and states[-1] == "bound"


def test_unknown_pdus_are_not_fatal(sim, make_client):
    client = make_client()
    sim.send_pdu(0x00000222)  # unknown request: generic_nack
    sim.send_pdu(0x80000333, b"junk")  # unknown response: logged
    sim.send_pdu(0x80000000, status=0x08, sequence=999_999)  # generic_nack for nothing we sent
    sim.send_pdu(0x00000005, b"\x01\x02")  # malformed deliver_sm
    assert sim.wait_for(lambda: sim.counters["generic_nack"] == 2)
    (result,) = results(client.submit(DEST, "ISP", "still fine", ref=1))
    assert result.outcome is Outcome.ACCEPTED and client.counters["binds"] == 1


def test_unbind_from_smsc_then_rebind(sim, make_client):
    client = make_client()
    sim.send_unbind()
    assert sim.wait_for(lambda: sim.counters["unbind_resp"] == 1)
    assert sim.wait_for(lambda: sim.counters["bind_ok"] == 2)
    assert client.wait_bound(5)


def test_stop_drains_and_unbinds(sim, make_client):
    client = make_client()
    (future,) = client.submit(DEST, "ISP", "x", ref=1)
    client.stop()
    assert future.result(timeout=1).outcome is Outcome.ACCEPTED
    assert sim.counters["unbind"] == 1 and client.state == "stopped"
    (late,) = results(client.submit(DEST, "ISP", "x", ref=2))
    assert (late.outcome, late.written, late.error) == (Outcome.TEMPORARY, False, "client stopped")
