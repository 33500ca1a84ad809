"""Property tests of the hot-path packet codec, and a fuzzed server."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyrad.packet import AuthPacket

from radius import crypto
from radius.dictionary import load_dictionary
from radius.packet import PacketError, decode, encode, encode_attributes, key_for, name_for

standard = st.tuples(
    st.integers(1, 255).filter(lambda t: t != 26), st.binary(max_size=253)
)
vendor = st.tuples(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 255)), st.binary(max_size=247))
attribute_lists = st.lists(st.one_of(standard, vendor), max_size=12)


@given(st.integers(0, 255), st.integers(0, 255), st.binary(min_size=16, max_size=16), attribute_lists)
def test_round_trip(code, ident, authenticator, attributes):
    raw = encode(code, ident, authenticator, encode_attributes(attributes))
    packet = decode(raw)
    assert (packet.code, packet.ident, packet.authenticator, packet.raw) == (code, ident, authenticator, raw)
    expected: dict = {}
    for key, value in attributes:
        expected.setdefault(key, []).append(value)
    for key, values in expected.items():
        assert packet.attributes[key] == values
    assert len(packet.attributes.get(26, [])) == sum(1 for k, _ in attributes if isinstance(k, tuple))


@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_packet_error(data):
    try:
        packet = decode(data)
    except PacketError:
        return
    assert len(packet.raw) >= 20


@given(st.binary(min_size=20, max_size=400))
def test_agrees_with_crypto_validation(data):
    """Our decoder accepts exactly the packets the crypto helpers consider well formed."""
    length = struct.unpack_from("!H", data, 2)[0]
    data = data[:2] + struct.pack("!H", min(max(length, 20), len(data))) + data[4:]
    try:
        crypto._split_packet(data)
        valid = True
    except ValueError:
        valid = False
    try:
        decode(data)
        assert valid
    except PacketError:
        assert not valid


@given(st.binary(max_size=40), st.binary(max_size=40), st.binary(min_size=16, max_size=16), st.integers(0, 255))
def test_decodes_what_pyrad_encodes(user, called, authenticator, ident):
    dictionary = load_dictionary()
    pkt = AuthPacket(code=crypto.ACCESS_REQUEST, id=ident, authenticator=authenticator, dict=dictionary,
                      secret=b"x")
    if user:
        pkt.AddAttribute("User-Name", user)
    if called:
        pkt.AddAttribute("Called-Station-Id", called)
    pkt.AddAttribute("Mikrotik-Rate-Limit", "1M/2M")
    pkt.AddAttribute("Acct-Interim-Interval", 300)
    raw = pkt.RequestPacket()
    packet = decode(raw)
    assert packet.get(1) == (user or None)
    assert packet.get(30) == (called or None)
    assert packet.text((14988, 8)) == "1M/2M"
    assert packet.integer(85) == 300
    assert packet.ident == ident


@settings(max_examples=50)
@given(st.binary(min_size=6, max_size=60))
def test_odd_vendor_specific_is_kept_raw(value):
    raw = encode(1, 1, bytes(16), bytes((26, len(value) + 2)) + value)
    packet = decode(raw)
    assert packet.attributes[26] == [value]


def test_names():
    assert key_for("Mikrotik-Rate-Limit") == (14988, 8)
    assert key_for("MS-CHAP2-Success") == (311, 26)
    assert key_for("Framed-IPv6-Prefix") == 97
    assert name_for(1) == "User-Name"
    assert name_for((14988, 19)) == "Mikrotik-Address-List"
    assert name_for((9999, 1)) == "(9999, 1)"


def test_helpers_tolerate_odd_values():
    packet = decode(encode(1, 1, bytes(16), encode_attributes([(1, b"\xff\xfe"), (27, b"abc"), (8, b"\x01")])))
    assert packet.text(1) == "\ufffd\ufffd"
    assert packet.integer(27) is None
    assert packet.ipv4(8) is None


@pytest.mark.django_db(transaction=True)
def test_fuzzed_datagrams_never_stop_the_server(tmp_path, settings):
    from radius.runner import ThreadedServer
    from radius.testing import PASSWORD, SECRET, UdpClient, access_request, build_world

    settings.RADIUS_VAR_DIR = tmp_path
    build_world(require_message_authenticator=False)
    rng = random.Random(5997)
    extra = [("Service-Type", 2), ("Framed-Protocol", 1), ("Calling-Station-Id", "AA:BB:CC:DD:EE:01")]
    with ThreadedServer(reject_delay=0, state_dir=tmp_path, sync=False) as srv, UdpClient(srv.auth_port) as c:
        for _ in range(400):
            good, _ = access_request("alice", SECRET, password=PASSWORD, extra=extra,
                                     message_authenticator=rng.random() < 0.5)
            data = bytearray(good)
            for _ in range(rng.randint(1, 4)):
                choice = rng.random()
                if choice < 0.4 and data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                elif choice < 0.6:
                    del data[rng.randrange(len(data) + 1):]
                elif choice < 0.8:
                    data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 10)))
                elif len(data) >= 4:
                    data[2:4] = struct.pack("!H", rng.randrange(0, 5000))
            c.send(bytes(data))
        while c.recv(0.2) is not None:
            pass
        good, _ = access_request("alice", SECRET, password=PASSWORD, extra=extra)
        reply = c.ask(good)
        assert reply is not None and reply[0] == crypto.ACCESS_ACCEPT
        assert srv.worker.metrics.counters.get("drops{internal_error}", 0) == 0


@given(st.binary(min_size=1, max_size=16), attribute_lists, st.sampled_from([None, "value", "attribute"]))
def test_fast_message_authenticator_check_agrees_with_crypto(secret, attributes, tamper):
    from radius.packet import request_message_authenticator_ok

    attributes = [(k, v) for k, v in attributes if k != 80]
    raw = encode(crypto.ACCESS_REQUEST, 1, bytes(range(16)), encode_attributes(attributes))
    if len(raw) + 18 > 4096:
        return
    raw = crypto.add_message_authenticator(raw, secret)
    if tamper == "value":  # the Message-Authenticator is the first attribute: its value starts at 22
        raw = raw[:22] + bytes([raw[22] ^ 1]) + raw[23:]
    elif tamper == "attribute" and len(raw) > 40:  # the first value octet of the next attribute
        raw = raw[:40] + bytes([raw[40] ^ 1]) + raw[41:]
    assert request_message_authenticator_ok(decode(raw), secret) == bool(crypto.verify_message_authenticator(raw, secret))


def test_fast_message_authenticator_rejects_duplicates_and_bad_length():
    from radius.packet import request_message_authenticator_ok

    raw = crypto.add_message_authenticator(encode(1, 1, bytes(16), b""), b"s")
    doubled = encode(1, 1, bytes(16), raw[20:] + raw[20:])
    assert not request_message_authenticator_ok(decode(doubled), b"s")
    short = encode(1, 1, bytes(16), b"\x50\x10" + bytes(14))
    assert not request_message_authenticator_ok(decode(short), b"s")
    assert not request_message_authenticator_ok(decode(encode(1, 1, bytes(16), b"")), b"s")
