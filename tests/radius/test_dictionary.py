"""The shipped RADIUS dictionary parses with pyrad 2.6 and encodes the exact octets."""

from __future__ import annotations

import io

import pytest
from pyrad.dictionary import Dictionary
from pyrad.packet import AccessAccept, AuthPacket, Packet

from radius.dictionary import DICTIONARY_FILE, counter64, load_dictionary, split_counter64

AUTH = bytes(16)


@pytest.fixture(scope="module")
def dictionary():
    return load_dictionary()


def encode(dictionary, **attributes) -> bytes:
    """Attribute octets of an Access-Accept holding ``attributes`` (no Message-Authenticator)."""
    pkt = AuthPacket(code=AccessAccept, id=1, secret=b"x", authenticator=AUTH, dict=dictionary)
    for name, value in attributes.items():
        pkt[name.replace("_", "-")] = value
    return pkt.ReplyPacket()[20:]


def decode(dictionary, attributes: bytes) -> Packet:
    header = bytes((2, 1)) + (20 + len(attributes)).to_bytes(2, "big") + AUTH
    return Packet(packet=header + attributes, dict=dictionary)


def test_load_dictionary_is_cached_and_complete(dictionary):
    assert load_dictionary() is dictionary
    assert DICTIONARY_FILE.name == "dictionary"
    assert dictionary.skipped_attributes == set()
    assert dictionary.vendors.GetForward("Microsoft") == 311
    assert dictionary.vendors.GetForward("Mikrotik") == 14988
    assert len(dictionary) > 140


def test_parses_without_warnings(caplog):
    with caplog.at_level("DEBUG", logger="pyrad"):
        Dictionary(str(DICTIONARY_FILE))
    assert [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []


@pytest.mark.parametrize(
    ("name", "code", "datatype", "vendor"),
    [
        ("User-Name", 1, "string", ""),
        ("User-Password", 2, "octets", ""),
        ("CHAP-Password", 3, "octets", ""),
        ("Framed-IP-Address", 8, "ipaddr", ""),
        ("Class", 25, "octets", ""),
        ("Session-Timeout", 27, "integer", ""),
        ("Idle-Timeout", 28, "integer", ""),
        ("Calling-Station-Id", 31, "string", ""),
        ("Acct-Status-Type", 40, "integer", ""),
        ("Acct-Session-Id", 44, "string", ""),
        ("Acct-Terminate-Cause", 49, "integer", ""),
        ("Acct-Input-Gigawords", 52, "integer", ""),
        ("Acct-Output-Gigawords", 53, "integer", ""),
        ("Event-Timestamp", 55, "date", ""),
        ("CHAP-Challenge", 60, "octets", ""),
        ("NAS-Port-Type", 61, "integer", ""),
        ("EAP-Message", 79, "octets", ""),
        ("Message-Authenticator", 80, "octets", ""),
        ("Acct-Interim-Interval", 85, "integer", ""),
        ("NAS-Port-Id", 87, "string", ""),
        ("Framed-Pool", 88, "string", ""),
        ("Chargeable-User-Identity", 89, "octets", ""),
        ("NAS-IPv6-Address", 95, "ipv6addr", ""),
        ("Framed-Interface-Id", 96, "ifid", ""),
        ("Framed-IPv6-Prefix", 97, "ipv6prefix", ""),
        ("Framed-IPv6-Pool", 100, "string", ""),
        ("Error-Cause", 101, "integer", ""),
        ("Delegated-IPv6-Prefix", 123, "ipv6prefix", ""),
        ("Framed-IPv6-Address", 168, "ipv6addr", ""),
        ("DNS-Server-IPv6-Address", 169, "ipv6addr", ""),
        ("Route-IPv6-Information", 170, "ipv6prefix", ""),
        ("Delegated-IPv6-Prefix-Pool", 171, "string", ""),
        ("Stateful-IPv6-Address-Pool", 172, "string", ""),
        ("MS-CHAP-Error", 2, "string", "Microsoft"),
        ("MS-MPPE-Encryption-Policy", 7, "integer", "Microsoft"),
        ("MS-MPPE-Encryption-Types", 8, "integer", "Microsoft"),
        ("MS-CHAP-Challenge", 11, "octets", "Microsoft"),
        ("MS-MPPE-Send-Key", 16, "octets", "Microsoft"),
        ("MS-MPPE-Recv-Key", 17, "octets", "Microsoft"),
        ("MS-CHAP2-Response", 25, "octets", "Microsoft"),
        ("MS-CHAP2-Success", 26, "octets", "Microsoft"),
        ("Mikrotik-Recv-Limit", 1, "integer", "Mikrotik"),
        ("Mikrotik-Xmit-Limit", 2, "integer", "Mikrotik"),
        ("Mikrotik-Group", 3, "string", "Mikrotik"),
        ("Mikrotik-Wireless-Forward", 4, "integer", "Mikrotik"),
        ("Mikrotik-Rate-Limit", 8, "string", "Mikrotik"),
        ("Mikrotik-Realm", 9, "string", "Mikrotik"),
        ("Mikrotik-Host-IP", 10, "ipaddr", "Mikrotik"),
        ("Mikrotik-Mark-Id", 11, "string", "Mikrotik"),
        ("Mikrotik-Advertise-URL", 12, "string", "Mikrotik"),
        ("Mikrotik-Advertise-Interval", 13, "integer", "Mikrotik"),
        ("Mikrotik-Recv-Limit-Gigawords", 14, "integer", "Mikrotik"),
        ("Mikrotik-Xmit-Limit-Gigawords", 15, "integer", "Mikrotik"),
        ("Mikrotik-Wireless-PSK", 16, "string", "Mikrotik"),
        ("Mikrotik-Total-Limit", 17, "integer", "Mikrotik"),
        ("Mikrotik-Total-Limit-Gigawords", 18, "integer", "Mikrotik"),
        ("Mikrotik-Address-List", 19, "string", "Mikrotik"),
        ("Mikrotik-Wireless-MPKey", 20, "string", "Mikrotik"),
        ("Mikrotik-Wireless-Comment", 21, "string", "Mikrotik"),
        ("Mikrotik-Delegated-IPv6-Pool", 22, "string", "Mikrotik"),
        ("Mikrotik-DHCP-Option-Set", 23, "string", "Mikrotik"),
        ("Mikrotik-DHCP-Option-Param-STR1", 24, "string", "Mikrotik"),
        ("Mikrotik-DHCP-Option-Param-STR2", 25, "string", "Mikrotik"),
        ("Mikrotik-Wireless-VLANID", 26, "integer", "Mikrotik"),
        ("Mikrotik-Wireless-VLANIDtype", 27, "integer", "Mikrotik"),
        ("Mikrotik-Wireless-Minsignal", 28, "string", "Mikrotik"),
        ("Mikrotik-Wireless-Maxsignal", 29, "string", "Mikrotik"),
        ("Mikrotik-Switching-Filter", 30, "string", "Mikrotik"),
    ],
)
def test_attribute_definitions(dictionary, name, code, datatype, vendor):
    attr = dictionary[name]
    assert (attr.code, attr.type, attr.vendor) == (code, datatype, vendor)


def test_encryption_flags(dictionary):
    assert dictionary["User-Password"].encrypt == 1  # applied by radius.crypto, never by pyrad
    assert dictionary["MS-MPPE-Send-Key"].encrypt == 2  # RFC 2548 salt encryption, applied by pyrad
    assert dictionary["MS-MPPE-Recv-Key"].encrypt == 2
    assert dictionary["MS-CHAP2-Success"].encrypt == 0


# --- exact octets -------------------------------------------------------------------


def test_mikrotik_rate_limit_exact_bytes(dictionary):
    data = encode(dictionary, Mikrotik_Rate_Limit="10M/20M")
    # Vendor-Specific(26), len 15, vendor 14988 (0x3a8c), vendor type 8, len 9, value
    assert data == b"\x1a\x0f\x00\x00\x3a\x8c\x08\x09" + b"10M/20M"
    assert decode(dictionary, data)["Mikrotik-Rate-Limit"] == ["10M/20M"]


def test_mikrotik_address_list_and_group_exact_bytes(dictionary):
    data = encode(dictionary, Mikrotik_Address_List="expired", Mikrotik_Group="pppoe-10M")
    assert data == (b"\x1a\x0f\x00\x00\x3a\x8c\x13\x09expired" + b"\x1a\x11\x00\x00\x3a\x8c\x03\x0bpppoe-10M")
    decoded = decode(dictionary, data)
    assert decoded["Mikrotik-Address-List"] == ["expired"]
    assert decoded["Mikrotik-Group"] == ["pppoe-10M"]


def test_mikrotik_rate_limit_full_syntax_round_trip(dictionary):
    value = "2M/4M 4M/8M 1500k/3M 16/16 8 1M/2M"
    assert decode(dictionary, encode(dictionary, Mikrotik_Rate_Limit=value))["Mikrotik-Rate-Limit"] == [value]


def test_framed_ipv6_prefix_exact_bytes(dictionary):
    data = encode(dictionary, Framed_IPv6_Prefix="2001:db8:1::/48")
    # type 97, length 20, reserved 0, prefix length 48, full 16 prefix octets
    assert data == b"\x61\x14\x00\x30" + bytes.fromhex("20010db8000100000000000000000000")
    assert decode(dictionary, data)["Framed-IPv6-Prefix"] == ["2001:db8:1::/48"]


def test_delegated_ipv6_prefix_exact_bytes(dictionary):
    data = encode(dictionary, Delegated_IPv6_Prefix="2001:db8:ff00:4200::/56")
    assert data == b"\x7b\x14\x00\x38" + bytes.fromhex("20010db8ff0042000000000000000000")
    assert decode(dictionary, data)["Delegated-IPv6-Prefix"] == ["2001:db8:ff00:4200::/56"]


def test_shortened_ipv6_prefix_is_decoded(dictionary):
    # RFC 3162 lets a sender omit the octets beyond the prefix length
    data = b"\x7b\x0a\x00\x38" + bytes.fromhex("20010db8ff00")
    assert decode(dictionary, data)["Delegated-IPv6-Prefix"] == ["2001:db8:ff00::/56"]


def test_ipv6_address_and_interface_id_exact_bytes(dictionary):
    data = encode(dictionary, Framed_IPv6_Address="2001:db8::10", Framed_Interface_Id="211:22ff:fe33:4455")
    assert data == (
        b"\xa8\x12"
        + bytes.fromhex("20010db8000000000000000000000010")
        + b"\x60\x0a"
        + bytes.fromhex("021122fffe334455")
    )
    decoded = decode(dictionary, data)
    assert decoded["Framed-IPv6-Address"] == ["2001:db8::10"]
    assert decoded["Framed-Interface-Id"] == ["211:22ff:fe33:4455"]


def test_access_accept_reply_attributes_exact_bytes(dictionary):
    data = encode(
        dictionary,
        Framed_IP_Address="100.64.0.10",
        Framed_Pool="pool-10M",
        Session_Timeout=86400,
        Acct_Interim_Interval=300,
    )
    assert data == (
        b"\x08\x06\x64\x40\x00\x0a" + b"\x58\x0apool-10M" + b"\x1b\x06\x00\x01\x51\x80" + b"\x55\x06\x00\x00\x01\x2c"
    )


def test_event_timestamp_is_32_bit_date(dictionary):
    data = encode(dictionary, Event_Timestamp=1_700_000_000)
    assert data == b"\x37\x06" + (1_700_000_000).to_bytes(4, "big")
    assert decode(dictionary, data)["Event-Timestamp"] == [1_700_000_000]


def test_error_cause_values(dictionary):
    data = encode(dictionary, Error_Cause="Session-Context-Not-Found")
    assert data == b"\x65\x06\x00\x00\x01\xf7"  # 503
    assert decode(dictionary, data)["Error-Cause"] == ["Session-Context-Not-Found"]
    assert encode(dictionary, Error_Cause=503) == data
    assert decode(dictionary, b"\x65\x06\x00\x00\x01\xfc")["Error-Cause"] == ["Multiple-Session-Selection-Unsupported"]
    # an unnamed value decodes to the number
    assert decode(dictionary, b"\x65\x06\x00\x00\x02\x58")["Error-Cause"] == [600]


def test_named_values(dictionary):
    assert encode(dictionary, Acct_Status_Type="Interim-Update") == b"\x28\x06\x00\x00\x00\x03"
    assert encode(dictionary, Service_Type="Framed-User", Framed_Protocol="PPP") == (
        b"\x06\x06\x00\x00\x00\x02\x07\x06\x00\x00\x00\x01"
    )
    assert encode(dictionary, MS_MPPE_Encryption_Types="RC4-128bit-Allowed")[-4:] == b"\x00\x00\x00\x04"
    assert decode(dictionary, b"\x3d\x06\x00\x00\x00\x0f")["NAS-Port-Type"] == ["Ethernet"]


def test_microsoft_vsa_exact_bytes(dictionary):
    data = encode(dictionary, MS_CHAP2_Success=b"\x01S=" + b"A" * 40)
    assert data[:8] == b"\x1a\x33\x00\x00\x01\x37\x1a\x2d"
    assert decode(dictionary, data)["MS-CHAP2-Success"] == [b"\x01S=" + b"A" * 40]


def test_user_password_decodes_to_bytes(dictionary):
    hidden = bytes(range(0x41, 0x51))  # valid UTF-8, still must stay bytes
    pkt = decode(dictionary, b"\x02\x12" + hidden)
    assert pkt["User-Password"] == [hidden]


def test_undecodable_string_is_bytes(dictionary):
    assert decode(dictionary, b"\x01\x04\xff\xfe")["User-Name"] == [b"\xff\xfe"]


# --- 64-bit counters --------------------------------------------------------------


def test_integer64_type_is_supported():
    extra = Dictionary(io.StringIO("ATTRIBUTE\tTest-Octets64\t241\tinteger64\n"))
    pkt = AuthPacket(code=AccessAccept, id=1, secret=b"x", authenticator=AUTH, dict=extra)
    pkt["Test-Octets64"] = 5 * 2**32 + 7
    data = pkt.ReplyPacket()[20:]
    assert data == b"\xf1\x0a" + (5 * 2**32 + 7).to_bytes(8, "big")
    assert decode(extra, data)["Test-Octets64"] == [5 * 2**32 + 7]


def test_gigawords_note(dictionary):
    """RADIUS octet counters are 32 bits: larger totals travel as low word + gigawords."""
    with pytest.raises(ValueError):
        encode(dictionary, Acct_Input_Octets=2**32)
    total = 10 * 2**30 + 12345  # 10 GiB and a bit
    low, high = split_counter64(total)
    assert (low, high) == (2 * 2**30 + 12345, 2)
    assert counter64(low, high) == total
    data = encode(dictionary, Acct_Input_Octets=low, Acct_Input_Gigawords=high)
    pkt = decode(dictionary, data)
    assert counter64(pkt["Acct-Input-Octets"][0], pkt["Acct-Input-Gigawords"][0]) == total
    assert counter64(7, None) == 7
    assert split_counter64(2**64 - 1) == (2**32 - 1, 2**32 - 1)
    with pytest.raises(ValueError):
        split_counter64(2**64)
    with pytest.raises(ValueError):
        counter64(2**32, 0)
